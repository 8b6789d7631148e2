"""bench/wsram_compare.py: the five estimators' configs, the summary, and a --smoke run on fake MNIST (CPU)."""
import math

import numpy as np
import pytest

from aila_jax.tasks.glimpse import GlimpseTask
from bench import wsram_compare
from bench.results_io import load_result


class _Images:
  model_kwargs = {"num_classes": 10}
  name = "mnist"
  example = {"image": np.zeros((1, 60, 60, 1), np.float32), "label": np.zeros((1,), np.int64)}


@pytest.mark.parametrize("name,expected", [
    ("naive", dict(estimator="reinforce", reinforce_baseline="none", model_baseline=False)),
    ("ram", dict(estimator="reinforce", reinforce_baseline="learned", model_baseline=True)),
    ("wsram_nocv", dict(estimator="wake_sleep", proposal="inference", prior_control_variate="none",
                        proposal_control_variate="none")),
    ("wsram_cv", dict(estimator="wake_sleep", proposal="inference", prior_control_variate="self_normalized",
                      proposal_control_variate="uniform")),
    ("wsram_prior", dict(estimator="wake_sleep", proposal="prior", model_baseline=False)),
    ("wsram_optimal", dict(estimator="wake_sleep", prior_control_variate="optimal")),
])
def test_variant_configs(name, expected):
  for base in wsram_compare.DATASETS.values():
    config = wsram_compare.variant_config(base, name)
    task = GlimpseTask.from_config(config, _Images())
    for key, value in expected.items():
      if key == "model_baseline":
        assert config.model.get("baseline", config.model_name == "ram") == value
      else:
        assert getattr(task, key) == value, key
    ram = base.get_config()  # same glimpses, core, optimiser and schedule as RAM's config
    for key in ("glimpse_size", "num_scales", "num_glimpses", "hidden", "cell", "std"):
      assert config.model[key] == ram.model[key]
    assert config.optimizer.to_dict() == ram.optimizer.to_dict() and config.num_train_steps == ram.num_train_steps


def test_summary_step_and_time_ratios():
  evals = lambda errs: [{"step": 10 * (i + 1), "train_wall": 2.0 * (i + 1), "error": e} for i, e in enumerate(errs)]
  runs = {"mnist": {"naive": {"evals": evals([0.5, 0.3, 0.2])}, "wsram_cv": {"evals": evals([0.4, 0.2, 0.1])}}}
  s = wsram_compare.summarize(runs)["mnist"]
  assert s["wsram_cv"]["reaches_naive_final_at"]["step"] == 20
  assert s["wsram_cv"]["step_ratio_to_naive"] == pytest.approx(20 / 30)
  assert s["wsram_cv"]["train_wall_ratio_to_naive"] == pytest.approx(4 / 6)
  assert s["naive"]["step_ratio_to_naive"] == 1.0 and s["wsram_cv"]["final_error"] == 0.1


def test_smoke_run_writes_one_json(tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 255, (32, 28, 28), dtype=np.uint8),
           y_train=rng.integers(0, 10, 32), x_test=rng.integers(0, 255, (8, 28, 28), dtype=np.uint8),
           y_test=rng.integers(0, 10, 8))
  path = wsram_compare.main(["--smoke", "--data_dir", str(tmp_path), "--out", str(tmp_path / "out"),
                             "--workdir", str(tmp_path / "work"), "--datasets", "mnist",
                             "--variants", "wsram_prior"])  # one variant: the CI budget
  result = load_result(path)
  assert set(result["runs"]["mnist"]) == {"wsram_prior"}
  for name in ("wsram_prior",):
    assert [e["step"] for e in result["runs"]["mnist"][name]["evals"]] == [2, 4]
    probes = result["probes"]["mnist"][name]
    assert [p["step"] for p in probes] == [2, 4]
    assert all(p["location_grad_variance"] > 0 and math.isfinite(p["location_grad_variance"]) for p in probes)
  assert all(1.0 <= p["ess"] <= 2.0 for p in result["probes"]["mnist"]["wsram_prior"])  # K = 2 in --smoke
  assert result["summary"]["mnist"]["wsram_prior"]["final_step"] == 4
  # the benchmark's wall-clock stamping ends with its run: later runs in this process log no "wall"
  from aila_jax.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  (tmp_path / "after").mkdir()
  metrics_lib.MetricWriter(tmp_path / "after", tensorboard=False).write(1, {"x": 1.0})
  assert metrics_lib.read_metrics(tmp_path / "after") == [{"step": 1, "x": 1.0}]
