"""Pinned values of the price windows (aila_jax.data.prices) against hand computation: which rows a window
reads, the train statistics, each input channel and target, and the loader's edge cases."""

import math

import ml_collections
import numpy as np
import pytest

from aila_jax.data import datasets, prices
from aila_jax.errors import ConfigError, DataError


def _csv(tmp_path, closes, name="p.csv"):
  base = np.datetime64("2021-03-01")
  path = tmp_path / name
  path.write_text("\n".join(["date,close"] + [f"{base + i},{c}" for i, c in enumerate(closes)]) + "\n")
  return path


def _config(path, **kw):
  return ml_collections.ConfigDict(dict(dataset="prices", augment="none", data_dir=None,
                                        dataset_kwargs={**dict(file=str(path), lookback=2, horizon=2), **kw}))


def test_window_anchors_by_hand():
  # Anchors s with inputs [s-L+1, s] from row 0 and targets [s+1, s+H] inside [lo, hi). A split that holds
  # exactly one window must give that window (not an empty set), and the last anchor's targets end at hi - 1.
  np.testing.assert_array_equal(prices.window_anchors(0, 5, lookback=3, horizon=2), [2])
  np.testing.assert_array_equal(prices.window_anchors(10, 14, lookback=3, horizon=2), [9, 10, 11])
  assert len(prices.window_anchors(0, 4, lookback=3, horizon=2)) == 0


def test_split_fractions_must_be_non_negative():
  # (1.2, -0.2, 0.0) sums to 1 but is no split: a negative fraction is a ConfigError.
  with pytest.raises(ConfigError, match="config.dataset_kwargs.split: expected three fractions >= 0"):
    prices.split_bounds(100, (1.2, -0.2, 0.0))


def test_scaler_fit_by_hand():
  # 'standard' on closes [1, 2, 3, 4, 10]: mu = 4, sd = sqrt(50 / 5) (population std), sigma_1 = the std of the
  # 1-day changes [1, 1, 1, 6] = sqrt(18.75 / 4), sigma_2 = the std of the 2-day changes [2, 2, 7] = sqrt(50) / 3.
  s = prices.PriceScaler.fit(np.array([1.0, 2.0, 3.0, 4.0, 10.0]), "standard", horizon=2)
  assert s.mu == 4.0
  np.testing.assert_allclose(s.sd, math.sqrt(10.0), rtol=1e-12)
  np.testing.assert_allclose(s.sigma, (math.sqrt(4.6875), math.sqrt(50.0) / 3), rtol=1e-12)
  # a flat train period has no spread: every scale falls back to 1 (no division by zero downstream)
  flat = prices.PriceScaler.fit(np.full(8, 5.0), "standard", horizon=3)
  assert flat.sigma == (1.0, 1.0, 1.0) and flat.sd == 1.0 and flat.mu == 5.0


def test_features_and_targets_by_hand():
  # sigma = (2, 4), mu = 10, sd = 5; the window's closes 1, 3, 7, 8 (anchor close 8, lookback 3):
  # relative (y - y_s) / sigma_1, returns diff(y) / sigma_1, level (y - mu) / sd; sigma_1, not sigma_H.
  s = prices.PriceScaler("standard", sigma=(2.0, 4.0), mu=10.0, sd=5.0, target="change")
  x = s.features(np.array([1.0, 3.0, 7.0, 8.0]), ("relative", "returns", "level"), 3)
  np.testing.assert_allclose(x, [[-2.5, 1.0, -1.4], [-0.5, 2.0, -0.6], [0.0, 0.5, -0.4]], rtol=1e-12)
  # change target: (y_{s+h} - y_s) / sigma_h; level target: (y - mu) / sd
  np.testing.assert_allclose(s.scale(np.array([10.0, 16.0]), 8.0), [1.0, 2.0], rtol=1e-12)
  level = prices.PriceScaler("standard", sigma=(2.0, 4.0), mu=10.0, sd=5.0, target="level")
  np.testing.assert_allclose(level.scale(np.array([15.0, 20.0]), 8.0), [1.0, 2.0], rtol=1e-12)


def test_log_space_level_target_unscales_to_prices():
  # transform='log_return', target='level': z = (log p - mu) / sd, so z = 2 with mu = 1, sd = 0.5 is p = e^2.
  s = prices.PriceScaler("log_return", mu=1.0, sd=0.5, target="level")
  np.testing.assert_allclose(s.unscale(np.array([2.0, 0.0]), np.array(1.0)), [math.e ** 2, math.e], rtol=1e-12)
  p = np.array([[3.0, 7.5]])
  np.testing.assert_allclose(s.unscale(s.scale(p, np.array([1.0])), np.array([1.0])), p, rtol=1e-12)


def test_price_windows_read_the_right_rows():
  # closes 100 + row: every stored price names its row. Anchors 3 and 5, lookback 2, horizon 2:
  # last = p_s, targets p_{s+1}, p_{s+2}, inputs p_{s-1}, p_s (standard, sigma 1: relative = row - s).
  closes = 100.0 + np.arange(12)
  s = prices.PriceScaler("standard", sigma=(1.0, 1.0), target="change")
  rec = prices.price_windows(closes, np.array([3, 5]), lookback=2, horizon=2, scaler=s,
                             features=("relative", "returns"))
  np.testing.assert_array_equal(rec["last"], [103.0, 105.0])
  np.testing.assert_array_equal(rec["target_price"], [[104.0, 105.0], [106.0, 107.0]])
  np.testing.assert_array_equal(rec["target"], [[1.0, 2.0], [1.0, 2.0]])
  np.testing.assert_array_equal(rec["inputs"], [[[-1.0, 1.0], [0.0, 1.0]]] * 2)


def test_loader_edge_cases(tmp_path):
  # a zero close cannot be logged: DataError for log_return; 'standard' reads zero and negative closes
  with pytest.raises(DataError, match=r"line 3 \(2021-03-02\): close 0.0 is not positive"):
    prices.read_price_csv(_csv(tmp_path, [1.0, 0.0, 2.0]))
  closes = [-3.0, -1.0, 0.0, 2.0, 1.0, 4.0, 6.0, 5.0, 7.0, 9.0]
  data = datasets.build_dataset(_config(_csv(tmp_path, closes, "neg.csv"), transform="standard",
                                        split=(0.6, 0.0, 0.4)))
  # b1 = 6, b2 = 6: no val rows, so no 'val' evaluation (not an empty one)
  assert data.info["bounds"] == (6, 6) and set(data.eval) == {"test"}
  np.testing.assert_array_equal(data.train.arrays["last"], [-1.0, 0.0, 2.0])  # anchors 1..3: targets in rows < 6
  np.testing.assert_array_equal(data.eval["test"].arrays["last"], [4.0, 6.0, 5.0])  # anchors 5..7
  # a train split with no window is a ConfigError naming it (not an IndexError later)
  with pytest.raises(ConfigError, match=r"the train split of neg.csv \(rows 0..2\) holds no window"):
    datasets.build_dataset(_config(_csv(tmp_path, closes, "neg.csv"), transform="standard", split=(0.3, 0.3, 0.4)))
