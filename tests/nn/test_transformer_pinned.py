"""Pinned maths of aila_jax.nn.transformer against hand-written references."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.models.transformer import EncoderDecoder
from aila_jax.nn import transformer as tfm


def _cfg(**kw):
  base = dict(vocab_size=13, max_len=16, d_model=32, num_heads=4, d_ff=48,
              num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0)
  return tfm.TransformerConfig(**{**base, **kw})


def _paper_pe(pos, d):
  """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same), by hand."""
  out = np.zeros(d)
  for j in range(d):
    angle = pos / 10000.0**((j - j % 2) / d)
    out[j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
  return out


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_decode_positions_continue_across_chunks_of_any_length(kind):
  # Prefill 2 positions, then 3, then 1: each call must add rows [i, i + length).
  d, max_len = 6, 8
  mod = tfm.AddPositions(max_len=max_len, kind=kind, decode=True)
  variables = mod.init(jax.random.key(0), jnp.zeros((1, max_len, d)))
  if kind == "learned":
    table = np.asarray(variables["params"]["pos_embedding"], np.float64)
  else:
    table = np.stack([_paper_pe(p, d) for p in range(max_len)])
  start = 0
  for length in (2, 3, 1):
    out, new = mod.apply(variables, jnp.zeros((1, length, d)), mutable=["cache"])
    variables = {**variables, **new}
    np.testing.assert_allclose(out[0], table[start:start + length], atol=1e-6)
    start += length
  assert int(variables["cache"]["position_index"]) == 6


@pytest.mark.parametrize("pre_ln", [False, True])
def test_residual_dropout_never_touches_the_skip_path(pre_ln):
  # With both sub-layers' output projections zeroed, Sublayer(.) == 0, so in training with
  # heavy residual dropout the layer is the identity (pre-LN) or LN(LN(x)) (post-LN):
  # dropout acts on the sub-layer output only (paper, section 5.4).
  cfg = _cfg(pre_ln=pre_ln, dropout_rate=0.5)
  layer = tfm.EncoderLayer(cfg)
  x = 2.0 * jax.random.normal(jax.random.key(1), (2, 5, 32)) + 0.5
  p = layer.init(jax.random.key(0), x, None)["params"]
  zero = lambda t: jax.tree_util.tree_map(jnp.zeros_like, t)
  p = {**p, "self_attention": {**p["self_attention"], "out": zero(p["self_attention"]["out"])},
       "ffn": {**p["ffn"], "wo": zero(p["ffn"]["wo"])}}
  y, _ = layer.apply({"params": p}, x, None, train=True, rngs={"dropout": jax.random.key(3)})
  xn = np.asarray(x, np.float64)
  if pre_ln:
    want = xn
  else:
    ln = lambda a: (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-6)
    want = ln(ln(xn))
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_pre_ln_decoder_applies_a_final_layer_norm_before_the_tied_projection():
  # Final LayerNorm with scale 0 and bias b makes every logit row b @ E^T, whatever the input.
  model = EncoderDecoder(vocab_size=11, max_len=8, preset="transformer_tiny", pre_ln=True, num_encoder_layers=1,
                         num_decoder_layers=1,
                         dropout_rate=0.0)
  x = jnp.array([[5, 6, 7, 2, 0], [8, 2, 0, 0, 0]], jnp.int32)
  y = jnp.array([[7, 6, 5, 2, 0, 0], [8, 2, 0, 0, 0, 0]], jnp.int32)
  params = jax.jit(model.init)(jax.random.key(0), x, y)["params"]
  assert "final_norm" in params["decoder"]
  bvec = jax.random.normal(jax.random.key(1), (64,))
  dec = dict(params["decoder"])
  dec["final_norm"] = {"scale": jnp.zeros(64), "bias": bvec}
  logits, _ = jax.jit(model.apply)({"params": {**params, "decoder": dec}}, x, y)
  emb = np.asarray(params["embedding"]["embedding"], np.float64)
  want = np.asarray(bvec, np.float64) @ emb.T
  np.testing.assert_allclose(logits, np.broadcast_to(want, logits.shape), rtol=1e-5, atol=1e-5)


def test_feed_forward_kernels_are_xavier_uniform():
  # Glorot & Bengio: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), std a / sqrt(3).
  cfg = _cfg(d_model=64, d_ff=256)
  p = tfm.FeedForward(cfg).init(jax.random.key(0), jnp.zeros((1, 1, 64)))["params"]
  for name, (fi, fo) in (("wi", (64, 256)), ("wo", (256, 64))):
    w = np.asarray(p[name]["kernel"], np.float64)
    assert w.shape == (fi, fo)
    a = np.sqrt(6.0 / (fi + fo))
    assert np.abs(w).max() <= a
    np.testing.assert_allclose(w.std(), a / np.sqrt(3.0), rtol=0.05)
    np.testing.assert_array_equal(p[name]["bias"], 0.0)
