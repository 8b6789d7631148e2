"""Tests for aila_jax.nn.attention.MultiHeadAttention."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.attention import dot_product as dpa
from aila_jax.nn.attention import MultiHeadAttention


def _x(seed, shape):
  return jax.random.normal(jax.random.key(seed), shape)


def test_matches_flax_stock_module_with_the_same_params():
  x, y = _x(0, (2, 6, 32)), _x(1, (2, 9, 24))
  mask = jax.random.bernoulli(jax.random.key(2), 0.7, (2, 1, 6, 9))
  stock = nn.MultiHeadDotProductAttention(num_heads=4)
  params = stock.init(jax.random.key(3), x, y)
  ours = MultiHeadAttention(num_heads=4)
  chex.assert_trees_all_equal_shapes(params, ours.init(jax.random.key(3), x, y))
  # Rows that the stock module would treat as uniform (fully masked) are
  # defined differently here (zero); keep every row attending to something.
  mask = mask.at[..., 0].set(True)
  np.testing.assert_allclose(
      ours.apply(params, x, y, mask=mask),
      stock.apply(params, x, y, mask=mask), rtol=1e-5, atol=1e-5)


def test_projections_then_dot_product_attention():
  x = _x(4, (2, 5, 16))
  mha = MultiHeadAttention(num_heads=4, num_kv_heads=2, head_dim=8,
                           out_features=12)
  params = mha.init(jax.random.key(0), x)["params"]
  chex.assert_shape(params["query"]["kernel"], (16, 4, 8))
  chex.assert_shape(params["key"]["kernel"], (16, 2, 8))
  chex.assert_shape(params["out"]["kernel"], (4, 8, 12))
  proj = lambda p, n: jnp.einsum("btf,fnh->btnh", x, p[n]["kernel"]) + p[n][
      "bias"]
  core = dpa.dot_product_attention(proj(params, "query"), proj(params, "key"),
                                   proj(params, "value"), is_causal=True)
  want = jnp.einsum("btnh,nhf->btf", core, params["out"]["kernel"]) + params[
      "out"]["bias"]
  out, w = mha.apply({"params": params}, x, is_causal=True,
                     return_weights=True)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
  chex.assert_shape(w, (2, 4, 5, 5))
  # Causal: the output at position 1 does not see positions 2..4.
  x2 = x.at[:, 2:].set(7.0)
  np.testing.assert_allclose(mha.apply({"params": params}, x2,
                                       is_causal=True)[:, :2], out[:, :2],
                             rtol=1e-5, atol=1e-5)


def test_dropout_uses_the_dropout_stream_only_when_not_deterministic():
  x = _x(5, (2, 5, 16))
  mha = MultiHeadAttention(num_heads=2, dropout_rate=0.5)
  params = mha.init(jax.random.key(0), x)
  a = mha.apply(params, x)
  np.testing.assert_array_equal(a, mha.apply(params, x, deterministic=True))
  with pytest.raises(Exception, match="dropout"):
    mha.apply(params, x, deterministic=False)
  b = mha.apply(params, x, deterministic=False,
                rngs={"dropout": jax.random.key(1)})
  assert np.abs(np.asarray(a - b)).max() > 1e-3


def test_bad_configuration_raises():
  x = jnp.ones((2, 5, 10))
  with pytest.raises(ValueError, match=r"features \(10\) must be divisible"):
    MultiHeadAttention(num_heads=3).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="multiple of num_kv_heads"):
    MultiHeadAttention(num_heads=5, num_kv_heads=2).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"\[batch, length, features\]"):
    MultiHeadAttention(num_heads=2).init(jax.random.key(0), jnp.ones((5, 10)))
