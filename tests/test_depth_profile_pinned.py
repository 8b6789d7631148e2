"""bench/depth_profile.py's derived numbers against hand counts: the ENTRY computation's operations by kind, the
device kernels read from a trace (stream threads of device processes only), and the per-step figures of a
profile row (wall ms, kernels per step, busy ms, top kernels). No model is built, nothing is traced."""
import contextlib
import gzip
import json
import sys
import types

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import depth_profile  # noqa: E402

HLO = """HloModule jit_step, entry_computation_layout={(f32[4]{0})->f32[4]{0}}

%fused_computation (param_0: f32[4]) -> f32[4] {
  %param_0 = f32[4]{0} parameter(0)
  %neg = f32[4]{0} negate(f32[4]{0} %param_0)
  ROOT %add = f32[4]{0} add(f32[4]{0} %neg, f32[4]{0} %param_0)
}

ENTRY %main.9 (a: f32[4], b: f32[4,4]) -> (f32[4]) {
  %iota = f32[4]{0} iota(), iota_dimension=0
  %a = f32[4]{0} parameter(0)
  %b = f32[4,4]{1,0} parameter(1)
  %fusion.1 = f32[4]{0} fusion(f32[4]{0} %a), kind=kLoop, calls=%fused_computation
  %fusion.2 = f32[4]{0} fusion(f32[4]{0} %fusion.1), kind=kLoop, calls=%fused_computation
  %fusion.3 = f32[4]{0} fusion(f32[4]{0} %fusion.2), kind=kLoop, calls=%fused_computation
  %gemm = (f32[4,4]{1,0}, s8[0]{0}) custom-call(f32[4,4]{1,0} %b, f32[4,4]{1,0} %b), custom_call_target="__cublas$gemm"
  %gte = f32[4,4]{1,0} get-tuple-element((f32[4,4]{1,0}, s8[0]{0}) %gemm), index=0
  %conv = f32[4,4]{1,0} custom-call(f32[4,4]{1,0} %gte), custom_call_target="__cudnn$convForward"
  %cp = f32[4]{0} copy(f32[4]{0} %fusion.3)
  %cp.2 = f32[4]{0} copy(f32[4]{0} %cp)
  %c = f32[] constant(0)
  ROOT %t = (f32[4]{0}) tuple(f32[4]{0} %cp.2)
}
"""


def test_op_kinds_counts_the_entry_computation_by_kind():
  got = depth_profile.op_kinds(HLO)
  assert got == {"fusion": 3, "copy": 2, "custom-call:__cublas$gemm": 1, "custom-call:__cudnn$convForward": 1,
                 "iota": 1}  # the first operation counted too
  assert list(got)[:2] == ["fusion", "copy"]  # most frequent first

K3 = "k3_" + "x" * 130  # a long kernel name


def _events():
  meta = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
          {"ph": "M", "name": "thread_name", "pid": 1, "tid": 10, "args": {"name": "Stream #13(compute)"}},
          {"ph": "M", "name": "thread_name", "pid": 1, "tid": 11, "args": {"name": "XLA Ops"}},
          {"ph": "M", "name": "thread_name", "pid": 2, "tid": 20, "args": {"name": "stream host"}},
          # a host-side process whose name mentions the GPU: not the device's kernels
          {"ph": "M", "name": "process_name", "pid": 3, "args": {"name": "/host:GPU launches"}},
          {"ph": "M", "name": "thread_name", "pid": 3, "tid": 30, "args": {"name": "Stream launcher"}}]
  kernels = []
  for _ in range(4):  # 4 steps: k1 twice (5 us each), k2 once (3 us), K3 4 times (0.5 us) per step
    kernels += [{"ph": "X", "pid": 1, "tid": 10, "name": "k1", "dur": 5},
                {"ph": "X", "pid": 1, "tid": 10, "name": "k2", "dur": 3},
                {"ph": "X", "pid": 1, "tid": 10, "name": "k1", "dur": 5}]
    kernels += [{"ph": "X", "pid": 1, "tid": 10, "name": K3, "dur": 0.5}] * 4
  noise = [{"ph": "X", "pid": 1, "tid": 11, "name": "fusion.1", "dur": 13},  # XLA-op line duplicates kernels
           {"ph": "X", "pid": 2, "tid": 20, "name": "host op", "dur": 100},  # host process
           {"ph": "X", "pid": 3, "tid": 30, "name": "launch", "dur": 50},  # host process naming the GPU
           {"ph": "i", "pid": 1, "tid": 10, "name": "marker"}]
  return meta + noise + kernels


def test_device_kernels_are_the_stream_events_of_device_processes():
  kernels, threads = depth_profile.device_kernels(_events())
  assert kernels == ([("k1", 5.0), ("k2", 3.0), ("k1", 5.0)] + [(K3, 0.5)] * 4) * 4
  assert threads == "Stream #13(compute) (28)"


def test_trace_events_reads_the_perfetto_json(tmp_path):
  assert depth_profile._trace_events(tmp_path) is None  # pylint: disable=protected-access
  sub = tmp_path / "plugins" / "profile" / "x"
  sub.mkdir(parents=True)
  with gzip.open(sub / "perfetto_trace.json.gz", "wt") as f:
    json.dump({"traceEvents": [{"ph": "X", "name": "k"}]}, f)
  assert depth_profile._trace_events(tmp_path) == [{"ph": "X", "name": "k"}]  # pylint: disable=protected-access


def test_profile_row_per_step_figures(monkeypatch):
  loop = 4
  compiled = types.SimpleNamespace(as_text=lambda: HLO)
  step = types.SimpleNamespace(lower=lambda state: types.SimpleNamespace(compile=lambda: compiled))
  monkeypatch.setattr(depth_profile, "make_step", lambda spec, d, b, dt: (step, 0, 321))
  calls = []

  def run_steps(s, state, n):
    calls.append(n)
    return state, {5: 9.0, loop: 0.004}[n]

  monkeypatch.setattr(depth_profile, "run_steps", run_steps)
  monkeypatch.setattr(depth_profile.jax.profiler, "trace", lambda *a, **k: contextlib.nullcontext())
  monkeypatch.setattr(depth_profile, "_trace_events", lambda d: _events())
  row = depth_profile.profile("aila1", 8, 2, None, loop, trace=True)
  assert calls == [5, loop, loop]  # warm-up, timed loop, traced loop
  assert row["mixer"] == "aila1" and row["depth"] == 8 and row["batch"] == 2 and row["params"] == 321
  assert row["hlo_ops_total"] == 8
  assert row["wall_ms"] == pytest.approx(4.0)
  assert row["kernels_per_step"] == pytest.approx(7.0)  # 28 kernels over 4 steps
  assert row["busy_ms"] == pytest.approx(0.015)  # (8 * 5 + 4 * 3 + 16 * 0.5) us / 4 steps
  assert row["streams"] == "Stream #13(compute) (28)"
  # by time per step, not by count (K3 is the most frequent), names cut to 120 characters
  assert row["top_kernels"] == [{"name": "k1", "per_step": 2.0, "us_per_step": 10.0},
                                {"name": "k2", "per_step": 1.0, "us_per_step": 3.0},
                                {"name": K3[:120], "per_step": 4.0, "us_per_step": 2.0}]
  monkeypatch.setattr(depth_profile, "_trace_events", lambda d: None)
  calls.clear()
  row = depth_profile.profile("aila1", 8, 2, None, loop, trace=True)
  assert "busy_ms" not in row and row["wall_ms"] == pytest.approx(4.0)
  row = depth_profile.profile("aila1", 8, 2, None, loop, trace=False)
  assert "busy_ms" not in row and "kernels_per_step" not in row
