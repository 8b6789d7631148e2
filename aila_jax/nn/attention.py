"""Multi-head attention as a thin linen holder of projections.

The maths lives in :func:`aila_jax.attention.dot_product_attention`; this module
only owns the query/key/value/output projections. Parameter names and shapes
match ``flax.linen.MultiHeadDotProductAttention`` (``query``, ``key``,
``value``, ``out``), so checkpoints of either load into the other.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from aila_jax.attention.dot_product import dot_product_attention, make_causal_mask

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
  r"""Multi-head (optionally grouped-query) attention.

  .. math::

     \mathrm{MHA}(X_q, X_{kv}) = \sum_{n=1}^{N}
       \mathrm{Attention}(X_q W^Q_n, X_{kv} W^K_{g(n)}, X_{kv} W^V_{g(n)})\,
       W^O_n

  with :math:`g(n) = \lfloor n K / N \rfloor` the key/value head of query head
  :math:`n` (:math:`K = N` is the paper's multi-head attention) and
  Attention the scaled dot-product attention of
  :func:`aila_jax.attention.dot_product_attention` (fused cuDNN kernel on GPU
  for bf16/fp16 without dropout).

  Attributes:
    num_heads: number of query heads :math:`N`.
    head_dim: size of each head; default ``features // num_heads``.
    num_kv_heads: number of key/value heads :math:`K`; default ``num_heads``.
    out_features: output size; default the query input's feature size.
    dropout_rate: attention dropout on the weights (stream ``'dropout'``).
    use_bias: whether the projections have biases.
    dtype: computation dtype (e.g. ``jnp.bfloat16``); default inferred.
    param_dtype: parameter dtype.
    kernel_init: initializer of the projection kernels.
    bias_init: initializer of the projection biases.
    implementation: forwarded to ``dot_product_attention``: None, 'xla' or
      'cudnn'.
    decode: autoregressive self-attention with a key/value cache in the
      ``'cache'`` collection (flax's ``decode=True`` idiom). The first call
      (``init`` with the full-length input ``[batch, max_len, features]``)
      allocates ``cached_key``/``cached_value`` ``[batch, max_len, kv_heads,
      head_dim]`` and ``cache_index``; each later call (``apply`` with
      ``mutable=['cache']``) writes its ``q_len`` new keys/values at
      ``cache_index``, advances it by ``q_len``, and lets query ``t`` attend to
      the cached positions ``j <= cache_index + t`` (causal by construction):

      .. math::

         o_t = \mathrm{Attention}\big(q_t,\; K_{0:i+t+1},\; V_{0:i+t+1}\big),
         \qquad i = \text{cache\_index}.

      The parameter tree is the same with or without ``decode``. Writing past
      ``max_len`` is not checked inside ``jit`` (the write is clamped).

  Example:

  >>> mha = MultiHeadAttention(num_heads=4)
  >>> x = jnp.ones((2, 7, 32))  # [batch, length, features]
  >>> params = mha.init(jax.random.key(0), x)
  >>> mha.apply(params, x, is_causal=True).shape
  (2, 7, 32)

  Reference:
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3.2.2,
    https://arxiv.org/abs/1706.03762.
  """
  num_heads: int
  head_dim: int | None = None
  num_kv_heads: int | None = None
  out_features: int | None = None
  dropout_rate: float = 0.0
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  implementation: str | None = None
  decode: bool = False

  @nn.compact
  def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array | None = None,
               *, mask: jax.Array | None = None,
               bias: jax.Array | None = None, is_causal: bool = False,
               deterministic: bool = True, return_weights: bool = False):
    """Attends from ``inputs_q`` to ``inputs_kv`` (itself if None).

    Args:
      inputs_q: ``[batch, q_len, features]``.
      inputs_kv: ``[batch, kv_len, kv_features]``; default ``inputs_q``.
      mask: boolean, True = attend, broadcastable to
        ``[batch, heads, q_len, kv_len]``.
      bias: additive logits bias, broadcastable likewise.
      is_causal: causal (top-left aligned) masking.
      deterministic: disables attention dropout.
      return_weights: also return the attention weights
        ``[batch, heads, q_len, kv_len]`` (forces the XLA path).

    Returns:
      ``[batch, q_len, out_features]``, or ``(output, weights)``.
    """
    if self.decode and inputs_kv is not None and inputs_kv is not inputs_q:
      raise ValueError(
          "decode=True caches self-attention only: call it with inputs_kv=None "
          "(cross-attention keys come from the encoder and need no cache).")
    inputs_kv = inputs_q if inputs_kv is None else inputs_kv
    if inputs_q.ndim != 3 or inputs_kv.ndim != 3:
      raise ValueError(
          f"inputs_q and inputs_kv must be [batch, length, features]; got "
          f"shapes {inputs_q.shape} and {inputs_kv.shape}.")
    features = inputs_q.shape[-1]
    if self.head_dim is None and features % self.num_heads:
      raise ValueError(
          f"features ({features}) must be divisible by num_heads "
          f"({self.num_heads}), or set head_dim.")
    head_dim = self.head_dim or features // self.num_heads
    kv_heads = self.num_kv_heads or self.num_heads
    if self.num_heads % kv_heads:
      raise ValueError(
          f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
          f"({kv_heads}).")

    dense = functools.partial(
        nn.DenseGeneral, axis=-1, dtype=self.dtype,
        param_dtype=self.param_dtype, kernel_init=self.kernel_init,
        bias_init=self.bias_init, use_bias=self.use_bias)
    query = dense(features=(self.num_heads, head_dim), name="query")(inputs_q)
    key = dense(features=(kv_heads, head_dim), name="key")(inputs_kv)
    value = dense(features=(kv_heads, head_dim), name="value")(inputs_kv)
    # query (B, T, N, H); key, value (B, S, K, H)

    if self.decode:
      key, value, mask = self._use_cache(key, value, mask)
      is_causal = False  # the cache mask is causal in absolute positions

    rate = 0.0 if deterministic else self.dropout_rate
    dropout_rng = self.make_rng("dropout") if rate > 0.0 else None
    result = dot_product_attention(
        query, key, value, bias=bias, mask=mask, is_causal=is_causal,
        dropout_rate=rate, dropout_rng=dropout_rng,
        return_weights=return_weights, implementation=self.implementation)
    out, weights = result if return_weights else (result, None)

    out = nn.DenseGeneral(
        features=self.out_features or features, axis=(-2, -1),
        dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=self.kernel_init, bias_init=self.bias_init,
        use_bias=self.use_bias, name="out")(out)  # (B, T, F)
    return (out, weights) if return_weights else out

  def _use_cache(self, key, value, mask):
    """Writes ``key``/``value`` into the cache; returns the cache and mask."""
    initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape,
                               key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros,
                                 value.shape, value.dtype)
    cache_index = self.variable("cache", "cache_index",
                                lambda: jnp.zeros((), jnp.int32))
    if not initialized:  # init: the full-length call that sizes the cache
      return key, value, mask
    b, max_len, k, h = cached_key.value.shape
    t = key.shape[1]
    if key.shape[0] != b or key.shape[2:] != (k, h) or t > max_len:
      raise ValueError(
          f"decode: the new keys {key.shape} do not fit the cache "
          f"[batch, max_len, kv_heads, head_dim] = {cached_key.value.shape}; "
          f"initialise the cache with the decoding batch and a max_len >= "
          f"the number of decoded positions.")
    index = cache_index.value
    key = lax.dynamic_update_slice(cached_key.value, key.astype(
        cached_key.value.dtype), (0, index, 0, 0))  # (B, max_len, K, H)
    value = lax.dynamic_update_slice(cached_value.value, value.astype(
        cached_value.value.dtype), (0, index, 0, 0))
    cached_key.value, cached_value.value = key, value
    cache_index.value = index + t
    causal = make_causal_mask(t, max_len, offset=index)  # (1, 1, T, max_len)
    mask = causal if mask is None else mask & causal
    return key, value, mask
