"""bench/ela_time.py's derived numbers against hand calculations: per-update medians (``steps=N``), ratios to
the matching residual, layer-attention time (mixer - residual), the fraction of it a skip set removes, the
step time saved, and the static cost-analysis fractions. No model is built: the step factory and the timer of
bench/depth.py (as ela_time imports it) are replaced by fakes."""
import json
import sys
import types

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import ela_time  # noqa: E402

bd = ela_time.bench_depth


def test_base_and_residual_specs():
  assert ela_time.base_spec("mrla_base:skip=half") == "mrla_base"
  assert ela_time.base_spec("mrla_base:skip=half,skip_append=False") == "mrla_base"
  assert ela_time.base_spec("aila2:xla=cmdbuf,skip=half,steps=2") == "aila2:xla=cmdbuf,steps=2"
  assert ela_time.residual_spec("aila2:xla=cmdbuf,skip=half,steps=2") == "residual:xla=cmdbuf,steps=2"
  assert ela_time.residual_spec("mrla_base:skip=half,dim=4") == "residual"
  assert ela_time.residual_spec("residual") == "residual"


TIMES = {  # seconds per call, 3 rounds
    "residual": [0.010, 0.012, 0.011],                 # median 11 ms
    "mrla_base": [0.020, 0.040, 0.021],                # median 21 ms (mean 27)
    "mrla_base:skip=half": [0.017, 0.018, 0.016],      # median 17 ms
    "residual:steps=2": [0.018, 0.020, 0.022],         # 20 ms per call = 10 ms per update
    "aila2:steps=2": [0.040, 0.042, 0.038],            # 40 per call = 20 per update
    "aila2:steps=2,skip=half": [0.034, 0.030, 0.032],  # 32 per call = 16 per update
}


def _fakes(monkeypatch, times, loop):
  queues = {s: list(t) for s, t in times.items()}
  calls = []

  def make_step(spec, depth, batch, dtype):
    return types.SimpleNamespace(spec=spec), 0, 100 + len(spec)

  def run_steps(step, state, n):
    calls.append((step.spec, n))
    return state, (queues[step.spec].pop(0) if n == loop else {1: 2.5}.get(n, 99.0))

  monkeypatch.setattr(bd, "make_step", make_step)
  monkeypatch.setattr(bd, "run_steps", run_steps)
  return calls, queues


def test_removed_fraction_of_layer_attention(monkeypatch, tmp_path):
  calls, queues = _fakes(monkeypatch, TIMES, loop=7)
  monkeypatch.setattr(sys, "argv", ["ela_time.py", "--out", str(tmp_path), "--depth", "26", "--rounds", "3",
                                    "--loop", "7", "--specs", ";".join(TIMES)])
  result = ela_time.main()
  assert not any(queues.values())
  specs = list(TIMES)
  assert calls[:2 * len(specs)] == [c for s in specs for c in ((s, 1), (s, 3))]  # compile, warm up
  assert calls[2 * len(specs):] == [(s, 7) for s in specs] * 3  # interleaved rounds
  rows = {r["spec"]: r for r in json.loads((tmp_path / "ela_time_cpu_resnet26.json").read_text())["rows"]}
  assert rows == {r["spec"]: r for r in result["rows"]}
  want_ms = {"residual": 11, "mrla_base": 21, "mrla_base:skip=half": 17, "residual:steps=2": 10,
             "aila2:steps=2": 20, "aila2:steps=2,skip=half": 16}
  for spec, ms in want_ms.items():
    assert rows[spec]["step_ms"] == pytest.approx(ms), spec
    assert rows[spec]["compile_s"] == 2.5
    assert rows[spec]["round_ms"] == pytest.approx([t * 1e3 for t in TIMES[spec]])
  ratios = {"residual": 1.0, "mrla_base": 21 / 11, "mrla_base:skip=half": 17 / 11, "residual:steps=2": 1.0,
            "aila2:steps=2": 2.0, "aila2:steps=2,skip=half": 1.6}
  for spec, ratio in ratios.items():
    assert rows[spec]["ratio_vs_residual"] == pytest.approx(ratio), spec
  m = rows["mrla_base:skip=half"]
  assert m["unpruned"] == "mrla_base" and m["baseline"] == "residual"
  assert m["skip_layers"] == ["stage_0/block_4", "stage_1/block_4", "stage_2/block_4"]
  assert m["layer_attention_ms"] == pytest.approx(10.0)           # 21 - 11
  assert m["layer_attention_ms_with_skips"] == pytest.approx(6.0)  # 17 - 11
  assert m["removed_fraction_of_layer_attention"] == pytest.approx(0.4)  # (21 - 17) / 10
  assert m["step_time_saved_fraction"] == pytest.approx(4 / 21)
  a = rows["aila2:steps=2,skip=half"]
  assert a["unpruned"] == "aila2:steps=2" and a["baseline"] == "residual:steps=2"
  assert a["layer_attention_ms"] == pytest.approx(10.0)           # 20 - 10 (per update)
  assert a["layer_attention_ms_with_skips"] == pytest.approx(6.0)  # 16 - 10
  assert a["removed_fraction_of_layer_attention"] == pytest.approx(0.4)
  assert a["step_time_saved_fraction"] == pytest.approx(0.2)      # 4 / 20
  for spec in ("residual", "mrla_base", "residual:steps=2", "aila2:steps=2"):
    assert "removed_fraction_of_layer_attention" not in rows[spec] and "skip_layers" not in rows[spec]


def test_compile_budget_drops_later_specs(monkeypatch, tmp_path):
  _fakes(monkeypatch, {"residual": [0.01], "mrla_base": [0.02], "mrla_base:skip=half": [0.015]}, loop=7)
  clock = iter(range(0, 1000, 10))  # every reading 10 s later: t0 = 0, then 10, 20, 30
  monkeypatch.setattr(ela_time, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  monkeypatch.setattr(sys, "argv", ["ela_time.py", "--out", str(tmp_path), "--depth", "26", "--rounds", "1",
                                    "--loop", "7", "--compile-budget", "25",
                                    "--specs", "residual;mrla_base;mrla_base:skip=half"])
  result = ela_time.main()
  assert [r["spec"] for r in result["rows"]] == ["residual", "mrla_base"]
  assert result["not_compiled_within_budget"] == ["mrla_base:skip=half"]
  assert result["rows"][1]["ratio_vs_residual"] == pytest.approx(2.0)


def test_cost_fractions_of_layer_attention_flops_and_bytes(monkeypatch, tmp_path):
  costs = {"residual": {"flops": 100.0, "bytes accessed": 1000.0},
           "mrla_base": [{"flops": 150.0, "bytes accessed": 1400.0}],  # a list, as some backends return
           "mrla_base:skip=half": {"flops": 130.0, "bytes accessed": 1300.0}}

  def make_step(spec, depth, batch, dtype):
    compiled = types.SimpleNamespace(cost_analysis=lambda: costs[spec])
    lowered = types.SimpleNamespace(compile=lambda: compiled)
    return types.SimpleNamespace(lower=lambda state: lowered), 0, 3

  monkeypatch.setattr(bd, "make_step", make_step)
  monkeypatch.setattr(sys, "argv", ["ela_time.py", "--out", str(tmp_path), "--depth", "26", "--cost",
                                    "--specs", ";".join(costs)])
  ela_time.main()
  rows = {r["spec"]: r for r in json.loads((tmp_path / "ela_cost_cpu_resnet26.json").read_text())["rows"]}
  assert rows["mrla_base"]["flops"] == 150.0 and rows["mrla_base"]["bytes_accessed"] == 1400.0
  s = rows["mrla_base:skip=half"]
  assert s["removed_fraction_of_layer_attention_flops"] == pytest.approx(0.4)            # (150-130)/(150-100)
  assert s["removed_fraction_of_layer_attention_bytes_accessed"] == pytest.approx(0.25)  # (1400-1300)/400
  assert "removed_fraction_of_layer_attention_flops" not in rows["mrla_base"]


def test_a_spec_without_its_residual_has_no_ratio_and_the_result_is_still_written(monkeypatch, tmp_path):
  # 'aila2:steps=2' needs 'residual:steps=2' for its ratio; without it the row printed None with :.3f and the
  # run's timings were lost (found by mutation testing, 2026-12-08)
  times = {k: TIMES[k] for k in ("residual", "aila2:steps=2")}
  _fakes(monkeypatch, times, loop=7)
  monkeypatch.setattr(sys, "argv", ["ela_time.py", "--out", str(tmp_path), "--depth", "26", "--rounds", "3",
                                    "--loop", "7", "--specs", ";".join(times)])
  result = ela_time.main()
  rows = {r["spec"]: r for r in result["rows"]}
  assert rows["aila2:steps=2"]["ratio_vs_residual"] is None and rows["aila2:steps=2"]["step_ms"] == pytest.approx(20)
  assert (tmp_path / "ela_time_cpu_resnet26.json").exists()
