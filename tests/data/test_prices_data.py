"""Price windows: bad files fail naming file and line; splits do not leak; statistics are fitted on train;
the residual (change) target round-trips and zero is the naive forecast."""

import ml_collections
import numpy as np
import pytest

from aila_jax.data import datasets, prices
from aila_jax.errors import ConfigError, DataError


def _csv(tmp_path, rows, name="p.csv", header="date,close"):
  path = tmp_path / name
  path.write_text("\n".join([header] + rows) + "\n")
  return path


def _rows(n, start=100.0):
  base = np.datetime64("2020-01-01")
  return [f"{base + i},{start + i + 0.5 * np.sin(i)}" for i in range(n)]


@pytest.mark.parametrize("bad,message", [
    ("2020-01-03,", r"line 4 \(2020-01-03\): missing close \(a gap in the series\)"),
    ("2020-01-03", r"line 4 \(2020-01-03\): missing close"),
    ("2020-01-03,nan", r"line 4 \(2020-01-03\): close is NaN"),
    ("2020-01-03,inf", r"line 4 \(2020-01-03\): close is 'inf', not finite"),
    ("2020-01-03,-1.0", r"line 4 \(2020-01-03\): close -1.0 is not positive"),
    ("2020-01-02,5.0", r"line 4: duplicate date 2020-01-02"),
    ("2019-12-30,5.0", r"line 4: dates not increasing: 2019-12-30 comes after 2020-01-02"),
    ("2020/01/03,5.0", r"line 4: malformed date '2020/01/03'"),
    (",", r"line 4: empty row \(a gap in the series\)"),
])
def test_bad_files_name_file_and_line(tmp_path, bad, message):
  path = _csv(tmp_path, ["2020-01-01,1.0", "2020-01-02,2.0", bad, "2020-01-06,3.0"])
  with pytest.raises(DataError, match=r"p\.csv: " + message):
    prices.read_price_csv(path)


def test_bad_header_and_empty_row(tmp_path):
  with pytest.raises(DataError, match=r"line 1: expected the header 'date,close'"):
    prices.read_price_csv(_csv(tmp_path, ["2020-01-01,1.0"], header="day,price"))
  with pytest.raises(DataError, match=r"line 3: empty row \(a gap in the series\)"):
    prices.read_price_csv(_csv(tmp_path, ["2020-01-01,1.0", "", "2020-01-03,1.0"]))
  # 'standard' allows non-positive closes
  dates, closes = prices.read_price_csv(_csv(tmp_path, ["2020-01-01,-1.0", "2020-01-02,0.0"]), positive=False)
  assert closes.tolist() == [-1.0, 0.0] and str(dates[1]) == "2020-01-02"


@pytest.mark.parametrize("lookback,horizon", [(1, 1), (5, 3), (8, 7)])
def test_windows_never_cross_a_split_boundary(lookback, horizon):
  n = 103
  b1, b2 = prices.split_bounds(n, (0.6, 0.2, 0.2))
  assert (b1, b2) == (61, 81)
  seen_targets = []
  for lo, hi in ((0, b1), (b1, b2), (b2, n)):
    anchors = prices.window_anchors(lo, hi, lookback=lookback, horizon=horizon)
    assert len(anchors)
    targets = anchors[:, None] + np.arange(1, horizon + 1)
    inputs = anchors[:, None] + np.arange(-lookback + 1, 1)
    assert targets.min() >= lo and targets.max() < hi  # every target inside its split
    assert inputs.min() >= 0
    # the windows are all there are: one more anchor on either side would cross the boundary
    assert anchors[-1] + horizon == hi - 1
    assert anchors[0] == max(lo - 1, lookback - 1)
    seen_targets.append(targets)
  # train targets end before any val target, val before test
  assert seen_targets[0].max() < seen_targets[1].min() and seen_targets[1].max() < seen_targets[2].min()


def _config(path, **kw):
  config = ml_collections.ConfigDict(dict(dataset="prices", augment="none", data_dir=None,
                                          dataset_kwargs={**dict(file=str(path), lookback=4, horizon=2), **kw}))
  return config


@pytest.mark.parametrize("transform", ["log_return", "standard"])
def test_scaling_is_fitted_on_train_rows_only(tmp_path, transform):
  rows = _rows(60)
  a = datasets.build_dataset(_config(_csv(tmp_path, rows, "a.csv"), transform=transform))
  # change every close after the train rows: the scaler and the train windows must not move
  b1 = a.info["bounds"][0]
  changed = rows[:b1] + [f"{r.split(',')[0]},{float(r.split(',')[1]) * 3 + 50}" for r in rows[b1:]]
  b = datasets.build_dataset(_config(_csv(tmp_path, changed, "b.csv"), transform=transform))
  assert a.info["scaler"] == b.info["scaler"]
  for key in ("inputs", "target", "target_price"):
    np.testing.assert_array_equal(a.train.arrays[key], b.train.arrays[key])
  assert not np.array_equal(a.eval["test"].arrays["target_price"], b.eval["test"].arrays["target_price"])
  # de-scaling inverts scaling
  s = a.info["scaler"]
  rec = a.eval["test"].arrays
  np.testing.assert_allclose(s.unscale(rec["target"], rec["last"]), rec["target_price"], rtol=1e-5)


def test_dataset_records_and_config_errors(tmp_path):
  path = _csv(tmp_path, _rows(50))
  data = datasets.build_dataset(_config(path))
  ex = data.example
  assert ex["inputs"].shape == (1, 4, 1) and ex["target"].shape == (1, 2) and ex["inputs"].dtype == np.float32
  assert data.model_kwargs == {"num_classes": 2} and set(data.eval) == {"test", "val"}
  assert data.info["windows"]["train"] == 35 - 4 - 2 + 1
  np.testing.assert_allclose(data.train.arrays["inputs"][:, -1, 0], 0.0, atol=1e-6)  # relative to the last close
  with pytest.raises(ConfigError, match="config.dataset_kwargs.lookback: expected an int >= 1"):
    datasets.build_dataset(ml_collections.ConfigDict(
        dict(dataset="prices", dataset_kwargs=dict(file=str(path), lookback=0))))
  with pytest.raises(ConfigError, match=r"config.dataset_kwargs: dataset 'prices' takes no option\(s\) \['window'\]"):
    datasets.build_dataset(_config(path, window=3))
  with pytest.raises(ConfigError, match="config.dataset_kwargs.series: unknown series 'oil'"):
    datasets.build_dataset(ml_collections.ConfigDict(dict(dataset="prices", data_dir=str(tmp_path),
                                                          dataset_kwargs=dict(series="oil"))))
  with pytest.raises(ConfigError, match="config.dataset_kwargs.split: expected three fractions"):
    datasets.build_dataset(_config(path, split=(0.5, 0.2)))
  with pytest.raises(ConfigError, match="the test split of p.csv .* holds no window"):
    datasets.build_dataset(_config(path, split=(0.9, 0.08, 0.02)))
  with pytest.raises(ConfigError, match="config.dataset_kwargs.transform"):
    datasets.build_dataset(_config(path, transform="minmax"))


def test_real_series_load(data_dir):
  for series in prices.SERIES:
    config = ml_collections.ConfigDict(dict(dataset="prices", data_dir=str(data_dir),
                                            dataset_kwargs=dict(series=series, lookback=32, horizon=1)))
    data = datasets.build_dataset(config)
    assert data.info["windows"]["test"] > 500, series
    assert np.all(np.isfinite(data.train.arrays["inputs"]))


SETUPS = [dict(transform="log_return"), dict(transform="standard"),
          dict(transform="log_return", target="change", features=("relative", "returns")),
          dict(transform="standard", target="change", features=("returns", "level")),
          dict(transform="log_return", target="level", features="level")]


@pytest.mark.parametrize("kw", SETUPS)
def test_test_period_prices_do_not_move_train_or_val(tmp_path, kw):
  rows = _rows(80)
  a = datasets.build_dataset(_config(_csv(tmp_path, rows, "a.csv"), horizon=3, **kw))
  b2 = a.info["bounds"][1]
  changed = rows[:b2] + [f"{r.split(',')[0]},{float(r.split(',')[1]) * 5 + 70}" for r in rows[b2:]]
  b = datasets.build_dataset(_config(_csv(tmp_path, changed, "b.csv"), horizon=3, **kw))
  assert a.info["scaler"] == b.info["scaler"]
  for split in ("train", "val"):
    src_a = a.train if split == "train" else a.eval["val"]
    src_b = b.train if split == "train" else b.eval["val"]
    for key in ("inputs", "target", "last", "target_price"):
      np.testing.assert_array_equal(src_a.arrays[key], src_b.arrays[key], err_msg=f"{split}/{key}")
  assert not np.array_equal(a.eval["test"].arrays["target"], b.eval["test"].arrays["target"])


@pytest.mark.parametrize("transform", ["log_return", "standard"])
def test_change_target_round_trips_and_zero_is_naive(tmp_path, transform):
  rows = _rows(90)
  data = datasets.build_dataset(_config(_csv(tmp_path, rows), horizon=3, transform=transform, target="change",
                                        features=("relative", "returns")))
  s = data.info["scaler"]
  closes = np.array([float(r.split(",")[1]) for r in rows])
  b1 = data.info["bounds"][0]
  y = np.log(closes) if transform == "log_return" else closes
  # sigma_h: the std of the h-day changes inside the train rows, nothing else
  expected = tuple(float(np.std(y[h:b1] - y[:b1 - h])) for h in (1, 2, 3))
  np.testing.assert_allclose(s.sigma, expected, rtol=1e-12)
  for split, src in (("train", data.train), *data.eval.items()):
    rec = src.arrays
    last = rec["last"].astype(np.float64)
    y_last = np.log(last) if transform == "log_return" else last
    y_tgt = np.log(rec["target_price"].astype(np.float64)) if transform == "log_return" else rec["target_price"]
    # z = (y_{s+h} - y_s) / sigma_h (prices stored as float32: compare at float32 precision)
    np.testing.assert_allclose(rec["target"], (y_tgt - y_last[:, None]) / np.asarray(expected), atol=2e-3)
    np.testing.assert_allclose(s.unscale(rec["target"].astype(np.float64), last), rec["target_price"],
                               rtol=1e-5, err_msg=split)
    np.testing.assert_array_equal(s.unscale(np.zeros_like(rec["target"]), rec["last"]),
                                  np.broadcast_to(rec["last"][:, None], rec["target"].shape))
  # inputs: channel 0 relative to the last close (last entry 0), channel 1 the one-day changes
  x = data.train.arrays["inputs"]
  assert x.shape[1:] == (4, 2)
  np.testing.assert_allclose(x[:, -1, 0], 0.0, atol=1e-6)
  np.testing.assert_allclose(np.diff(x[:, :, 0], axis=1), x[:, 1:, 1], atol=1e-4)
  first = data.train.arrays["last"][0]
  assert first == np.float32(closes[4])  # 'returns' reads one row before the window: first anchor is row L


def test_option_errors(tmp_path):
  path = _csv(tmp_path, _rows(50))
  with pytest.raises(ConfigError, match="config.dataset_kwargs.target: expected one of"):
    datasets.build_dataset(_config(path, target="delta"))
  with pytest.raises(ConfigError, match="config.dataset_kwargs.features: expected a name or a tuple"):
    datasets.build_dataset(_config(path, features=("relative", "volume")))
  with pytest.raises(ConfigError, match="config.dataset_kwargs.features"):
    datasets.build_dataset(_config(path, features=()))
  data = datasets.build_dataset(_config(path, features="returns"))
  assert data.info["features"] == ("returns",) and data.example["inputs"].shape == (1, 4, 1)
