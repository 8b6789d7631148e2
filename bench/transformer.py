r"""Transformer-base training throughput: ours (JAX, bf16, jit) vs a PyTorch equivalent.

One process, one GPU, the same sizes and the same batch of random tokens for
both (paper's base model: d_model 512, 8 heads, d_ff 2048, 6 + 6 layers,
residual dropout 0.1, shared 37,000-token vocabulary with tied embeddings
scaled by sqrt(d_model), sinusoidal positions, post-LN, label smoothing 0.1,
Adam(0.9, 0.98, 1e-9)):

* ``ours``: :class:`aila_jax.models.transformer.EncoderDecoder` with
  ``dtype=bfloat16`` (float32 parameters), one ``jax.jit`` train step (forward,
  backward, optax Adam update), buffers donated;
* ``torch_eager``: ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer``
  (``batch_first=True``, post-LN), tied ``nn.Embedding`` and output projection,
  ``torch.autocast(bfloat16)``, ``torch.optim.Adam(fused=True)``. Attention and
  ReLU dropout are switched off so that, like ours and the paper, only the
  residual/embedding dropout is on;
* ``torch_compile``: the same under ``torch.compile`` (skipped with
  ``--no-compile`` or when it fails).

Both receive ``inputs``/``targets`` ``int32[B, L]`` without padding (key
padding masks are still built and applied, as in real training). Throughput =
``B * (L_src + L_tgt)`` tokens per second (source + target), over timed steps
after warm-up, synchronised. The ratio ``ours / torch`` is reported for each
torch variant.

  python3 bench/transformer.py --out bench/results          # on the GPU
  python3 bench/transformer.py --quick --no-compile          # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import re
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")  # room for torch
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from aila_jax.models.transformer import EncoderDecoder  # noqa: E402
from bench.results_io import save_result  # noqa: E402  (JSON summary + .curves.npz for long tables)

try:
  import torch  # noqa: E402
  from torch import nn as tnn  # noqa: E402
except ImportError:
  torch = None

BASE = dict(d_model=512, num_heads=8, d_ff=2048, layers=6, dropout=0.1)
QUICK = dict(d_model=64, num_heads=4, d_ff=128, layers=2, dropout=0.1)


def ours_step_fn(sizes, vocab, max_len, lr=1e-4):
  model = EncoderDecoder(vocab_size=vocab, max_len=max_len, preset="transformer_base",
                         d_model=sizes["d_model"], num_heads=sizes["num_heads"], d_ff=sizes["d_ff"],
                         num_encoder_layers=sizes["layers"], num_decoder_layers=sizes["layers"],
                         dropout_rate=sizes["dropout"], dtype=jnp.bfloat16)
  tx = optax.adam(lr, b1=0.9, b2=0.98, eps=1e-9)

  def loss_fn(params, x, y, rng):
    logits, _ = model.apply({"params": params}, x, y, train=True, rngs={"dropout": rng})
    # Label smoothing 0.1 without a one-hot tensor: (1 - e) * nll + e * mean_k(-log p_k).
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, y[..., None], -1)[..., 0]
    ce = 0.9 * nll - 0.1 * logp.mean(-1)
    w = (y > 0).astype(jnp.float32)
    return (ce * w).sum() / w.sum()

  def step(params, opt_state, x, y, rng):
    rng, sub = jax.random.split(rng)
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y, sub)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, rng

  def init(x, y):
    params = jax.jit(model.init)(jax.random.key(0), x, y)["params"]
    return params, tx.init(params)

  return jax.jit(step, donate_argnums=(0, 1)), init


def bench_ours(sizes, vocab, x_np, y_np, warmup, steps):
  max_len = max(x_np.shape[1], y_np.shape[1])
  step, init = ours_step_fn(sizes, vocab, max_len)
  x, y = jnp.asarray(x_np), jnp.asarray(y_np)
  t_init = time.perf_counter()
  params, opt_state = init(x, y)
  n_params = int(sum(p.size for p in jax.tree_util.tree_leaves(params)))
  print(f"ours: {n_params:,} parameters initialised in {time.perf_counter() - t_init:.1f} s; "
        "compiling the train step", flush=True)
  rng = jax.random.key(1)
  t0 = time.perf_counter()
  params, opt_state, loss, rng = step(params, opt_state, x, y, rng)
  loss.block_until_ready()
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    params, opt_state, loss, rng = step(params, opt_state, x, y, rng)
  loss.block_until_ready()
  t0 = time.perf_counter()
  for _ in range(steps):
    params, opt_state, loss, rng = step(params, opt_state, x, y, rng)
  loss.block_until_ready()
  dt = (time.perf_counter() - t0) / steps
  return dict(step_s=dt, compile_s=compile_s, loss=float(loss), params=n_params)


# --- PyTorch equivalent -------------------------------------------------------------------------

def torch_model(sizes, vocab, max_len):
  d, p = sizes["d_model"], sizes["dropout"]

  class Seq2Seq(tnn.Module):

    def __init__(self):
      super().__init__()
      self.embed = tnn.Embedding(vocab, d)
      tnn.init.normal_(self.embed.weight, std=d**-0.5)
      enc = [tnn.TransformerEncoderLayer(d, sizes["num_heads"], sizes["d_ff"], p, batch_first=True)
             for _ in range(sizes["layers"])]
      dec = [tnn.TransformerDecoderLayer(d, sizes["num_heads"], sizes["d_ff"], p, batch_first=True)
             for _ in range(sizes["layers"])]
      for layer in enc + dec:  # residual dropout only, as in the paper (and ours)
        layer.dropout = tnn.Dropout(0.0)  # after the FFN's ReLU
        layer.self_attn.dropout = 0.0
        if hasattr(layer, "multihead_attn"):
          layer.multihead_attn.dropout = 0.0
      self.enc, self.dec = tnn.ModuleList(enc), tnn.ModuleList(dec)
      self.drop = tnn.Dropout(p)
      pos = torch.arange(max_len)[:, None]
      div = torch.pow(10000.0, torch.arange(0, d, 2) / d)
      pe = torch.zeros(max_len, d)
      pe[:, 0::2], pe[:, 1::2] = torch.sin(pos / div), torch.cos(pos / div)
      self.register_buffer("pe", pe)
      self.scale = math.sqrt(d)

    def forward(self, x, y_in):
      src_pad = x == 0
      h = self.drop(self.embed(x) * self.scale + self.pe[:x.shape[1]])
      for layer in self.enc:
        h = layer(h, src_key_padding_mask=src_pad)
      t = y_in.shape[1]
      causal = torch.triu(torch.full((t, t), float("-inf"), device=x.device), diagonal=1)
      g = self.drop(self.embed(y_in) * self.scale + self.pe[:t])
      for layer in self.dec:
        g = layer(g, h, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=src_pad)
      return g @ self.embed.weight.t()  # tied output projection

  return Seq2Seq()


def bench_torch(sizes, vocab, x_np, y_np, warmup, steps, compile_model):
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  max_len = max(x_np.shape[1], y_np.shape[1])
  model = torch_model(sizes, vocab, max_len).to(device)
  n_params = sum(p.numel() for p in model.parameters())
  opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9,
                         fused=device == "cuda")
  x = torch.as_tensor(x_np, dtype=torch.long, device=device)
  y = torch.as_tensor(y_np, dtype=torch.long, device=device)
  y_in = torch.cat([torch.ones_like(y[:, :1]), y[:, :-1]], 1)
  loss_fn = tnn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=0)
  fwd = torch.compile(model) if compile_model else model

  def step():
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
      logits = fwd(x, y_in)
      loss = loss_fn(logits.float().reshape(-1, vocab), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  t0 = time.perf_counter()
  loss = step()
  sync()
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    loss = step()
  sync()
  t0 = time.perf_counter()
  for _ in range(steps):
    loss = step()
  sync()
  dt = (time.perf_counter() - t0) / steps
  return dict(step_s=dt, compile_s=compile_s, loss=loss.item(), params=int(n_params))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="bench/results")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--vocab", type=int, default=37000)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
  parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
  args = parser.parse_args()
  sizes = QUICK if args.quick else BASE
  if args.quick:
    args.batch, args.length, args.vocab, args.warmup, args.steps = 4, 16, 64, 1, 2
  rng = np.random.default_rng(0)
  # Random tokens without padding, ids in [3, vocab); targets end with EOS (2).
  x = rng.integers(3, args.vocab, (args.batch, args.length)).astype(np.int32)
  y = rng.integers(3, args.vocab, (args.batch, args.length)).astype(np.int32)
  y[:, -1] = 2
  tokens = args.batch * 2 * args.length

  if torch is not None and torch.cuda.is_available():
    device = torch.cuda.get_device_name()
  else:
    device = str(jax.devices()[0].device_kind)
  info = dict(benchmark="transformer_base_train_tokens_per_s", device=device,
              jax=jax.__version__, torch=getattr(torch, "__version__", None),
              python=platform.python_version(), sizes=sizes, vocab=args.vocab, batch=args.batch,
              src_len=args.length, tgt_len=args.length, tokens_per_step=tokens,
              warmup=args.warmup, timed_steps=args.steps, seed=0, dtype="bfloat16 compute, float32 params",
              results={})
  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", device).strip("-")
  path = out_dir / f"transformer_{slug}.json"

  def record(name, r):
    r["tokens_per_s"] = tokens / r["step_s"]
    info["results"][name] = r
    print(f"{name:14s} {r['tokens_per_s']:12,.0f} tokens/s  step {1e3 * r['step_s']:8.2f} ms  "
          f"first step {r['compile_s']:6.1f} s  loss {r['loss']:.3f}  params {r['params']:,}",
          flush=True)
    save_result(path, info, indent=1)  # partial results survive a timeout

  record("ours", bench_ours(sizes, args.vocab, x, y, args.warmup, args.steps))
  if torch is not None:
    record("torch_eager", bench_torch(sizes, args.vocab, x, y, args.warmup, args.steps, False))
    if not args.no_compile:
      try:
        record("torch_compile", bench_torch(sizes, args.vocab, x, y, args.warmup, args.steps, True))
      except Exception as e:  # pylint: disable=broad-except
        info["results"]["torch_compile"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    ours = info["results"]["ours"]["tokens_per_s"]
    info["ratios"] = {f"ours/{k}": ours / v["tokens_per_s"] for k, v in info["results"].items()
                      if k != "ours" and "tokens_per_s" in v}
    print(json.dumps(info["ratios"], indent=1), flush=True)
  save_result(path, info, indent=1)
  print(f"wrote {path}", flush=True)


if __name__ == "__main__":
  main()
