"""bench/attention.py: its reported numbers pinned against hand calculations, on the CPU with fakes (no kernel
is timed or compiled beyond trivial jitted functions on tiny arrays): the timer (median of the per-call means of an
inner loop), the FLOP conventions, each row's TFLOP/s, the module's attention part, the best torch backend, the
ratios, the relative errors and which shapes ``main`` runs."""
import contextlib
import json
import sys
import types

import numpy as np
import pytest

from bench import attention
from helpers import FakeTorchTensor


# --- the timer ------------------------------------------------------------------------------------------------

class _Clock:
  """A fake ``perf_counter``: time moves only when the timed function runs, by scripted durations."""

  def __init__(self, durations):
    self.t, self.durations, self.calls = 0.0, list(durations), 0

  def perf_counter(self):
    return self.t

  def fn(self):
    self.t += self.durations.pop(0)
    self.calls += 1
    return self.calls


def test_time_calls_median_of_inner_loop_means(monkeypatch):
  # 3 warm-up calls (not timed), one call of 0.25 s -> inner = int(1.0 / 0.25) = 4 calls per repetition;
  # repetitions of 4 calls summing to 4, 6, 20 s -> per call 1.0, 1.5, 5.0: median 1.5 (the mean would be 2.5).
  clock = _Clock([9.0, 9.0, 9.0, 0.25] + [0.5, 1.5, 1.0, 1.0] + [1.5] * 4 + [2.0, 8.0, 5.0, 5.0])
  monkeypatch.setattr(attention, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
  synced = []
  med, lo, hi, inner = attention.time_calls(clock.fn, synced.append, reps=3, target_s=1.0, warmup=3)
  assert (med, lo, hi, inner) == (1.5, 1.0, 5.0, 4)
  assert clock.calls == 3 + 1 + 3 * 4 and not clock.durations
  assert synced == [1, 2, 3, 4, 8, 12, 16]  # each warm-up call, the probe, then the last call of each repetition


@pytest.mark.parametrize("one,target,expected_inner", [(2.0, 1.0, 1), (0.0, 1.0, 200), (0.001, 1.0, 200),
                                                       (0.125, 1.0, 8)])
def test_time_calls_inner_loop_length(monkeypatch, one, target, expected_inner):
  # inner = max(1, min(200, int(target / max(one, 1e-6))))
  clock = _Clock([0.0] + [one] + [0.5] * expected_inner)
  monkeypatch.setattr(attention, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
  med, lo, hi, inner = attention.time_calls(clock.fn, lambda _: None, reps=1, target_s=target, warmup=1)
  assert inner == expected_inner and med == lo == hi == 0.5


# --- FLOP conventions -----------------------------------------------------------------------------------------

def test_flop_conventions():
  # attention fwd = 4*B*H*L*L*D (halved if causal), fwd+bwd = 2.5x: B=2, L=8, H=3, D=4 -> 4*2*3*64*4 = 6144 -> 15360
  assert attention.attention_flops(2, 8, 3, 4, False) == 15360
  assert attention.attention_flops(2, 8, 3, 4, True) == 7680
  # projections: F = H*D = 12, 4 of 2*B*L*F*F = 2*2*8*144 = 4608 each -> 18432 fwd, x3 fwd+bwd = 55296
  assert attention.projection_flops(2, 8, 3, 4) == 55296


# --- bench_shape with fakes -----------------------------------------------------------------------------------

def _fake_torch(monkeypatch, seen):
  backend = [None]

  @contextlib.contextmanager
  def sdpa_kernel(b):
    backend[0] = b
    yield
    backend[0] = None

  def sdpa(q, k, v, is_causal=False):
    seen.append(("sdpa", backend[0], is_causal, q.a.shape))
    return FakeTorchTensor(4 * q.a)  # torch's output: 4x our dispatched one (which is q), in [B, H, L, D]

  torch = types.ModuleType("torch")
  torch.bfloat16 = "bf16"
  torch.from_numpy = FakeTorchTensor
  torch.no_grad = contextlib.nullcontext
  torch.autograd = types.SimpleNamespace(grad=lambda out, inputs, g: ("grad", backend[0]))
  torch.cuda = types.SimpleNamespace(synchronize=lambda: None, empty_cache=lambda: None)
  tnn = types.ModuleType("torch.nn")
  tattn = types.ModuleType("torch.nn.attention")
  tattn.SDPBackend = types.SimpleNamespace(FLASH_ATTENTION="FLASH", CUDNN_ATTENTION="CUDNN",
                                           EFFICIENT_ATTENTION="EFFICIENT")
  tattn.sdpa_kernel = sdpa_kernel
  for name, mod in (("torch", torch), ("torch.nn", tnn), ("torch.nn.attention", tattn)):
    monkeypatch.setitem(sys.modules, name, mod)
  monkeypatch.setattr(attention, "torch", torch)
  monkeypatch.setattr(attention, "F", types.SimpleNamespace(scaled_dot_product_attention=sdpa), raising=False)


# B=1, L=4, H=2, D=4, causal: attention fwd+bwd FLOPs = 4*1*2*16*4 / 2 * 2.5 = 640;
# projections: F = 8, 3 * 4 * 2*1*4*64 = 6144; a module row counts 640 + 6144 = 6784.
_ORDER = ["ours_core", "ours_core_xla", "cudnn", "jax_nn_xla", "ours_module", "flax_module", "projections",
          "torch_sdpa", "torch_sdpa_flash", "torch_sdpa_cudnn", "torch_sdpa_efficient"]
# median seconds of each row (the fake timer's answers, in the order bench_shape times them) and its TFLOP/s
_MED = {"ours_core": 160e-12, "ours_core_xla": 320e-12, "cudnn": 128e-12, "jax_nn_xla": 640e-12,
        "ours_module": 3392e-12, "flax_module": 13568e-12, "projections": 3264e-12,
        "torch_sdpa": 200e-12, "torch_sdpa_flash": 100e-12, "torch_sdpa_cudnn": 80e-12,
        "torch_sdpa_efficient": 160e-12}
_TFLOPS = {"ours_core": 4.0, "ours_core_xla": 2.0, "cudnn": 5.0, "jax_nn_xla": 1.0, "ours_module": 2.0,
           "flax_module": 0.5, "projections": 6144 / 3264, "torch_sdpa": 3.2, "torch_sdpa_flash": 6.4,
           "torch_sdpa_cudnn": 8.0, "torch_sdpa_efficient": 4.0}


def _run_bench_shape(monkeypatch, med, on_gpu=True, with_torch=True):
  calls, seen = [], []

  def fake_time_calls(fn, sync, reps):
    name = _ORDER[len(calls)] if on_gpu else [n for n in _ORDER if n != "cudnn"][len(calls)]
    calls.append((name, reps))
    fn()
    return med[name], 0.5 * med[name], 2 * med[name], 7

  class _Lowered:
    def as_text(self):
      return 'stablehlo.custom_call @__cudnn$fmhaSoftmax'

  class _Compiled:
    def __init__(self, f=None):
      self.f = f

    def lower(self, *args):
      return _Lowered()

    def __call__(self, *args):
      if self.f is not None:  # the attention function the row times, on (q, k, v)
        try:
          self.f(*args[:3])
        except Exception:  # pylint: disable=broad-except
          seen.append(("failed",))

  def fake_dpa(q, k, v, is_causal, implementation):
    seen.append(("dpa", implementation, is_causal))
    return q if implementation is None else 2 * q  # our dispatched path vs our einsum path: 2x apart

  class _Module:
    def __init__(self, **kw):
      pass

    def init(self, rng, x):
      return {"params": {}}

    def apply(self, *a, **k):
      return None

  monkeypatch.setattr(attention, "time_calls", fake_time_calls)
  monkeypatch.setattr(attention, "jax_fwd_bwd", _Compiled)
  monkeypatch.setattr(attention, "module_fwd_bwd", lambda f: _Compiled())
  monkeypatch.setattr(attention.jax.nn, "dot_product_attention", lambda q, k, v, **kw: q)  # jax's rows: not run
  monkeypatch.setattr(attention, "dpa", types.SimpleNamespace(dot_product_attention=fake_dpa))
  monkeypatch.setattr(attention, "MultiHeadAttention", _Module)
  monkeypatch.setattr(attention, "nn", types.SimpleNamespace(MultiHeadDotProductAttention=_Module,
                                                             make_causal_mask=lambda x: None))
  if with_torch:
    _fake_torch(monkeypatch, seen)
  else:
    monkeypatch.setattr(attention, "torch", None)
  res = attention.bench_shape(1, 4, 2, 4, True, reps=5, on_gpu=on_gpu)
  return res, calls, seen


def test_bench_shape_rows_ratios_and_errors(monkeypatch):
  res, calls, seen = _run_bench_shape(monkeypatch, _MED)
  assert [n for n, _ in calls] == _ORDER and all(r == 5 for _, r in calls)
  assert res["shape"] == [1, 4, 2, 4] and res["causal"] is True
  assert res["attention_flops_fwd_bwd"] == 640 and res["projection_flops_fwd_bwd"] == 6144
  assert res["ours_dispatch"] == "cudnn"
  rows = res["results"]
  for name in _ORDER:
    r = rows[name]
    assert r["tflops"] == pytest.approx(_TFLOPS[name], rel=1e-12), name
    assert r["ms"] == pytest.approx(_MED[name] * 1e3, rel=1e-12), name
    assert r["ms_min"] == pytest.approx(0.5e3 * _MED[name], rel=1e-12), name
    assert r["ms_max"] == pytest.approx(2e3 * _MED[name], rel=1e-12), name
    assert r["inner"] == 7
  # module minus projections: 3.392e-6 - 3.264e-6 = 0.128e-6 ms = 128e-12 s -> 640 / 128e-12 / 1e12 = 5.0 TFLOP/s
  part = rows["ours_module_attention_part"]
  assert part["ms"] == pytest.approx(1.28e-7, rel=1e-9) and part["tflops"] == pytest.approx(5.0, rel=1e-9)
  assert res["best_torch_backend"] == "torch_sdpa_cudnn"
  assert res["ratios"] == pytest.approx({
      "ours_core/cudnn": 0.8, "ours_core/torch_sdpa": 1.25, "ours_core/best_torch_sdpa": 0.5,
      "ours_module_attention_part/cudnn": 1.0, "ours_module/flax_module": 4.0, "ours_core/ours_core_xla": 2.0},
      rel=1e-9)
  # ours (q) vs ours einsum path (2q): |q - 2q| / |2q| = 0.5; vs torch (4q): |q - 4q| / |4q| = 0.75
  assert res["rel_err_ours_vs_xla"] == pytest.approx(0.5, rel=1e-6)
  assert res["rel_err_ours_vs_torch"] == pytest.approx(0.75, rel=1e-6)
  # the functions timed as ours_core, ours_core_xla, then the two outputs compared: dispatched, einsum path
  assert [s[1:] for s in seen if s[0] == "dpa"] == [(None, True), ("xla", True), (None, True), ("xla", True)]
  sdpa = [s for s in seen if s[0] == "sdpa"]
  assert [s[1] for s in sdpa] == [None, "FLASH", "CUDNN", "EFFICIENT", None]  # 4 timed + the check
  assert all(s[2] is True and s[3] == (1, 2, 4, 4) for s in sdpa)  # causal, [B, H, L, D]


def test_best_torch_backend_includes_plain_sdpa(monkeypatch):
  med = dict(_MED, torch_sdpa=40e-12)  # 16 TFLOP/s, faster than each forced backend
  res, _, _ = _run_bench_shape(monkeypatch, med)
  assert res["best_torch_backend"] == "torch_sdpa"
  assert res["ratios"]["ours_core/best_torch_sdpa"] == pytest.approx(0.25, rel=1e-9)
  assert res["ratios"]["ours_core/torch_sdpa"] == pytest.approx(0.25, rel=1e-9)


def test_cpu_rows_without_torch_or_cudnn(monkeypatch):
  res, calls, _ = _run_bench_shape(monkeypatch, _MED, on_gpu=False, with_torch=False)
  assert "cudnn" not in res["results"] and not any(n.startswith("torch") for n in res["results"])
  assert res["best_torch_backend"] is None and "rel_err_ours_vs_torch" not in res
  r = res["ratios"]
  assert r["ours_core/cudnn"] is None and r["ours_core/torch_sdpa"] is None and r["ours_core/best_torch_sdpa"] is None
  assert r["ours_module/flax_module"] == pytest.approx(4.0) and r["ours_core/ours_core_xla"] == pytest.approx(2.0)


# --- main: which shapes, how many repetitions, where the JSON goes ---------------------------------------------

def _fake_shape_result(b, length, h, d, causal, reps, on_gpu):
  return {"shape": [b, length, h, d], "causal": causal, "reps": reps, "on_gpu": on_gpu, "results": {},
          "ratios": {"ours_core/cudnn": None, "ours_core/torch_sdpa": None, "ours_module/flax_module": 1.5}}


@pytest.mark.parametrize("argv,shapes,reps", [
    (["--shapes", "0,2"], [[8, 2048, 16, 64], [4, 4096, 16, 128]], 7),
    (["--smoke", "--reps", "9"], [[1, 16, 2, 8]], 1),
    (["--quick", "--reps", "3"], [[2, 64, 2, 16], [2, 64, 2, 16]], 3),
])
def test_main_shapes_and_reps(monkeypatch, tmp_path, capsys, argv, shapes, reps):
  monkeypatch.setattr(attention, "bench_shape", _fake_shape_result)
  monkeypatch.setattr(attention, "torch", None)
  monkeypatch.setattr(sys, "argv", ["bench/attention.py", "--out", str(tmp_path)] + argv)
  attention.main()
  capsys.readouterr()
  (path,) = tmp_path.glob("attention_*.json")
  out = json.loads(path.read_text())
  assert path.name == "attention_cpu.json" and out["device"] == "cpu"
  assert [s["shape"] for s in out["shapes"]] == shapes
  assert all(s["reps"] == reps and s["on_gpu"] is False for s in out["shapes"])
  if "--quick" in argv:
    assert [s["causal"] for s in out["shapes"]] == [False, True]


@pytest.mark.parametrize("bad", ["4", "-1", "0,x"])
def test_main_rejects_bad_shape_indices(monkeypatch, tmp_path, capsys, bad):
  monkeypatch.setattr(attention, "bench_shape", _fake_shape_result)
  monkeypatch.setattr(sys, "argv", ["bench/attention.py", "--out", str(tmp_path), "--shapes", bad])
  with pytest.raises(SystemExit):
    attention.main()
  assert "--shapes" in capsys.readouterr().err


def test_module_no_slower_than_its_projections_gives_no_attention_part_rate(monkeypatch):
  # ours_module - projections <= 0 (timing noise on tiny shapes) divided by zero or reported a negative rate
  res, _, _ = _run_bench_shape(monkeypatch, dict(_MED, ours_module=_MED["projections"]))
  part = res["results"]["ours_module_attention_part"]
  assert part["ms"] == 0.0 and "tflops" not in part
  assert res["ratios"]["ours_module_attention_part/cudnn"] is None
