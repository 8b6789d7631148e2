"""bench/depth.py's derived numbers against hand calculations: time per step, medians over rounds/loops, the
ratios to the baseline (first spec; ``ratio_vs_best_baseline`` against the faster of its two timings), the
torch peer's ratio, images/s, and the spec parsing that decides what is measured. No model is built: the
step factory and the timer are replaced by fakes that hand out chosen times."""
import json
import sys
import types

import numpy as np
import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import depth  # noqa: E402


class FakeStep:
  def __init__(self, spec):
    self.spec = spec


def install_fakes(monkeypatch, times, loop, compile_s=None):
  """make_step -> FakeStep; run_steps(n == loop) -> the spec's next time from ``times``; other n: 1-step
  compile (``compile_s``) or warm-up (99 s, must never reach a result). Returns the call log."""
  queues = {spec: list(ts) for spec, ts in times.items()}
  calls = []
  compile_s = compile_s or {}

  def make_step(spec, d, batch, dtype):
    return FakeStep(spec), 0, 1000 + len(spec)

  def run_steps(step, state, n):
    calls.append((step.spec, n))
    if n == loop:
      return state + n, queues[step.spec].pop(0)
    if n == 1:
      return state + n, compile_s.get(step.spec, 0.5)
    return state + n, 99.0

  monkeypatch.setattr(depth, "make_step", make_step)
  monkeypatch.setattr(depth, "run_steps", run_steps)
  return calls, queues


def test_run_steps_is_wall_time_over_n_steps(monkeypatch):
  clock = iter([10.0, 14.0])
  monkeypatch.setattr(depth, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  state, sec = depth.run_steps(lambda s: s + 1, 0, 4)
  assert state == 4 and sec == pytest.approx(1.0)  # (14 - 10) / 4


def test_time_fn_is_the_median_of_the_loops_after_warm_up(monkeypatch):
  calls, _ = install_fakes(monkeypatch, {"a": [0.05, 0.01, 0.02, 0.04, 0.03]}, loop=7)
  assert depth.time_fn(FakeStep("a"), 0, reps=5, loop=7) == pytest.approx(0.03)  # median, not mean (0.03 too)
  assert calls == [("a", 3)] + [("a", 7)] * 5
  install_fakes(monkeypatch, {"a": [0.010, 0.050, 0.012]}, loop=7)
  assert depth.time_fn(FakeStep("a"), 0, reps=3, loop=7) == pytest.approx(0.012)  # mean would be 0.024


def test_parse_mixer_and_updates_per_call():
  assert depth.parse_mixer("mrla_light:value_conv=conv,dim_per_head=16,residual=True,x=False,n=-3") == (
      "mrla_light", {"value_conv": "conv", "dim_per_head": 16, "residual": True, "x": False, "n": -3})
  assert depth.parse_mixer("residual") == ("residual", {})
  assert depth.updates_per_call("residual:xla=cmdbuf,steps=8") == 8
  assert depth.updates_per_call("aila1:xla=cmdbuf") == 1


def test_skip_layers_half_is_every_second_block_from_block_3():
  # depth 56: n = 9 blocks per stage, blocks 3..9 -> 4, 6, 8 in each of 3 stages
  assert depth.skip_layers("half", 56) == tuple(f"stage_{s}/block_{b}" for s in range(3) for b in (4, 6, 8))
  # depth 26: n = 4, blocks 3..4 -> 4
  assert depth.skip_layers("half", 26) == ("stage_0/block_4", "stage_1/block_4", "stage_2/block_4")
  # depth 32: n = 5, blocks 3..5 -> 4
  assert depth.skip_layers("half", 32) == ("stage_0/block_4", "stage_1/block_4", "stage_2/block_4")
  with pytest.raises(ValueError, match="no block to skip"):
    depth.skip_layers("half", 20)  # n = 3
  assert depth.skip_layers("stage_0/block_3+stage_1/block_5", 56) == ("stage_0/block_3", "stage_1/block_5")


def test_make_step_takes_skip_xla_and_steps_out_of_the_mixer_options(monkeypatch):
  got = {}

  class Model:
    def init(self, rng, x, train):
      got["init_batch"] = x.shape[0]
      return {"params": {}}

  def get_model(name, **kw):
    got["model"] = (name, kw)
    return Model()

  def sgd_bn_step(model, variables, x, y, **kw):
    got["x"], got["y"], got["step_kw"] = x.shape, y.shape, kw
    return "step", "state", 7

  monkeypatch.setattr(depth.models, "get_model", get_model)
  monkeypatch.setattr(depth, "sgd_bn_step", sgd_bn_step)
  monkeypatch.setattr(depth.xla_presets, "options", lambda preset: {"preset": preset})
  # numpy stand-ins for jax.random: nothing is compiled
  monkeypatch.setattr(depth, "jax", types.SimpleNamespace(random=types.SimpleNamespace(
      PRNGKey=lambda seed: seed, normal=lambda key, shape, dtype: np.zeros(shape, dtype),
      randint=lambda key, shape, lo, hi: np.zeros(shape, np.int32))))
  assert depth.make_step("mrla_light:dim_per_head=8,skip=half,xla=cmdbuf,steps=4", 26, 3, "bf16") == (
      "step", "state", 7)
  name, kw = got["model"]
  assert name == "cifar_resnet" and kw["depth"] == 26 and kw["mixer"] == "mrla_light" and kw["dtype"] == "bf16"
  assert kw["mixer_kwargs"] == {"dim_per_head": 8} and kw["num_classes"] == 10
  assert kw["skip_layers"] == ("stage_0/block_4", "stage_1/block_4", "stage_2/block_4")
  assert got["x"] == (3, 32, 32, 3) and got["y"] == (3,)
  assert got["step_kw"]["steps_per_call"] == 4 and got["step_kw"]["compiler_options"] == {"preset": "cmdbuf"}
  depth.make_step("residual", 20, 2, "bf16")
  assert got["model"][1]["skip_layers"] == () and got["step_kw"]["steps_per_call"] == 1
  assert got["step_kw"]["compiler_options"] == {"preset": "default"}


TIMES = {"residual": [0.010, 0.030, 0.020],   # median 0.020 (mean 0.020)
         "aila1": [0.050, 0.022, 0.024],      # median 0.024 (mean 0.032)
         "dense": [0.030, 0.031, 0.100]}      # median 0.031 (mean 0.0537)


def test_interleaved_rows_medians_ratios_and_order(monkeypatch):
  calls, queues = install_fakes(monkeypatch, TIMES, loop=7, compile_s={"residual": 2.0, "aila1": 3.0, "dense": 4.0})
  rows = depth.bench_interleaved(["residual", "aila1", "dense"], 20, 8, rounds=3, loop=7, dtype=None)
  assert all(not q for q in queues.values())  # every round timed
  # compile one step each first, then 3 warm-up steps each, then rounds of the mixers in turn
  assert calls[:3] == [("residual", 1), ("aila1", 1), ("dense", 1)]
  assert calls[3:6] == [("residual", 3), ("aila1", 3), ("dense", 3)]
  assert calls[6:] == [("residual", 7), ("aila1", 7), ("dense", 7)] * 3
  assert [r["mixer"] for r in rows] == ["residual", "aila1", "dense"]
  want = {"residual": (20.0, 1.0, 2.0), "aila1": (24.0, 1.2, 3.0), "dense": (31.0, 1.55, 4.0)}
  for r in rows:
    ms, ratio, comp = want[r["mixer"]]
    assert r["step_ms"] == pytest.approx(ms)
    assert r["ratio_vs_residual"] == pytest.approx(ratio)
    assert r["images_per_s"] == pytest.approx(8 / (ms / 1e3))  # batch / seconds per step
    assert r["compile_s"] == comp and r["depth"] == 20 and r["interleaved_rounds"] == 3
    assert r["round_ms"] == pytest.approx([t * 1e3 for t in TIMES[r["mixer"]]])
    assert r["params"] == 1000 + len(r["mixer"])


def _fake_torch(monkeypatch, step_ms):
  monkeypatch.setattr(depth, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True),
                                                            __version__="fake"))
  monkeypatch.setattr(depth, "bench_torch", lambda d, batch, reps, loop: {
      "mixer": "torch_residual", "depth": d, "params": 5, "step_ms": step_ms, "images_per_s": batch / step_ms * 1e3})


def test_main_interleaved_torch_ratio_is_to_our_residual(monkeypatch, tmp_path):
  install_fakes(monkeypatch, {"residual": [0.010, 0.030, 0.020], "aila1": [0.050, 0.022, 0.024]}, loop=7)
  _fake_torch(monkeypatch, 30.0)
  monkeypatch.setattr(sys, "argv", ["depth.py", "--out", str(tmp_path), "--depths", "20", "--batch", "8",
                                    "--loop", "7", "--interleave", "3", "--mixers", "residual;aila1"])
  result = depth.main()
  assert result["complete"] and result["interleave"] == 3
  saved = json.loads((tmp_path / "depth_cpu.json").read_text())
  assert saved["complete"] is True
  rows = {r["mixer"]: r for r in saved["rows"]}
  assert rows["aila1"]["ratio_vs_residual"] == pytest.approx(1.2)
  assert rows["torch_residual"]["ratio_vs_residual"] == pytest.approx(30.0 / 20.0)  # torch / our residual


def test_main_sequential_ratios_to_first_and_to_best_baseline(monkeypatch, tmp_path):
  # residual timed first (median 20 ms), then aila1 (24 ms), then residual again (median 18 ms)
  calls, _ = install_fakes(monkeypatch, {"residual": [0.010, 0.030, 0.020, 0.018, 0.016, 0.019],
                                         "aila1": [0.050, 0.022, 0.024]}, loop=7)
  _fake_torch(monkeypatch, 30.0)
  monkeypatch.setattr(sys, "argv", ["depth.py", "--out", str(tmp_path), "--depths", "20", "--batch", "8",
                                    "--reps", "3", "--loop", "7", "--interleave", "0", "--mixers", "residual;aila1"])
  depth.main()
  # bench_mixer: compile 1 step, 3 warm-up steps, 3 loops of 7 (time_fn), for each mixer and the baseline again
  assert calls == ([("residual", 1), ("residual", 3)] + [("residual", 7)] * 3 + [("aila1", 1), ("aila1", 3)]
                   + [("aila1", 7)] * 3 + [("residual", 1), ("residual", 3)] + [("residual", 7)] * 3)
  rows = json.loads((tmp_path / "depth_cpu.json").read_text())["rows"]
  assert [r["mixer"] for r in rows] == ["residual", "aila1", "residual (again)", "torch_residual"]
  res, aila, again, tor = rows
  assert res["step_ms"] == pytest.approx(20.0) and aila["step_ms"] == pytest.approx(24.0)
  assert again["step_ms"] == pytest.approx(18.0)
  assert aila["images_per_s"] == pytest.approx(8 / 0.024) and res["compile_s"] == 0.5
  assert res["ratio_vs_residual"] == pytest.approx(1.0)
  assert aila["ratio_vs_residual"] == pytest.approx(1.2)
  assert again["ratio_vs_residual"] == pytest.approx(0.9)  # 18 / 20: against the first baseline timing
  # the faster of the two baseline timings is 18 ms
  assert res["ratio_vs_best_baseline"] == pytest.approx(20 / 18)
  assert aila["ratio_vs_best_baseline"] == pytest.approx(24 / 18)
  assert again["ratio_vs_best_baseline"] == pytest.approx(1.0)
  assert "ratio_vs_best_baseline" not in tor
  assert tor["ratio_vs_residual"] == pytest.approx(30 / 20)  # to the first baseline timing


def test_main_sequential_best_baseline_is_the_first_when_it_is_faster(monkeypatch, tmp_path):
  install_fakes(monkeypatch, {"residual": [0.020, 0.020, 0.020, 0.025, 0.025, 0.025], "aila1": [0.030] * 3}, loop=7)
  monkeypatch.setattr(depth, "torch", None)
  monkeypatch.setattr(sys, "argv", ["depth.py", "--out", str(tmp_path), "--depths", "20", "--reps", "3", "--loop",
                                    "7", "--interleave", "0", "--mixers", "residual;aila1"])
  depth.main()
  rows = json.loads((tmp_path / "depth_cpu.json").read_text())["rows"]
  assert [r["ratio_vs_best_baseline"] for r in rows] == pytest.approx([1.0, 1.5, 1.25])
  assert rows[1]["images_per_s"] == pytest.approx(128 / 0.030)  # default batch 128
