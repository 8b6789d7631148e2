r"""Forward+backward attention throughput: ours vs cuDNN vs torch SDPA vs flax.

Measures, in one process on one GPU, bf16, for each shape (batch, length,
heads, head_dim) [causal]:

* ``ours_core``: ``aila_jax.attention.dot_product_attention`` (auto dispatch;
  the JSON records which path it took) on ``[B, L, H, D]`` q, k, v;
* ``ours_core_xla``: the same forced onto our einsum path;
* ``cudnn``: ``jax.nn.dot_product_attention(..., implementation='cudnn')`` on
  the same inputs (the kernel alone);
* ``jax_nn_xla``: ``jax.nn.dot_product_attention`` default (XLA) path;
* ``torch_sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` with
  PyTorch's own backend choice, and each backend forced (``torch_sdpa_flash``,
  ``torch_sdpa_cudnn``, ``torch_sdpa_efficient``);
* ``ours_module``: ``aila_jax.nn.MultiHeadAttention`` (q/k/v/out projections +
  our function) on ``x [B, L, H*D]``, bf16 params;
* ``flax_module``: ``flax.linen.MultiHeadDotProductAttention``, same sizes
  (causal through ``nn.make_causal_mask``, as its users do);
* ``projections``: the four projections of the module alone, so that the
  module's attention core can be compared with the kernel alone.

FLOP convention: attention forward = 4·B·H·Lq·Lk·D (halved when causal),
forward+backward = 2.5× forward; projections forward = 2·B·L·F·F each of four,
forward+backward = 3× forward. Time = median over repetitions of the mean of a
loop of calls, after warm-up, synchronised (``block_until_ready`` /
``torch.cuda.synchronize``).

Run on a GPU machine from the repository root::

  python3 bench/attention.py --out bench/results

It prints a table and writes ``attention_<device>.json`` into ``--out``.
``--quick`` runs tiny shapes (a smoke test that also runs on CPU); ``--smoke`` one tiny
shape with one repetition (the CPU check of ``python -m bench.run``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import re
import statistics
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")  # room for torch
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import flax  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from aila_jax.attention import dot_product as dpa  # noqa: E402
from aila_jax.nn.attention import MultiHeadAttention  # noqa: E402
from bench.results_io import save_result  # noqa: E402  (JSON summary + .curves.npz for long tables)

try:
  import torch  # noqa: E402
  import torch.nn.functional as F  # noqa: E402
except ImportError:  # The CPU smoke test runs without torch.
  torch = None

SHAPES = [
    (8, 2048, 16, 64, False),
    (8, 2048, 16, 64, True),
    (4, 4096, 16, 128, False),
    (64, 256, 8, 64, False),
]
QUICK_SHAPES = [(2, 64, 2, 16, False), (2, 64, 2, 16, True)]
SMOKE_SHAPES = [(1, 16, 2, 8, False)]


def _version(module_name):
  try:
    return __import__(module_name).__version__
  except Exception:  # pylint: disable=broad-except
    return None


def attention_flops(b, length, h, d, causal):
  fwd = 4 * b * h * length * length * d / (2 if causal else 1)
  return 2.5 * fwd


def projection_flops(b, length, h, d):
  f = h * d
  return 3 * 4 * 2 * b * length * f * f


def time_calls(fn, sync, reps, target_s=0.05, warmup=3):
  """Median seconds per call of ``fn`` (mean of an inner loop), and spread."""
  for _ in range(warmup):
    sync(fn())
  t0 = time.perf_counter()
  sync(fn())
  one = max(time.perf_counter() - t0, 1e-6)
  inner = max(1, min(200, int(target_s / one)))
  per_call = []
  for _ in range(reps):
    t0 = time.perf_counter()
    for _ in range(inner):
      res = fn()
    sync(res)
    per_call.append((time.perf_counter() - t0) / inner)
  return statistics.median(per_call), min(per_call), max(per_call), inner


def jax_sync(x):
  jax.block_until_ready(x)


def torch_sync(_):
  torch.cuda.synchronize()


def jax_fwd_bwd(f):
  """jit(q, k, v, do -> (dq, dk, dv)), forward included."""
  def run(q, k, v, do):
    _, vjp = jax.vjp(f, q, k, v)
    return vjp(do)
  return jax.jit(run)


def module_fwd_bwd(apply):
  def run(params, x, dy):
    _, vjp = jax.vjp(apply, params, x)
    return vjp(dy)
  return jax.jit(run)


def projections_only(params, x, h, d):
  """The module's four projections with no attention between them."""
  p = params["params"]
  dense = lambda n: jnp.einsum("blf,fhd->blhd", x, p[n]["kernel"]) + p[n][
      "bias"]
  mixed = dense("query") + dense("key") + dense("value")  # (B, L, H, D)
  return jnp.einsum("blhd,hdf->blf", mixed, p["out"]["kernel"]) + p["out"][
      "bias"]


def bench_shape(b, length, h, d, causal, reps, on_gpu):
  """All variants at one shape; returns a dict of results."""
  res = {"shape": [b, length, h, d], "causal": causal}
  flops = attention_flops(b, length, h, d, causal)
  pflops = projection_flops(b, length, h, d)
  res["attention_flops_fwd_bwd"] = flops
  res["projection_flops_fwd_bwd"] = pflops
  dtype = jnp.bfloat16
  ks = jax.random.split(jax.random.key(0), 6)
  q, k, v, do = (jax.random.normal(kk, (b, length, h, d), dtype)
                 for kk in ks[:4])
  times = {}

  def record(name, fn, sync, n_flops):
    try:
      med, lo, hi, inner = time_calls(fn, sync, reps)
      times[name] = dict(ms=med * 1e3, ms_min=lo * 1e3, ms_max=hi * 1e3,
                         inner=inner, tflops=n_flops / med / 1e12)
    except Exception as e:  # pylint: disable=broad-except
      times[name] = dict(error=f"{type(e).__name__}: {str(e)[:300]}")
    shown = times[name].get("tflops")
    print(f"  {name:22s} " + (f"{shown:8.1f} TFLOP/s  {times[name]['ms']:.3f} ms"
                              if shown is not None else times[name]["error"]),
          flush=True)

  ours = lambda impl: (lambda q, k, v: dpa.dot_product_attention(
      q, k, v, is_causal=causal, implementation=impl))
  f = jax_fwd_bwd(ours(None))
  hlo = f.lower(q, k, v, do).as_text()
  res["ours_dispatch"] = "cudnn" if "cudnn" in hlo else "xla"
  record("ours_core", lambda: f(q, k, v, do), jax_sync, flops)
  f_xla = jax_fwd_bwd(ours("xla"))
  record("ours_core_xla", lambda: f_xla(q, k, v, do), jax_sync, flops)
  if on_gpu:
    f_cudnn = jax_fwd_bwd(lambda q, k, v: jax.nn.dot_product_attention(
        q, k, v, is_causal=causal, implementation="cudnn"))
    record("cudnn", lambda: f_cudnn(q, k, v, do), jax_sync, flops)
  f_jnn = jax_fwd_bwd(lambda q, k, v: jax.nn.dot_product_attention(
      q, k, v, is_causal=causal))
  record("jax_nn_xla", lambda: f_jnn(q, k, v, do), jax_sync, flops)

  # Agreement of our (dispatched) output with our einsum path.
  o1 = jax.jit(ours(None))(q, k, v).astype(jnp.float32)
  o2 = jax.jit(ours("xla"))(q, k, v).astype(jnp.float32)
  res["rel_err_ours_vs_xla"] = float(jnp.linalg.norm(o1 - o2) /
                                     jnp.linalg.norm(o2))
  del f, f_xla, f_jnn

  # Modules on x [B, L, F].
  feat = h * d
  x = jax.random.normal(ks[4], (b, length, feat), dtype)
  dy = jax.random.normal(ks[5], (b, length, feat), dtype)
  ours_mod = MultiHeadAttention(num_heads=h, dtype=dtype, param_dtype=dtype)
  params = jax.jit(ours_mod.init)(jax.random.key(1), x)  # one compile, not one per op
  m_ours = module_fwd_bwd(lambda p, x: ours_mod.apply(p, x, is_causal=causal))
  record("ours_module", lambda: m_ours(params, x, dy), jax_sync, flops + pflops)
  stock = nn.MultiHeadDotProductAttention(num_heads=h, dtype=dtype,
                                          param_dtype=dtype)
  # Causal masking the way the stock module's users write it.
  stock_mask = lambda x: nn.make_causal_mask(x[..., 0]) if causal else None
  m_stock = module_fwd_bwd(
      lambda p, x: stock.apply(p, x, mask=stock_mask(x), deterministic=True))
  record("flax_module", lambda: m_stock(params, x, dy), jax_sync,
         flops + pflops)
  m_proj = module_fwd_bwd(lambda p, x: projections_only(p, x, h, d))
  record("projections", lambda: m_proj(params, x, dy), jax_sync, pflops)
  if "ms" in times.get("ours_module", {}) and "ms" in times.get(
      "projections", {}):
    core_ms = times["ours_module"]["ms"] - times["projections"]["ms"]
    if core_ms > 0:  # timing noise can make it <= 0 on tiny shapes: no rate then (it divided by zero)
      times["ours_module_attention_part"] = dict(
          ms=core_ms, tflops=flops / (core_ms * 1e-3) / 1e12,
          note="ours_module minus projections")
    else:
      times["ours_module_attention_part"] = dict(
          ms=core_ms, note="ours_module minus projections: not positive, no rate")
  del m_ours, m_stock, m_proj, params, x, dy

  if torch is not None and on_gpu:
    tq, tk, tv, tdo = (torch.from_numpy(np.array(a.astype(jnp.float32)))
                       .to("cuda", torch.bfloat16) for a in (q, k, v, do))
    tq, tk, tv = (t.requires_grad_() for t in (tq, tk, tv))
    tdo_t = tdo.transpose(1, 2)

    def torch_step():
      # [B, L, H, D] storage viewed as [B, H, L, D], torch's SDPA layout.
      out = F.scaled_dot_product_attention(
          tq.transpose(1, 2), tk.transpose(1, 2), tv.transpose(1, 2),
          is_causal=causal)
      return torch.autograd.grad(out, (tq, tk, tv), tdo_t)

    record("torch_sdpa", torch_step, torch_sync, flops)
    from torch.nn.attention import SDPBackend, sdpa_kernel  # pylint: disable=g-import-not-at-top
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
      def forced(backend=backend):
        with sdpa_kernel(backend):
          return torch_step()
      record(f"torch_sdpa_{name}", forced, torch_sync, flops)
    with torch.no_grad():
      t_out = F.scaled_dot_product_attention(
          tq.transpose(1, 2), tk.transpose(1, 2), tv.transpose(1, 2),
          is_causal=causal).transpose(1, 2).float().cpu().numpy()
    o1 = np.asarray(o1)
    res["rel_err_ours_vs_torch"] = float(np.linalg.norm(o1 - t_out) /
                                         np.linalg.norm(t_out))
    del tq, tk, tv, tdo, tdo_t
    torch.cuda.empty_cache()

  res["results"] = times
  tf = lambda n: times.get(n, {}).get("tflops")
  ratio = lambda a, b: (tf(a) / tf(b)) if tf(a) and tf(b) else None
  torch_names = [n for n in times if n.startswith("torch_sdpa") and tf(n)]
  best_torch = max(torch_names, key=tf) if torch_names else None
  res["best_torch_backend"] = best_torch
  res["ratios"] = {
      "ours_core/cudnn": ratio("ours_core", "cudnn"),
      "ours_core/torch_sdpa": ratio("ours_core", "torch_sdpa"),
      "ours_core/best_torch_sdpa": (ratio("ours_core", best_torch)
                                    if best_torch else None),
      "ours_module_attention_part/cudnn": ratio("ours_module_attention_part",
                                                "cudnn"),
      "ours_module/flax_module": ratio("ours_module", "flax_module"),
      "ours_core/ours_core_xla": ratio("ours_core", "ours_core_xla"),
  }
  return res


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="bench/results")
  parser.add_argument("--reps", type=int, default=7)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--smoke", action="store_true", help="one tiny shape, one repetition (CPU check)")
  parser.add_argument("--shapes", default=None,
                      help="comma-separated indices into the full shape list (e.g. '0,1'; bench.run's quick suite)")
  args = parser.parse_args()
  if args.smoke:
    args.reps = 1

  on_gpu = jax.default_backend() == "gpu"
  if torch is not None and torch.cuda.is_available():
    device = torch.cuda.get_device_name()
  else:
    device = str(jax.devices()[0].device_kind)
  info = {
      "device": device,
      "jax_device": str(jax.devices()[0]),
      "versions": {
          "python": platform.python_version(),
          "jax": jax.__version__,
          "jaxlib": _version("jaxlib"),
          "flax": flax.__version__,
          "torch": None if torch is None else torch.__version__,
          "cuda_torch": None if torch is None else torch.version.cuda,
          "cudnn_torch": (None if torch is None
                          else torch.backends.cudnn.version()),
      },
      "dtype": "bfloat16",
      "flop_convention": (
          "attention fwd = 4*B*H*Lq*Lk*D (halved if causal); fwd+bwd = 2.5x "
          "fwd. projections fwd = 4 * 2*B*L*F*F (F = H*D); fwd+bwd = 3x fwd. "
          "Module TFLOP/s count attention + projection FLOPs."),
      "timing": (
          "median over --reps repetitions of the mean time of an inner loop "
          "(~50 ms) of jitted forward+backward calls, after 3 warm-up calls; "
          "synchronised with block_until_ready / torch.cuda.synchronize. "
          "Backward = vjp of q,k,v (core) or params,x (modules) with a random "
          "cotangent."),
      "ours_module": ("aila_jax.nn.MultiHeadAttention (q/k/v/out DenseGeneral "
                      "+ aila_jax.attention.dot_product_attention), bf16 "
                      "params; ours_core is the function alone on the same "
                      "q, k, v as cudnn"),
      "command": "python3 bench/attention.py " + " ".join(sys.argv[1:]),
  }
  try:
    from jax._src.cudnn.fused_attention_stablehlo import check_cudnn_version  # pylint: disable=g-import-not-at-top
    info["versions"]["cudnn_jax"] = check_cudnn_version() if on_gpu else None
  except Exception:  # pylint: disable=broad-except
    info["versions"]["cudnn_jax"] = None
  print(json.dumps(info, indent=1), flush=True)

  shapes = SMOKE_SHAPES if args.smoke else QUICK_SHAPES if args.quick else SHAPES
  if args.shapes is not None:
    try:
      picked = [int(i) for i in args.shapes.split(",")]
    except ValueError:
      parser.error(f"--shapes: expected comma-separated integers, got {args.shapes!r}")
    bad = [i for i in picked if not 0 <= i < len(SHAPES)]
    if bad or args.smoke or args.quick:
      parser.error(f"--shapes: indices into the {len(SHAPES)} full shapes (0..{len(SHAPES) - 1}), without "
                   f"--quick/--smoke; got {args.shapes!r}")
    shapes = [SHAPES[i] for i in picked]
  info["shapes"] = []
  slug = re.sub(r"[^A-Za-z0-9._-]+", "-", device).strip("-")
  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f"attention_{slug}.json"
  for b, length, h, d, causal in shapes:
    print(f"shape B={b} L={length} H={h} D={d} causal={causal}", flush=True)
    info["shapes"].append(bench_shape(b, length, h, d, causal, args.reps,
                                      on_gpu))
    save_result(path, info, indent=1)  # Partial results survive.

  print("\nshape                 causal  ours  cudnn  torch  xla   "
        "ours_mod flax_mod | ours/cudnn ours/torch mod/flax")
  fmt = lambda x: f"{x:6.1f}" if x is not None else "   -  "
  fmtr = lambda x: f"{x:6.3f}" if x is not None else "   -  "
  for r in info["shapes"]:
    t = lambda n: r["results"].get(n, {}).get("tflops")
    rr = r["ratios"]
    print(f"{str(tuple(r['shape'])):22s}{str(r['causal']):6s}"
          f"{fmt(t('ours_core'))} {fmt(t('cudnn'))} {fmt(t('torch_sdpa'))} "
          f"{fmt(t('ours_core_xla'))} {fmt(t('ours_module'))} "
          f"{fmt(t('flax_module'))} | {fmtr(rr['ours_core/cudnn'])} "
          f"{fmtr(rr['ours_core/torch_sdpa'])} "
          f"{fmtr(rr['ours_module/flax_module'])}")
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
