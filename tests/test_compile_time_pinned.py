"""bench/compile_time.py's row pinned against hand calculations: lower / compile / first-step seconds, the step
time as the median of 5 loops, the fusion count, the trace's pass totals, the isolated child's command and status.
Steps, timers and subprocesses are stand-ins (nothing compiled)."""
import gzip
import json
import subprocess
import sys
import types

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from bench import compile_time  # noqa: E402

HLO = """
  %fusion.1 = f32[4]{0} fusion(f32[4]{0} %p), kind=kLoop
  %fusion.2 = f32[4]{0} fusion(f32[4]{0} %fusion.1), kind=kLoop
  %dot.1 = f32[4,8]{1,0} dot(f32[4,3]{1,0} %a, f32[3,8]{1,0} %b)
  %not_a_fusion = f32[4]{0} add(f32[4] %x, f32[4] %y)
"""


def _fake_measure(monkeypatch, step_times, options_seen):
  clock = iter([10.0, 12.0, 17.0])  # lower 2 s, compile 5 s
  monkeypatch.setattr(compile_time, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  monkeypatch.setattr(compile_time.depth_attn, "DEFAULT_SUM_IMPL", compile_time.depth_attn.DEFAULT_SUM_IMPL)
  compiled = types.SimpleNamespace(as_text=lambda: HLO)
  lowered = types.SimpleNamespace(compile=lambda compiler_options: options_seen.append(compiler_options) or compiled)
  step = types.SimpleNamespace(lower=lambda state: lowered)
  seen = {}
  monkeypatch.setattr(compile_time, "make_step", lambda spec, d, b, dt: seen.update(spec=spec) or (step, 0, 321))
  ns, times = [], iter(step_times)

  def run_steps(c, state, n):
    assert c is compiled
    ns.append(n)
    return state, next(times)
  monkeypatch.setattr(compile_time, "run_steps", run_steps)
  return seen, ns


def test_measure_row_timings_and_median_step(monkeypatch):
  options = []
  seen, ns = _fake_measure(monkeypatch, [0.5, 9.0, 0.05, 0.01, 0.02, 0.03, 0.10], options)
  first = []
  row = compile_time.measure("aila1:mix=vjp,residual=True", "stacked", 8, 4, None, False, steps=6,
                             on_first_step=first.append)
  assert seen["spec"] == "aila1:residual=True" and compile_time.depth_attn.DEFAULT_SUM_IMPL == "stacked"
  assert ns == [1, 3, 6, 6, 6, 6, 6]  # the first step, 3 warm-up steps, 5 loops of --steps
  assert row["lower_s"] == 2.0 and row["compile_s"] == 5.0
  assert row["first_step_s"] == pytest.approx(7.5)  # lower + compile + one step
  # sorted 10, 20, 30, 50, 100 ms: the median 30 ms (the mean would be 42)
  assert row["step_ms"] == pytest.approx(30.0)
  assert (row["fusions"], row["matmuls"], row["matmul_shapes"], row["params"]) == (2, 1, 1, 321)
  assert (row["mixer"], row["impl"], row["depth"], row["batch"]) == ("aila1:mix=vjp,residual=True", "stacked", 8, 4)
  assert len(first) == 1 and "step_ms" not in first[0] and first[0]["first_step_s"] == pytest.approx(7.5)
  assert options == [compile_time.xla_presets.options("default")]


def test_measure_without_steps_has_no_step_time(monkeypatch):
  options = []
  _, ns = _fake_measure(monkeypatch, [0.25], options)
  row = compile_time.measure("residual:xla=notriton", "reduce", 8, 4, None, False)
  assert ns == [1] and "step_ms" not in row and row["first_step_s"] == pytest.approx(7.25)
  assert options == [compile_time.xla_presets.options("notriton")]


def _trace(path, events):
  path.parent.mkdir(parents=True, exist_ok=True)
  with gzip.open(path, "wt") as f:
    json.dump(events, f)


def test_pass_times_totals_per_event_name_longest_first(tmp_path):
  assert compile_time.pass_times(tmp_path, 5) == []
  events = [{"ph": "X", "name": "priority-fusion", "dur": 2_000_000}, {"ph": "X", "name": "priority-fusion",
                                                                       "dur": 1_500_000},
            {"ph": "X", "name": "$bench/x.py:3", "dur": 9_000_000}, {"ph": "B", "name": "open", "dur": 8_000_000},
            {"ph": "X", "name": "layout", "dur": 500_000}, {"ph": "X", "name": "tiny", "dur": 1000},
            {"ph": "X", "name": "nodur"}]
  _trace(tmp_path / "a" / "perfetto_trace.json.gz", [{"ph": "X", "name": "stale", "dur": 99_000_000}])
  _trace(tmp_path / "b" / "perfetto_trace.json.gz", {"traceEvents": events})  # the last file sorted is read
  assert compile_time.pass_times(tmp_path, 2) == [("priority-fusion", 3.5, 2), ("layout", 0.5, 1)]
  assert compile_time.pass_times(tmp_path, 10)[2:] == [("tiny", 0.001, 1), ("nodur", 0.0, 1)]


def test_isolated_child_command_and_status(monkeypatch):
  args = types.SimpleNamespace(depth=8, batch=2, dtype="float32", steps=3, passes=True, spec_timeout_s=1.5)
  cmds = []

  def run(cmd, timeout, **kw):
    cmds.append((cmd, timeout))
    out = cmd[cmd.index("--row_out") + 1]
    with open(out, "w") as f:
      json.dump({"mixer": "aila1", "first_step_s": 1.0}, f)
    return types.SimpleNamespace(returncode=3, stderr="x" * 500 + "END")
  monkeypatch.setattr(compile_time.subprocess, "run", run)
  row = compile_time.measure_isolated("aila1", "slots", args)
  ((cmd, timeout),) = cmds
  assert timeout == 1.5
  assert cmd[2:cmd.index("--row_out")] == ["--mixers", "aila1", "--impls", "slots", "--depth", "8", "--batch", "2",
                                           "--dtype", "float32", "--steps", "3"]
  assert cmd[-1] == "--passes"
  assert row["first_step_s"] == 1.0 and row["process"] == "own" and row["process_s"] >= 0
  assert row["status"].startswith("failed (exit 3): ") and row["status"].endswith("END")
  assert len(row["status"]) == len("failed (exit 3): ") + 400

  def timeout_run(cmd, timeout, **kw):
    raise subprocess.TimeoutExpired(cmd, timeout)
  monkeypatch.setattr(compile_time.subprocess, "run", timeout_run)
  row = compile_time.measure_isolated("residual", "reduce", args)
  assert row == {"mixer": "residual", "impl": "reduce", "process": "own", "process_s": row["process_s"],
                 "status": "stopped after --spec_timeout_s 1.5 s"}


def test_main_writes_one_row_per_spec_and_impl(monkeypatch, tmp_path):
  calls = []

  def measure(spec, impl, depth, batch, dtype, passes, steps, on_first_step=None):
    calls.append((spec, impl, depth, batch, passes, steps))
    return {"mixer": spec, "impl": impl, "lower_s": 1.0, "compile_s": 2.0, "first_step_s": 3.5, "fusions": 4,
            "matmuls": 1, "matmul_shapes": 1}
  monkeypatch.setattr(compile_time, "measure", measure)
  monkeypatch.setattr(sys, "argv", ["compile_time.py", "--out", str(tmp_path), "--tag", "x", "--mixers",
                                    "residual;aila1", "--impls", "reduce,slots", "--depth", "8", "--batch", "2",
                                    "--dtype", "float32", "--steps", "5"])
  result = compile_time.main()
  assert calls == [(s, i, 8, 2, False, 5) for s in ("residual", "aila1") for i in ("reduce", "slots")]
  stored = json.loads((tmp_path / "compile_time_cpu_x.json").read_text())
  assert [(r["mixer"], r["impl"]) for r in stored["rows"]] == [(c[0], c[1]) for c in calls]
  assert stored["rows"] == result["rows"]


def test_with_passes_the_profilers_shutdown_is_not_compile_time(monkeypatch):
  # the clock read after the profiled block counted stopping the profiler and writing its trace as
  # compilation (found by mutation testing, 2026-12-08): here that shutdown takes 30 s of the fake clock
  now = [10.0]
  ticks = iter([0.0, 2.0, 5.0])  # lower 2 s, compile 5 s (the increments at each read)

  def perf_counter():
    now[0] += next(ticks, 0.0)
    return now[0]

  class Trace:
    def __init__(self, d, create_perfetto_trace):
      pass

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      now[0] += 30.0

  options = []
  _fake_measure(monkeypatch, [0.25], options)
  monkeypatch.setattr(compile_time, "time", types.SimpleNamespace(perf_counter=perf_counter))
  monkeypatch.setattr(compile_time.jax.profiler, "trace", Trace)
  monkeypatch.setattr(compile_time, "pass_times", lambda d, top: [])
  row = compile_time.measure("residual", "reduce", 8, 4, None, True)
  assert row["lower_s"] == 2.0 and row["compile_s"] == 5.0 and row["first_step_s"] == pytest.approx(7.25)
