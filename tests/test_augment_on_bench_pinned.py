"""bench/augment_on.py pinned against hand calculations, with a fake trainer, pipeline and clock: training img/s
leaves out the first step and the evaluations inside train_seconds (not the final one, which comes after), the
evaluation time is the median without the first (compiling) one, rounds are reduced by their median, each
variant is labelled with its own setting, and main's ratios are device / host and cache / no cache."""
import json
import types

import pytest

import aila_jax.data.datasets
import aila_jax.data.pipeline
import aila_jax.data.sources
import aila_jax.train
import aila_jax.train.metrics
from bench import augment_on

EVALS = [50.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 4.0]  # the first compiles; the last is after training
SETTING_OFFSET = {("host", 0.0): 0.0, ("device", 0.0): 100.0, ("host", 512.0): 200.0, ("device", 512.0): 300.0}
ROUND_BASE = [265.0, 1065.0, 365.0]  # train_seconds of the three rounds (less the setting's offset)


def test_trainer_rates(tmp_path, monkeypatch):
  calls = {}

  def fake_train(c, workdir):
    key = (c.augment_on, c.eval_cache_mb)
    i = calls.setdefault(key, [])
    i.append(workdir)
    assert c.worker_count == 0 and c.num_train_steps == 390 and c.batch_size == 128
    return {"train_seconds": ROUND_BASE[len(i) - 1] + SETTING_OFFSET[key], "first_step_seconds": 10.0}

  monkeypatch.setattr(aila_jax.train, "train_and_evaluate", fake_train)
  monkeypatch.setattr(aila_jax.train.metrics, "read_metrics",
                      lambda workdir: [{"step": 39 * (k + 1), "eval/seconds": e} for k, e in enumerate(EVALS)])
  made = []
  monkeypatch.setattr(augment_on, "tempfile", types.SimpleNamespace(
      mkdtemp=lambda prefix: (made.append(tmp_path / f"w{len(made)}"), made[-1].mkdir(), str(made[-1]))[2]))
  out = augment_on.trainer_rates(str(tmp_path), rounds=3)
  in_training = 50.0 + 4 * 1.0 + 2.0 + 3 * 3.0  # every evaluation but the last: 65 s
  for name, key in (("host", ("host", 0.0)), ("device", ("device", 0.0)), ("host, eval cache", ("host", 512.0)),
                    ("device, eval cache", ("device", 512.0))):
    rates = [389 * 128 / (base + SETTING_OFFSET[key] - 10.0 - in_training) for base in ROUND_BASE]
    assert out[name]["images_per_s"] == pytest.approx(rates), name
    assert out[name]["images_per_s_median"] == pytest.approx(rates[2]), name  # the middle of the three
    assert out[name]["eval_seconds"] == [2.0, 2.0, 2.0]  # median of 1,1,1,1,2,3,3,3,4 (mean 19/9)
    assert out[name]["eval_seconds_median"] == 2.0


def test_pipeline_rates_median_of_rounds_per_variant(tmp_path, monkeypatch):
  clock = [0.0]
  factor = [1.0, 4.0, 2.0]  # rounds: the median is the third (mean 7/3)
  per_batch = {"augment": 0.004, "preprocess": 0.002, "uint8": 0.001}
  made = {}

  def train_dataset(src, batch_size, seed, preprocess=None, augment=None):
    assert batch_size == 128
    kind = "augment" if augment is not None else "uint8" if preprocess == "u8" else "preprocess"
    rnd = made.setdefault(kind, 0)
    made[kind] += 1
    return kind, rnd

  def make_iterator(ds):
    kind, rnd = ds
    while True:
      clock[0] += per_batch[kind] * factor[rnd]
      yield None

  monkeypatch.setattr(aila_jax.data.sources, "get_source", lambda *a, **k: "src")
  monkeypatch.setattr(aila_jax.data.sources, "get_spec", lambda name: types.SimpleNamespace(mean=0.0, std=1.0))
  monkeypatch.setattr(aila_jax.data.datasets, "Normalize", lambda mean, std: "norm")
  monkeypatch.setattr(aila_jax.data.datasets, "uint8_images", "u8")
  monkeypatch.setattr(aila_jax.data.pipeline, "train_dataset", train_dataset)
  monkeypatch.setattr(aila_jax.data.pipeline, "make_iterator", make_iterator)
  monkeypatch.setattr(augment_on, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
  rates = augment_on.pipeline_rates(str(tmp_path), batches=10, rounds=3)
  assert rates == {
      "host: crop + flip + normalise": pytest.approx(10 * 128 / (10 * 0.004 * 2.0)),
      "host: normalise only": pytest.approx(10 * 128 / (10 * 0.002 * 2.0)),
      "device setting: uint8 gather only": pytest.approx(10 * 128 / (10 * 0.001 * 2.0))}


def test_main_ratios_are_device_over_host_and_cache_over_none(tmp_path, monkeypatch):
  t = {"host": {"images_per_s_median": 100.0, "eval_seconds_median": 2.0},
       "device": {"images_per_s_median": 300.0, "eval_seconds_median": 4.0},
       "host, eval cache": {"images_per_s_median": 120.0, "eval_seconds_median": 0.5},
       "device, eval cache": {"images_per_s_median": 310.0, "eval_seconds_median": 2.0}}
  monkeypatch.setattr(augment_on, "pipeline_rates", lambda data_dir, batches, rounds: {"p": 1.0})
  monkeypatch.setattr(augment_on, "trainer_rates", lambda data_dir, rounds: t)
  # --out is a folder that does not exist yet: main creates it (it raised FileNotFoundError after measuring)
  augment_on.main(["--data_dir", str(tmp_path), "--out", str(tmp_path / "out"), "--tag", "x"])
  (path,) = (tmp_path / "out").glob("augment_on_*_x.json")
  saved = json.loads(path.read_text())
  assert saved["trainer_ratio_device_vs_host"] == pytest.approx(3.0)
  assert saved["eval_seconds_ratio_cache_vs_none"] == {"host": pytest.approx(0.25), "device": pytest.approx(0.5)}
