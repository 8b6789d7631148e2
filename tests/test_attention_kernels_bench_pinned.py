"""bench/attention_kernels.py: the JSON it reports (each row's TFLOP/s, the ratio to the best torch SDPA row, the
relative error against cuDNN) pinned against hand calculations, on the CPU: the timer, the kernels (cuDNN, Mosaic
GPU, Triton) and torch are fakes; nothing is compiled beyond trivial jitted functions on tiny arrays."""
import contextlib
import json
import sys
import types

import jax
import numpy as np
import pytest

from helpers import FakeTorchTensor


@pytest.fixture
def kernels(monkeypatch):
  monkeypatch.syspath_prepend(".")  # the script puts bench/ on sys.path; undone after the test
  from bench import attention_kernels  # pylint: disable=import-outside-toplevel
  return attention_kernels


# --shape 1,4,2,4 (non-causal): FLOPs = 2.5 * 4*1*2*4*4*4 = 1280. Rows in the order the script times them, with
# the median seconds the fake timer answers and the TFLOP/s that makes (1280 / med / 1e12).
_ROWS = [("cudnn", 320e-12, 4.0), ("cudnn_fp16", 256e-12, 5.0),
         ("pallas_mgpu_q64_kv64", 640e-12, 2.0), ("pallas_mgpu_q64_kv128", 160e-12, 8.0),
         ("pallas_mgpu_q128_kv64", 1280e-12, 1.0), ("pallas_mgpu_q128_kv128", 128e-12, 10.0),
         ("pallas_mgpu_fp16_q64_kv128", None, None), ("pallas_mgpu_fp16_q128_kv128", 80e-12, 16.0),
         ("pallas_triton", 400e-12, 3.2),
         ("torch_sdpa", 128e-12, 10.0), ("torch_sdpa_flash", 160e-12, 8.0), ("torch_sdpa_cudnn", 256e-12, 5.0)]


def test_rows_ratios_and_errors(kernels, monkeypatch, tmp_path, capsys):
  common = kernels.common
  calls, seen, timed_dtypes = [], [], []

  def fake_time_calls(fn, sync, reps):
    name, med, _ = _ROWS[len(calls)]
    calls.append((name, reps))
    dtype = fn()
    if dtype is not None:
      timed_dtypes.append(str(dtype))
    if med is None:
      raise RuntimeError("dtype mismatch")
    return med, 0.5 * med, 2 * med, 3

  def fake_dpa(q, k, v, implementation=None, **kw):
    seen.append(("dpa", implementation))
    return q  # "cuDNN": the reference output is q

  mgpu = types.ModuleType("jax.experimental.pallas.ops.gpu.attention_mgpu")
  mgpu.TuningConfig = lambda **kw: kw

  def mgpu_attention(q, k, v, cfg):
    seen.append(("mgpu", cfg["block_q"], cfg["block_kv"], cfg["block_q_dq"], cfg["block_kv_dkv"]))
    return q  # the kernel applies no scale: its output is the pre-scaled query, q / sqrt(4) = q / 2

  mgpu.attention = mgpu_attention
  triton = types.ModuleType("jax.experimental.pallas.ops.gpu.attention")
  triton.mha = lambda q, k, v, segment_ids, sm_scale: q * (sm_scale / 2)  # q / 4
  monkeypatch.setitem(sys.modules, mgpu.__name__, mgpu)
  monkeypatch.setitem(sys.modules, triton.__name__, triton)
  import jax.experimental.pallas.ops.gpu as gpu_pkg  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(gpu_pkg, "attention_mgpu", mgpu, raising=False)
  monkeypatch.setattr(gpu_pkg, "attention", triton, raising=False)

  backend = [None]

  @contextlib.contextmanager
  def sdpa_kernel(b):
    backend[0] = b
    yield
    backend[0] = None

  def sdpa(q, k, v):
    seen.append(("sdpa", backend[0], q.a.shape))
    return FakeTorchTensor(q.a)

  torch = types.ModuleType("torch")
  torch.bfloat16 = "bf16"
  torch.from_numpy = FakeTorchTensor
  torch.cuda = types.SimpleNamespace(is_available=lambda: True, synchronize=lambda: None)
  torch.nn = types.SimpleNamespace(functional=types.SimpleNamespace(scaled_dot_product_attention=sdpa))
  torch.autograd = types.SimpleNamespace(grad=lambda out, inputs, g: None)
  tattn = types.ModuleType("torch.nn.attention")
  tattn.SDPBackend = types.SimpleNamespace(FLASH_ATTENTION="FLASH", CUDNN_ATTENTION="CUDNN")
  tattn.sdpa_kernel = sdpa_kernel
  for name, mod in (("torch", torch), ("torch.nn", types.ModuleType("torch.nn")), ("torch.nn.attention", tattn)):
    monkeypatch.setitem(sys.modules, name, mod)

  monkeypatch.setattr(common, "time_calls", fake_time_calls)
  monkeypatch.setattr(common, "jax_fwd_bwd", lambda f: (lambda *a: a[0].dtype))  # the timed inputs' dtype
  monkeypatch.setattr(common, "torch", torch)
  monkeypatch.setattr(jax.nn, "dot_product_attention", fake_dpa)
  monkeypatch.setattr(sys, "argv", ["bench/attention_kernels.py", "--out", str(tmp_path), "--shape", "1,4,2,4",
                                    "--reps", "2"])
  kernels.main()
  capsys.readouterr()

  report = json.loads((tmp_path / "attention_kernels_cpu.json").read_text())
  assert [n for n, _ in calls] == [n for n, _, _ in _ROWS] and all(r == 2 for _, r in calls)
  assert report["shape"] == [1, 4, 2, 4] and report["causal"] is False and report["device"] == "cpu"
  rows = report["rows"]
  assert list(rows) == [n for n, _, _ in _ROWS]
  for name, med, tflops in _ROWS:
    if med is None:
      assert rows[name] == {"error": "RuntimeError: dtype mismatch"}
      continue
    assert rows[name]["tflops"] == pytest.approx(tflops, rel=1e-12), name
    assert rows[name]["ms"] == pytest.approx(med * 1e3, rel=1e-12), name
    assert rows[name]["ms_min"] == pytest.approx(med * 0.5e3, rel=1e-12), name
    assert rows[name]["ms_max"] == pytest.approx(med * 2e3, rel=1e-12), name
    assert rows[name]["inner"] == 3
  # best torch row: torch_sdpa (PyTorch's own choice), 10 TFLOP/s; every row with a time is divided by it
  assert report["ratio_to_best_torch"] == pytest.approx({
      "cudnn": 0.4, "cudnn_fp16": 0.5, "pallas_mgpu_q64_kv64": 0.2, "pallas_mgpu_q64_kv128": 0.8,
      "pallas_mgpu_q128_kv64": 0.1, "pallas_mgpu_q128_kv128": 1.0, "pallas_mgpu_fp16_q128_kv128": 1.6,
      "pallas_triton": 0.32, "torch_sdpa": 1.0, "torch_sdpa_flash": 0.8, "torch_sdpa_cudnn": 0.5}, rel=1e-12)
  # the fp16 rows time the float16 copies of the inputs, the others bfloat16
  assert timed_dtypes == ["bfloat16", "float16"] + ["bfloat16"] * 4 + ["float16"] * 2 + ["bfloat16"]
  # errors against cuDNN (q), only for the bf16 rows on (q, k, v): Mosaic q/2 -> 0.5, Triton q/4 -> 0.75
  assert report["rel_err_vs_cudnn"] == pytest.approx({
      "cudnn": 0.0, "pallas_mgpu_q64_kv64": 0.5, "pallas_mgpu_q64_kv128": 0.5, "pallas_mgpu_q128_kv64": 0.5,
      "pallas_mgpu_q128_kv128": 0.5, "pallas_triton": 0.75}, rel=1e-6, abs=1e-7)
  assert ("dpa", "cudnn") in seen and all(s[1] == "cudnn" for s in seen if s[0] == "dpa")
  # the block configs: (block_q, block_kv) also set for the backward kernels
  assert {s[1:] for s in seen if s[0] == "mgpu"} == {(64, 64, 64, 64), (64, 128, 64, 128), (128, 64, 128, 64),
                                                     (128, 128, 128, 128)}
  assert [s[1:] for s in seen if s[0] == "sdpa"] == [(None, (1, 2, 4, 4)), ("FLASH", (1, 2, 4, 4)),
                                                     ("CUDNN", (1, 2, 4, 4))]


def test_no_torch_rows_no_ratios(kernels, monkeypatch, tmp_path, capsys):
  # without torch there is no best torch row: no ratios (not a division by zero)
  common = kernels.common
  monkeypatch.setattr(common, "time_calls", lambda fn, sync, reps: (1e-9, 1e-9, 1e-9, 1))
  monkeypatch.setattr(common, "jax_fwd_bwd", lambda f: (lambda *a: None))
  monkeypatch.setattr(common, "torch", None)
  monkeypatch.setattr(jax.nn, "dot_product_attention", lambda q, k, v, **kw: q)
  monkeypatch.setitem(sys.modules, "jax.experimental.pallas.ops.gpu.attention_mgpu", None)
  monkeypatch.setitem(sys.modules, "jax.experimental.pallas.ops.gpu.attention", None)
  import jax.experimental.pallas.ops.gpu as gpu_pkg  # pylint: disable=import-outside-toplevel
  monkeypatch.delattr(gpu_pkg, "attention_mgpu", raising=False)
  monkeypatch.delattr(gpu_pkg, "attention", raising=False)
  monkeypatch.setattr(sys, "argv", ["x", "--out", str(tmp_path), "--shape", "1,4,2,4", "--reps", "1"])
  kernels.main()
  capsys.readouterr()
  report = json.loads((tmp_path / "attention_kernels_cpu.json").read_text())
  assert report["ratio_to_best_torch"] == {}
  assert report["rows"]["cudnn"]["tflops"] == pytest.approx(1.28)  # 1280 FLOPs in 1 ns = 1.28e12 FLOP/s
  assert report["rows"]["pallas_mgpu"]["error"].startswith("ImportError")
  assert report["rows"]["pallas_triton"]["error"].startswith("ImportError")
