"""Tests for aila_jax.nn.transformer and the KV cache of MultiHeadAttention."""

import chex
import flax.linen as nn
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.nn import transformer as tfm
from aila_jax.nn.attention import MultiHeadAttention


def _x(seed, shape):
  return jax.random.normal(jax.random.key(seed), shape)


def _cfg(**kw):
  base = dict(vocab_size=13, max_len=16, d_model=32, num_heads=4, d_ff=48,
              num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0)
  return tfm.TransformerConfig(**{**base, **kw})


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(length=st.integers(1, 40), d=st.integers(1, 33))
def test_sinusoidal_positions_match_the_paper_formula(length, d):
  pe = tfm.sinusoidal_positions(length, d)
  chex.assert_shape(pe, (length, d))
  for pos in (0, length - 1):
    for j in range(d):
      i2 = j - j % 2
      angle = pos / 10000**(i2 / d)
      want = np.sin(angle) if j % 2 == 0 else np.cos(angle)
      np.testing.assert_allclose(pe[pos, j], want, atol=1e-6)


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_sequence_longer_than_the_position_table_is_an_error(kind):
  mod = tfm.AddPositions(max_len=5, kind=kind)
  variables = mod.init(jax.random.key(0), jnp.zeros((2, 5, 8)))
  with pytest.raises(ValueError, match=r"sequence length 6 exceeds the position table of "
                     r"max_len=5.*config.model.max_len"):
    mod.apply(variables, jnp.zeros((2, 6, 8)))


def test_learned_positions_are_a_parameter_and_unknown_kind_is_an_error():
  mod = tfm.AddPositions(max_len=7, kind="learned")
  params = mod.init(jax.random.key(0), jnp.zeros((1, 3, 4)))["params"]
  chex.assert_shape(params["pos_embedding"], (7, 4))
  out = mod.apply({"params": params}, jnp.zeros((1, 3, 4)))
  np.testing.assert_allclose(out[0], params["pos_embedding"][:3])
  with pytest.raises(ValueError, match="config.model.positions"):
    tfm.AddPositions(max_len=7, kind="rotary").init(jax.random.key(0), jnp.zeros((1, 3, 4)))


class CachedAttentionTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_cached_steps_equal_full_causal_attention(self):
    x = _x(0, (2, 6, 16))
    mha = MultiHeadAttention(num_heads=4, num_kv_heads=2)
    params = mha.init(jax.random.key(1), x)["params"]
    full = mha.apply({"params": params}, x, is_causal=True)
    dec = mha.clone(decode=True)
    variables = dec.init(jax.random.key(1), x)
    # The parameter tree does not change with decode=True.
    chex.assert_trees_all_equal_shapes(variables["params"], params)
    chex.assert_shape(variables["cache"]["cached_key"], (2, 6, 2, 4))

    @self.variant
    def step(cache, xt):
      return dec.apply({"params": params, "cache": cache}, xt, mutable=["cache"])

    cache = variables["cache"]
    outs = []
    for t in range(6):
      out, new = step(cache, x[:, t:t + 1])
      cache = new["cache"]
      outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, rtol=1e-5, atol=1e-5)
    assert int(cache["cache_index"]) == 6
    # A chunk of 2 positions after 3 cached ones (prefill) also matches.
    cache = variables["cache"]
    _, new = step(cache, x[:, :3])
    out, _ = step(new["cache"], x[:, 3:5])
    np.testing.assert_allclose(out, full[:, 3:5], rtol=1e-5, atol=1e-5)


def test_decode_is_for_self_attention_only():
  mha = MultiHeadAttention(num_heads=2, decode=True)
  with pytest.raises(ValueError, match="caches self-attention only"):
    mha.init(jax.random.key(0), jnp.zeros((1, 3, 8)), jnp.ones((1, 4, 8)))


def test_feed_forward_is_relu_mlp():
  cfg = _cfg()
  ffn = tfm.FeedForward(cfg)
  x = _x(2, (2, 5, 32))
  p = ffn.init(jax.random.key(0), x)["params"]
  want = jnp.maximum(x @ p["wi"]["kernel"] + p["wi"]["bias"], 0) @ p["wo"]["kernel"] + p["wo"]["bias"]
  np.testing.assert_allclose(ffn.apply({"params": p}, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pre_ln", [False, True])
def test_post_ln_normalises_the_layer_output_and_pre_ln_does_not(pre_ln):
  layer = tfm.EncoderLayer(_cfg(pre_ln=pre_ln))
  x = 3.0 * _x(3, (2, 5, 32)) + 1.0
  variables = layer.init(jax.random.key(0), x, None)
  y, _ = layer.apply(variables, x, None)
  normalised = np.allclose(y.mean(-1), 0.0, atol=1e-4) and np.allclose(y.std(-1), 1.0, atol=1e-2)
  assert normalised == (not pre_ln)


def test_pre_ln_sublayer_formula():
  cfg = _cfg(pre_ln=True)
  layer = tfm.EncoderLayer(cfg)
  x = _x(4, (1, 4, 32))
  p = layer.init(jax.random.key(0), x, None)["params"]
  ln = lambda h, q: nn.LayerNorm(epsilon=1e-6).apply({"params": q}, h)
  attn = lambda h: MultiHeadAttention(num_heads=4).apply({"params": p["self_attention"]}, h)
  ffn = lambda h: tfm.FeedForward(cfg).apply({"params": p["ffn"]}, h)
  h = x + attn(ln(x, p["self_attention_norm"]))
  want = h + ffn(ln(h, p["ffn_norm"]))
  np.testing.assert_allclose(layer.apply({"params": p}, x, None)[0], want, rtol=1e-5, atol=1e-5)


def test_dropout_acts_only_in_training_and_follows_the_rng():
  cfg = _cfg(dropout_rate=0.3, attention_dropout_rate=0.2, relu_dropout_rate=0.2)
  layer = tfm.EncoderLayer(cfg)
  x = _x(5, (2, 5, 32))
  v = layer.init(jax.random.key(0), x, None)
  det = layer.apply(v, x, None)[0]
  np.testing.assert_array_equal(det, layer.apply(v, x, None, train=False)[0])
  a = layer.apply(v, x, None, train=True, rngs={"dropout": jax.random.key(1)})[0]
  b = layer.apply(v, x, None, train=True, rngs={"dropout": jax.random.key(1)})[0]
  c = layer.apply(v, x, None, train=True, rngs={"dropout": jax.random.key(2)})[0]
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, det) and not np.allclose(a, c)


def test_decoder_layer_is_causal_and_reads_the_encoder():
  layer = tfm.DecoderLayer(_cfg())
  y, enc = _x(6, (2, 5, 32)), _x(7, (2, 3, 32))
  v = layer.init(jax.random.key(0), y, enc, None)
  out = layer.apply(v, y, enc, None)[0]
  out_future = layer.apply(v, y.at[:, 3:].set(9.0), enc, None)[0]
  np.testing.assert_allclose(out[:, :3], out_future[:, :3], rtol=1e-5, atol=1e-5)
  assert not np.allclose(out, layer.apply(v, y, enc + 1.0, None)[0])


def test_shift_right_and_token_checks():
  np.testing.assert_array_equal(tfm.shift_right(jnp.array([[4, 5, 2]]), 1), [[1, 4, 5]])
  with pytest.raises(ValueError, match=r"inputs has an empty batch: shape \(0, 4\)"):
    tfm.check_tokens(jnp.zeros((0, 4), jnp.int32), "inputs")
  with pytest.raises(ValueError, match=r"targets must hold integer token ids.*float32"):
    tfm.check_tokens(jnp.zeros((2, 4)), "targets")
  with pytest.raises(ValueError, match=r"int32 \[batch, length\]"):
    tfm.check_tokens(jnp.zeros((2, 4, 1), jnp.int32), "inputs")
  with pytest.raises(ValueError, match="zero length"):
    tfm.check_tokens(jnp.zeros((2, 0), jnp.int32), "inputs")
