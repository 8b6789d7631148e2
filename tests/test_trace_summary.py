"""bench/trace_summary.py against a hand-made trace with known intervals."""

import gzip
import json

import pytest

from bench import trace_summary


def _write(tmp_path, events):
  d = tmp_path / "plugins" / "profile" / "run"
  d.mkdir(parents=True)
  with gzip.open(d / "perfetto_trace.json.gz", "wt") as f:
    json.dump({"traceEvents": events}, f)


def test_busy_union_idle_and_categories(tmp_path):
  meta = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}}]
  x = lambda pid, ts, dur, name: {"ph": "X", "pid": pid, "tid": 0, "ts": ts, "dur": dur, "name": name}
  # GPU intervals [0,10) conv, [5,15) overlapping fusion, [30,40) reduce: union 25 us of a 40 us span
  events = meta + [x(1, 0, 10, "sm90_xmma_fprop_conv"), x(1, 5, 10, "loop_add_fusion"),
                   x(1, 30, 10, "input_reduce_fusion"), x(2, 0, 1000, "PjitFunction(step)")]
  _write(tmp_path, events)
  s = trace_summary.summarize(tmp_path, steps=2)
  assert s["kernels"] == 3 and s["kernels_per_step"] == 1.5
  assert s["span_ms"] == pytest.approx(0.040) and s["busy_ms"] == pytest.approx(0.025)
  assert s["idle_fraction"] == pytest.approx(1 - 25 / 40)
  assert s["busy_ms_per_step"] == pytest.approx(0.0125)
  assert s["categories"]["conv_gemm"]["ms_per_step"] == pytest.approx(0.005)
  assert s["categories"]["reduce_fusion"]["fraction"] == pytest.approx(10 / 30)
  assert s["categories"]["fusion"]["fraction"] == pytest.approx(10 / 30)
  assert s["top_kernels"][0]["ms_per_step"] == pytest.approx(0.005)


def test_missing_trace_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="perfetto_trace"):
    trace_summary.summarize(tmp_path, steps=1)


def test_hlo_sources_name_the_fused_ops_of_a_kernel():
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def loss(x, w):
    return (jnp.maximum(x * w, 0.0).sum(0) * jnp.where(x > 1, x, 0.0).sum(0)).sum()

  text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(jnp.ones((64, 32)), jnp.ones(32)).compile().as_text()
  fusions = [line.split(" = ")[0].strip().lstrip("%") for line in text.splitlines()
             if " fusion(" in line and "calls=%" in line and "op_name=" in line]
  assert fusions, "the CPU compiler fused nothing: the test needs another function"
  kernels = [trace_summary.kernel_name(f) for f in fusions] + ["sm90_xmma_fprop_not_an_instruction"]
  got = trace_summary.hlo_sources(text, kernels)
  assert set(got) == {trace_summary.kernel_name(f) for f in fusions}  # library kernels are left out
  for f in fusions:
    row = got[trace_summary.kernel_name(f)]
    assert row["instruction"] == f and row["opcode"] == "fusion" and row["op_name"].startswith("jit(loss)/")
    assert row["fused_op_names"] and all(o.startswith("jit(loss)/") for o in row["fused_op_names"])
  assert any("jvp()/max" in o or "transpose(jvp())" in o for r in got.values() for o in r["fused_op_names"])
  assert trace_summary.kernel_name("input_reduce-window.8") == "input_reduce_window_8"


@pytest.mark.parametrize("gz", [False, True])
def test_torch_chrome_trace_counts_only_device_events(tmp_path, gz):
  # torch.profiler's Chrome trace: kernels (cat 'kernel'), copies and memsets are device time; CPU ops, runtime
  # calls and instants are not. Inductor's reduction kernels (triton_red_ / triton_per_) count as reductions.
  x = lambda cat, ts, dur, name: {"ph": "X", "cat": cat, "pid": 0, "tid": 7, "ts": ts, "dur": dur, "name": name}
  events = [x("cpu_op", 0, 500, "aten::convolution"), x("cuda_runtime", 1, 3, "cudaLaunchKernel"),
            x("kernel", 10, 20, "sm90_xmma_fprop_implicit_gemm"), x("kernel", 40, 5, "triton_red_fused_native_bn_0"),
            x("kernel", 45, 5, "triton_per_fused_sum_1"), x("kernel", 60, 10, "triton_poi_fused_relu_2"),
            x("gpu_memset", 70, 10, "Memset (Device)"), {"ph": "i", "cat": "kernel", "ts": 5, "name": "marker"}]
  path = tmp_path / ("t.json.gz" if gz else "t.json")
  with (gzip.open(path, "wt") if gz else open(path, "w")) as f:
    json.dump({"traceEvents": events}, f)
  s = trace_summary.summarize_torch(path, steps=2)
  assert s["process"] == "torch" and s["kernels"] == 5
  assert s["span_ms"] == pytest.approx(0.070) and s["busy_ms"] == pytest.approx(0.050)  # [10,30) [40,50) [60,80)
  assert s["kernel_ms_per_step"] == pytest.approx(0.025)
  cats = {k: v["ms_per_step"] for k, v in s["categories"].items()}
  assert cats == pytest.approx({"conv_gemm": 0.010, "reduce_fusion": 0.005, "fusion": 0.005, "copy_memset": 0.005})
  with pytest.raises(FileNotFoundError, match="export_chrome_trace"):
    trace_summary.summarize_torch(tmp_path / "missing.json", steps=1)


@pytest.mark.parametrize("cuda", [False, True])
def test_profile_torch_runs_the_steps_under_the_profiler_and_keeps_the_trace(tmp_path, monkeypatch, cuda):
  # a stand-in torch.profiler: records the activities and the steps run inside it, writes a two-kernel trace
  import sys  # pylint: disable=import-outside-toplevel
  import types  # pylint: disable=import-outside-toplevel
  seen = {}
  events = [{"ph": "X", "cat": "kernel", "ts": 0, "dur": 30, "name": "gemm_a"},
            {"ph": "X", "cat": "kernel", "ts": 50, "dur": 10, "name": "triton_poi_fused_relu"}]

  class Profile:
    def __init__(self, activities):
      seen["activities"] = activities

    def __enter__(self):
      seen["inside"] = True
      return self

    def __exit__(self, *exc):
      seen["inside"] = False

    def export_chrome_trace(self, path):
      with open(path, "w") as f:
        json.dump({"traceEvents": events}, f)

  profiler = types.SimpleNamespace(ProfilerActivity=types.SimpleNamespace(CPU="cpu", CUDA="cuda"), profile=Profile)
  monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(profiler=profiler))
  run = lambda n: seen.update(steps=n, ran_inside=seen["inside"])
  s = trace_summary.profile_torch(run, 4, cuda=cuda, keep=tmp_path / "kept.json.gz")
  assert seen["activities"] == (["cpu", "cuda"] if cuda else ["cpu"])
  assert seen["steps"] == 4 and seen["ran_inside"]
  assert s["kernels"] == 2 and s["kernel_ms_per_step"] == pytest.approx(0.040 / 4)  # 40 us over 4 steps
  with gzip.open(tmp_path / "kept.json.gz", "rt") as f:
    assert json.load(f)["traceEvents"] == events
