"""bench/ram_wsram_mnist.py's derived numbers pinned against hand calculations: run()'s eval rows (error =
1 - accuracy, train_wall = wall minus every eval so far), its training rows and timers, and compare()'s
first step at which WS-RAM reaches RAM's final error and the step / time ratios. Training is a stand-in."""
import math
import sys
import types

import ml_collections
import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import ram_wsram_mnist as rwm  # noqa: E402


def test_run_eval_rows_errors_and_training_only_wall(monkeypatch, tmp_path):
  rows = [{"step": 10, "wall": 0.0, "train/loss": 2.0, "train/ess": 1.5, "lr": 0.1},
          {"step": 20, "wall": 1.0, "train/loss": 1.5},
          {"step": 20, "wall": 1.25, "ela/compile_wait_seconds": 0.0},  # neither a train nor an eval row
          {"step": 20, "wall": 1.5, "eval/seconds": 0.5, "eval/accuracy": 0.9, "eval/loss": 0.3},
          {"step": 30, "wall": 2.5, "train/loss": 1.0},
          {"step": 30, "wall": 3.25, "eval/seconds": 0.75, "eval/accuracy": 0.95,
           "eval/accuracy_sampled": 0.97, "eval/loss": 0.2}]
  seen = {}
  monkeypatch.setattr(rwm, "train_and_evaluate",
                      lambda config, workdir: seen.update(wall=config.log_wall_clock, wd=workdir) or {"step": 30})
  monkeypatch.setattr(rwm.metrics_lib, "read_metrics", lambda workdir: [dict(r) for r in rows])
  clock = iter([10.0, 17.0])
  monkeypatch.setattr(rwm, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  config = ml_collections.ConfigDict({"seed": 3})
  out = rwm.run("ram", config, tmp_path)
  assert seen == {"wall": True, "wd": tmp_path}
  # (3.25 s - 1.25 s of evals) / (30 - 10) steps = 0.1 s a step; the 10 steps before the first row at that rate
  assert out["train_seconds_per_step"] == pytest.approx(0.1)
  assert out["seconds_total_incl_compile"] == pytest.approx(7.0)
  assert out["final"] == {"step": 30} and out["name"] == "ram" and out["config"]["seed"] == 3
  e20, e30 = out["evals"]
  assert (e20["step"], e30["step"]) == (20, 30)
  assert e20["wall"] == pytest.approx(2.5) and e30["wall"] == pytest.approx(4.25)
  assert e20["train_wall"] == pytest.approx(20 * 0.1) and e30["train_wall"] == pytest.approx(30 * 0.1)
  assert e20["error"] == pytest.approx(0.1) and e30["error"] == pytest.approx(0.05)
  assert math.isnan(e20["error_sampled"]) and e30["error_sampled"] == pytest.approx(0.03)
  assert (e20["loss"], e30["loss"]) == (0.3, 0.2)
  assert [r["step"] for r in out["train"]] == [10, 20, 30]
  assert out["train"][0] == {"step": 10, "wall": pytest.approx(1.0), "train/loss": 2.0, "train/ess": 1.5}
  assert [r["wall"] for r in out["train"]] == pytest.approx([1.0, 2.0, 3.5])


def _evals(steps, walls, errors, sampled):
  return [{"step": s, "train_wall": w, "error": e, "error_sampled": x}
          for s, w, e, x in zip(steps, walls, errors, sampled)]


def test_compare_first_reach_and_ratios():
  ram = {"evals": _evals([100, 200], [10.0, 20.0], [0.3, 0.1], [0.25, 0.08])}
  wsram = {"evals": _evals([50, 100, 150], [7.0, 14.0, 21.0], [0.2, 0.1, 0.05], [0.075, 0.07, 0.04])}
  s = rwm.compare(ram, wsram)
  assert s["ram_final_error"] == 0.1 and s["ram_steps"] == 200 and s["ram_train_wall"] == 20.0
  assert s["wsram_final_error"] == 0.05 and s["wsram_final_error_sampled"] == 0.04
  assert s["wsram_reaches_ram_final_at"]["step"] == 100  # 0.1 <= 0.1: reaching counts
  assert s["step_ratio"] == pytest.approx(100 / 200) and s["train_wall_ratio"] == pytest.approx(14 / 20)
  assert s["wsram_reaches_ram_final_sampled_at"]["step"] == 50  # sampled 0.075 <= RAM's sampled 0.08
  assert s["step_ratio_sampled"] == pytest.approx(50 / 200)
  assert s["train_wall_ratio_sampled"] == pytest.approx(7 / 20)


def test_compare_skips_unsampled_ram_and_unreached_target():
  ram = {"evals": _evals([100, 200], [10.0, 20.0], [0.3, 0.01], [float("nan")] * 2)}
  wsram = {"evals": _evals([50, 100], [7.0, 14.0], [0.2, 0.1], [0.005, 0.004])}
  s = rwm.compare(ram, wsram)
  assert s["wsram_reaches_ram_final_at"] is None
  assert not {"step_ratio", "train_wall_ratio", "wsram_reaches_ram_final_sampled_at", "step_ratio_sampled"} & set(s)
