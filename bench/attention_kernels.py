r"""Which fused attention kernel is fastest on this GPU: cuDNN vs JAX's Pallas kernels vs torch SDPA.

A probe for the attention target of issue 3 (our function >= 1.05x torch SDPA
at (8, 2048, 16, 64), where cuDNN through JAX gives 0.95x): forward+backward of
non-causal bf16 attention at one shape, timed like ``bench/attention.py``
(same timer and FLOP convention), for

* ``cudnn``: ``jax.nn.dot_product_attention(..., implementation='cudnn')``;
* ``pallas_mgpu_q{bq}_kv{bkv}``: ``jax.experimental.pallas.ops.gpu.attention_mgpu``
  (the Mosaic GPU warp-specialised Hopper kernel) with several block configs,
  queries pre-scaled by 1/sqrt(head_dim) (the kernel applies no scale);
* ``pallas_triton``: ``jax.experimental.pallas.ops.gpu.attention.mha``;
* ``torch_sdpa*``: PyTorch's SDPA, its own choice and each backend forced.

Each JAX row also records the relative error of its output against the cuDNN
one. Writes ``attention_kernels_<device>.json`` into ``--out``.

  python3 bench/attention_kernels.py --out bench/results --shape 8,2048,16,64
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import attention as common  # noqa: E402  (bench/attention.py: timer, FLOPs, torch import)
from bench.results_io import save_result  # noqa: E402  (JSON summary + .curves.npz for long tables)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--shape", default="8,2048,16,64", help="batch,length,heads,head_dim")
  ap.add_argument("--reps", type=int, default=7)
  args = ap.parse_args()
  b, length, h, d = (int(x) for x in args.shape.split(","))
  flops = common.attention_flops(b, length, h, d, False)
  ks = jax.random.split(jax.random.key(0), 4)
  q, k, v, do = (jax.random.normal(kk, (b, length, h, d), jnp.bfloat16) for kk in ks)
  scale = 1.0 / d**0.5
  rows, outputs = {}, {}

  def record(name, fn, sync, fwd=None):
    try:
      med, lo, hi, inner = common.time_calls(fn, sync, args.reps)
      rows[name] = dict(ms=med * 1e3, ms_min=lo * 1e3, ms_max=hi * 1e3, inner=inner,
                        tflops=flops / med / 1e12)
      if fwd is not None:
        outputs[name] = np.asarray(jax.jit(fwd)(q, k, v).astype(jnp.float32))
    except Exception as e:  # pylint: disable=broad-except
      rows[name] = dict(error=f"{type(e).__name__}: {str(e)[:400]}")
    shown = rows[name].get("tflops")
    print(f"  {name:28s} " + (f"{shown:8.1f} TFLOP/s  {rows[name]['ms']:.3f} ms" if shown
                              else rows[name]["error"]), flush=True)

  def add(name, f, inputs=(q, k, v, do)):
    g = common.jax_fwd_bwd(f)
    # Output errors are taken against the bf16 cuDNN output, so only for rows on (q, k, v).
    record(name, lambda: g(*inputs), common.jax_sync, fwd=f if inputs[0] is q else None)

  def cudnn(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, implementation="cudnn")

  add("cudnn", cudnn)
  # The Mosaic kernel's shared-memory scratch is float16 in some JAX versions (bf16 then fails
  # with a dtype mismatch): it is also timed in float16, beside cuDNN in float16.
  half = tuple(a.astype(jnp.float16) for a in (q, k, v, do))
  add("cudnn_fp16", cudnn, half)
  try:
    from jax.experimental.pallas.ops.gpu import attention_mgpu as mgpu  # pylint: disable=g-import-not-at-top
    for tag, inputs, blocks in (("", (q, k, v, do), ((64, 64), (64, 128), (128, 64), (128, 128))),
                                ("fp16_", half, ((64, 128), (128, 128)))):
      for bq, bkv in blocks:
        cfg = mgpu.TuningConfig(block_q=bq, block_kv=bkv, max_concurrent_steps=2,
                                block_q_dkv=bq, block_kv_dkv=bkv, block_q_dq=bq, block_kv_dq=bkv)
        add(f"pallas_mgpu_{tag}q{bq}_kv{bkv}",
            lambda q, k, v, cfg=cfg: mgpu.attention((q * scale).astype(q.dtype), k, v, cfg), inputs)
  except ImportError as e:
    rows["pallas_mgpu"] = dict(error=f"ImportError: {e}")
  try:
    from jax.experimental.pallas.ops.gpu import attention as triton_attn  # pylint: disable=g-import-not-at-top
    add("pallas_triton", lambda q, k, v: triton_attn.mha(q, k, v, None, sm_scale=scale))
  except ImportError as e:
    rows["pallas_triton"] = dict(error=f"ImportError: {e}")

  ref = outputs.get("cudnn")
  errors = {n: float(np.linalg.norm(o - ref) / np.linalg.norm(ref)) for n, o in outputs.items()
            if ref is not None}
  torch = common.torch
  if torch is not None and torch.cuda.is_available():
    F = torch.nn.functional
    tq, tk, tv, tdo = (torch.from_numpy(np.array(a.astype(jnp.float32))).to("cuda", torch.bfloat16)
                       for a in (q, k, v, do))
    tq, tk, tv = (t.requires_grad_() for t in (tq, tk, tv))

    def torch_step():
      out = F.scaled_dot_product_attention(tq.transpose(1, 2), tk.transpose(1, 2), tv.transpose(1, 2))
      return torch.autograd.grad(out, (tq, tk, tv), tdo.transpose(1, 2))

    record("torch_sdpa", torch_step, common.torch_sync)
    from torch.nn.attention import SDPBackend, sdpa_kernel  # pylint: disable=g-import-not-at-top
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
      def forced(backend=backend):
        with sdpa_kernel(backend):
          return torch_step()
      record(f"torch_sdpa_{name}", forced, common.torch_sync)
  device = jax.devices()[0].device_kind
  best_torch = max([r.get("tflops") or 0.0 for n, r in rows.items() if n.startswith("torch")], default=0.0)
  report = {"device": device, "jax": jax.__version__, "shape": [b, length, h, d], "causal": False,
            "command": "python3 bench/attention_kernels.py " + " ".join(sys.argv[1:]),
            "rows": rows, "rel_err_vs_cudnn": errors,
            "ratio_to_best_torch": {n: r["tflops"] / best_torch for n, r in rows.items()
                                    if r.get("tflops") and best_torch}}
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"attention_kernels_{re.sub(r'[^A-Za-z0-9._-]+', '-', device)}.json"
  save_result(path, report, indent=1)
  print(json.dumps(report["ratio_to_best_torch"], indent=1), "\nwrote", path)


if __name__ == "__main__":
  main()
