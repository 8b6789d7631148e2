"""Scaled dot-product attention ("Attention Is All You Need", Vaswani et al. 2017).

One function, :func:`dot_product_attention`, computes token attention for the
whole library, with two interchangeable implementations:

* ``'cudnn'``: the fused flash-attention kernel of cuDNN, reached through
  ``jax.nn.dot_product_attention(..., implementation='cudnn')``. Used by
  default on NVIDIA GPUs (compute capability >= 8.0) for float16/bfloat16
  inputs when neither attention dropout nor the weights are asked for.
* ``'xla'``: an einsum/softmax path of our own that runs everywhere and also
  supports attention dropout and returning the attention weights.

Both compute the same function, including on rows whose every key is masked
(their output is zero, see :func:`dot_product_attention`).

Layout: ``[batch, length, heads, head_dim]`` for queries, keys and values (the
``jax.nn.dot_product_attention`` layout); masks and biases broadcast to
``[batch, heads, q_len, kv_len]``.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
from jax import lax
import jax.numpy as jnp

__all__ = [
    "dot_product_attention",
    "make_causal_mask",
    "make_padding_mask",
    "cudnn_unsupported_reason",
]

Implementation = Literal["xla", "cudnn"] | None

_LOGITS_LAYOUT = "[batch, heads, q_len, kv_len]"
_QKV_LAYOUT = "[batch, length, heads, head_dim]"


# ----------------------------------------------------------------------------
# Mask helpers.
# ----------------------------------------------------------------------------
def make_causal_mask(q_len: int, kv_len: int | None = None, *,
                     offset: int = 0) -> jax.Array:
  r"""Boolean causal mask, True where query ``i`` may attend to key ``j``.

  .. math::

     M_{ij} = [\, j \le i + \mathrm{offset} \,]

  With ``offset=0`` this is the top-left aligned mask that ``is_causal=True``
  applies. When decoding with a cache of ``kv_len`` keys and the queries being
  the last ``q_len`` positions, pass ``offset=kv_len - q_len``.

  Args:
    q_len: number of query positions.
    kv_len: number of key positions (default ``q_len``).
    offset: absolute position of query 0 in the key sequence.

  Returns:
    ``bool[1, 1, q_len, kv_len]``, broadcastable to
    ``[batch, heads, q_len, kv_len]``.

  Example:

  >>> make_causal_mask(3)[0, 0].astype(int)
  Array([[1, 0, 0],
         [1, 1, 0],
         [1, 1, 1]], dtype=int32)
  """
  kv_len = q_len if kv_len is None else kv_len
  q_pos = jnp.arange(q_len)[:, None] + offset  # (T, 1)
  k_pos = jnp.arange(kv_len)[None, :]  # (1, S)
  return (k_pos <= q_pos)[None, None]


def make_padding_mask(key_valid: jax.Array,
                      query_valid: jax.Array | None = None) -> jax.Array:
  r"""Boolean padding mask from per-position validity flags.

  .. math::

     M_{b,1,i,j} = \mathrm{kv}_{b,j} \wedge \mathrm{q}_{b,i}

  Args:
    key_valid: ``bool[batch, kv_len]``, True at real (non-padding) keys.
    query_valid: optional ``bool[batch, q_len]``, True at real queries. Rows of
      padding queries are then fully masked and their attention output is 0.

  Returns:
    ``bool[batch, 1, 1, kv_len]``, or ``bool[batch, 1, q_len, kv_len]`` when
    ``query_valid`` is given.

  Example:

  >>> m = make_padding_mask(jnp.array([[True, True, False]]))
  >>> m.shape, m[0, 0, 0].tolist()
  ((1, 1, 1, 3), [True, True, False])
  """
  key_valid = jnp.asarray(key_valid)
  if key_valid.ndim != 2:
    raise ValueError(
        f"key_valid must be bool[batch, kv_len]; got shape {key_valid.shape}.")
  key_valid = key_valid.astype(bool)
  if query_valid is None:
    return key_valid[:, None, None, :]
  query_valid = jnp.asarray(query_valid)
  if query_valid.ndim != 2 or query_valid.shape[0] != key_valid.shape[0]:
    raise ValueError(
        f"query_valid must be bool[batch, q_len] with batch "
        f"{key_valid.shape[0]} (from key_valid); got shape "
        f"{query_valid.shape}.")
  query_valid = query_valid.astype(bool)
  return query_valid[:, None, :, None] & key_valid[:, None, None, :]


# ----------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------
def _check_qkv(query, key, value):
  """Checks ranks, sizes, dtypes and head counts; returns (B, T, S, N, K, H)."""
  for name, x in (("query", query), ("key", key), ("value", value)):
    if x.ndim != 4:
      raise ValueError(
          f"{name} must have rank 4, {_QKV_LAYOUT}; got shape {x.shape} "
          f"(rank {x.ndim}).")
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise ValueError(
          f"{name} must have a floating dtype; got {x.dtype}.")
    for axis, dim in zip(("batch", "length", "heads", "head_dim"), x.shape):
      if dim == 0:
        if axis == "batch":
          raise ValueError(
              f"{name} has an empty batch: shape {x.shape}, expected "
              f"{_QKV_LAYOUT} with batch >= 1.")
        raise ValueError(
            f"{name} has a zero-size {axis} axis: shape {x.shape}, expected "
            f"{_QKV_LAYOUT} with every size >= 1.")
  b, t, n, h = query.shape
  bk, s, k, hk = key.shape
  if value.shape != key.shape:
    raise ValueError(
        f"value must have the shape of key, [batch, kv_len, kv_heads, "
        f"head_dim] = {key.shape}; got {value.shape}.")
  if bk != b:
    raise ValueError(
        f"key and value must have the batch size of query ({b}); got key "
        f"shape {key.shape}, query shape {query.shape}.")
  if hk != h:
    raise ValueError(
        f"query and key must have the same head_dim; got query head_dim {h} "
        f"(shape {query.shape}) and key head_dim {hk} (shape {key.shape}).")
  if n % k != 0:
    raise ValueError(
        f"query heads must be a multiple of key/value heads (grouped-query "
        f"attention); got {n} query heads (shape {query.shape}) and {k} "
        f"key/value heads (shape {key.shape}).")
  if not query.dtype == key.dtype == value.dtype:
    raise ValueError(
        f"query, key and value must share one dtype; got {query.dtype}, "
        f"{key.dtype}, {value.dtype}. Cast them first.")
  return b, t, s, n, k, h


def _as_4d(x, name, logits_shape, kind):
  """Validates ``x`` broadcasts to ``logits_shape``; returns it as 4-D."""
  x = jnp.asarray(x)
  if kind == "mask" and x.dtype != jnp.bool_:
    raise ValueError(
        f"mask must be boolean (True = attend), broadcastable to "
        f"{_LOGITS_LAYOUT} = {logits_shape}; got dtype {x.dtype}. For an "
        f"additive mask pass it as bias.")
  if kind == "bias" and not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f"bias must have a floating dtype, broadcastable to {_LOGITS_LAYOUT} "
        f"= {logits_shape}; got dtype {x.dtype}.")
  ok = x.ndim <= 4 and all(
      d in (1, want) for d, want in zip(x.shape[::-1], logits_shape[::-1]))
  if not ok:
    raise ValueError(
        f"{name} of shape {x.shape} does not broadcast to {_LOGITS_LAYOUT} = "
        f"{logits_shape}; each axis must be 1 or the full size.")
  return x.reshape((1,) * (4 - x.ndim) + x.shape)


def _compute_capability() -> tuple[int, int] | None:
  """The (major, minor) compute capability of the default CUDA device."""
  try:
    device = jax.devices()[0]
  except RuntimeError:
    return None
  if device.platform != "gpu":
    return None
  cc = getattr(device, "compute_capability", None)
  try:
    major, minor = str(cc).split(".")[:2]
    return int(major), int(minor)
  except (ValueError, TypeError):
    return None  # Not a CUDA device (e.g. ROCm reports gfx names).


def cudnn_unsupported_reason(query, key, *, has_mask_or_bias: bool = False,
                             dropout_rate: float = 0.0,
                             return_weights: bool = False) -> str | None:
  """Why the fused cuDNN kernel cannot run this call, or None if it can.

  Args:
    query: ``[batch, q_len, heads, head_dim]`` array (or anything with
      ``shape`` and ``dtype``).
    key: ``[batch, kv_len, kv_heads, head_dim]`` array.
    has_mask_or_bias: whether a mask or bias will be applied.
    dropout_rate: attention dropout rate.
    return_weights: whether the attention weights are asked for.

  Returns:
    A sentence naming the first unmet requirement, or ``None``.
  """
  cc = _compute_capability()
  if cc is None:
    return (f"it needs a CUDA GPU; the default backend is "
            f"{jax.default_backend()!r}")
  if cc < (8, 0):
    return f"it needs compute capability >= 8.0; the GPU has {cc[0]}.{cc[1]}"
  if query.dtype not in (jnp.float16, jnp.bfloat16):
    return f"it needs float16 or bfloat16 inputs; got {query.dtype}"
  if dropout_rate > 0.0:
    return "it does not implement this library's attention dropout"
  if return_weights:
    return "it never forms the attention weights (return_weights=True)"
  head_dim = query.shape[-1]
  max_dim = 256 if cc >= (9, 0) else 128
  if head_dim % 8 or head_dim > max_dim:
    return (f"it needs head_dim a multiple of 8 and <= {max_dim} on this GPU; "
            f"got {head_dim}")
  if has_mask_or_bias and (query.shape[1] % 2 or key.shape[1] % 2):
    return (f"with a mask or bias it needs even q_len and kv_len; got "
            f"{query.shape[1]} and {key.shape[1]}")
  return None


# ----------------------------------------------------------------------------
# Implementations.
# ----------------------------------------------------------------------------
def _matmul_precision(dtype):
  # Explicit bf16/f16 x bf16/f16 -> f32 algorithm keeps the backward pass's
  # dtypes consistent (jax-ml/jax#24047); other dtypes use the default.
  if dtype == jnp.bfloat16:
    return lax.DotAlgorithmPreset.BF16_BF16_F32
  if dtype == jnp.float16:
    return lax.DotAlgorithmPreset.F16_F16_F32
  return None


def _xla_attention(query, key, value, bias, mask, *, is_causal, scale,
                   dropout_rate, dropout_rng, return_weights):
  """Einsum/softmax attention; ``mask``/``bias`` are 4-D or None."""
  b, t, n, h = query.shape
  s, k = key.shape[1], key.shape[2]
  g = n // k
  compute_dtype = jnp.promote_types(query.dtype, jnp.float32)
  precision = _matmul_precision(query.dtype)

  q = query.reshape(b, t, k, g, h)  # (B, T, K, G, H)
  logits = jnp.einsum("btkgh,bskh->bkgts", q, key, precision=precision,
                      preferred_element_type=compute_dtype)  # (B, K, G, T, S)
  logits = logits.reshape(b, n, t, s) * jnp.asarray(scale, compute_dtype)
  if bias is not None:
    logits = logits + bias.astype(compute_dtype)

  valid = mask
  if is_causal:
    causal = make_causal_mask(t, s)
    valid = causal if valid is None else valid & causal
  if valid is not None:
    logits = jnp.where(valid, logits, -jnp.inf)

  # Softmax whose fully -inf rows give zero weights instead of NaN.
  row_max = jnp.max(logits, axis=-1, keepdims=True)  # (B, N, T, 1)
  row_max = lax.stop_gradient(
      jnp.where(jnp.isfinite(row_max), row_max, 0.0))
  unnorm = jnp.exp(logits - row_max)
  denom = jnp.sum(unnorm, axis=-1, keepdims=True)
  weights = unnorm / jnp.where(denom > 0.0, denom, 1.0)  # (B, N, T, S)

  probs = weights
  if dropout_rate > 0.0:
    keep_prob = 1.0 - dropout_rate
    keep = jax.random.bernoulli(dropout_rng, keep_prob, weights.shape)
    probs = jnp.where(keep, weights / jnp.asarray(keep_prob, compute_dtype),
                      0.0)

  probs = probs.astype(value.dtype).reshape(b, k, g, t, s)
  out = jnp.einsum("bkgts,bskh->btkgh", probs, value, precision=precision,
                   preferred_element_type=compute_dtype)  # (B, T, K, G, H)
  out = out.reshape(b, t, n, h).astype(query.dtype)
  if return_weights:
    return out, weights
  return out


def _large_negative(dtype):
  # The values jax uses for masked logits in its cuDNN path: finite in the
  # input dtype, and large enough that exp() of them underflows to zero.
  return jnp.asarray(-(2 << 40) if dtype == jnp.bfloat16 else -(2 << 14),
                     dtype)


def _cudnn_attention(query, key, value, bias, mask, *, is_causal, scale):
  """Fused cuDNN attention with zero output on fully masked rows."""
  _, t, n, _ = query.shape
  s = key.shape[1]
  causal_in_kernel = is_causal
  if is_causal and t != s:
    # Fold the (top-left) causal mask into the explicit mask so that its
    # alignment never depends on the kernel's convention for t != s.
    causal = make_causal_mask(t, s)
    mask = causal if mask is None else mask & causal
    causal_in_kernel = False

  row_valid = None
  if mask is not None:
    valid = mask
    if causal_in_kernel:
      valid = valid & make_causal_mask(t, s)
    row_valid = jnp.any(valid, axis=-1)  # (B|1, N|1, T)
    row_valid = jnp.transpose(row_valid, (0, 2, 1))[..., None]  # (., T, ., 1)
    # The kernel takes an additive bias with full (q_len, kv_len) and heads
    # axes; the batch axis may stay 1.
    fill = jnp.zeros((), query.dtype) if bias is None else bias.astype(
        query.dtype)
    bias = jnp.where(mask, fill, _large_negative(query.dtype))
  if bias is not None:
    bias = jnp.broadcast_to(bias.astype(query.dtype),
                            (bias.shape[0], n, t, s))

  out = jax.nn.dot_product_attention(
      query, key, value, bias=bias, scale=scale, is_causal=causal_in_kernel,
      implementation="cudnn")
  if row_valid is not None:
    out = jnp.where(row_valid, out, jnp.zeros((), out.dtype))
  return out


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    is_causal: bool = False,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    return_weights: bool = False,
    implementation: Implementation = None,
    scale: float | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  r"""Scaled dot-product attention, fused on GPU and einsum elsewhere.

  For each batch element ``b`` and query head ``n`` (whose key/value head is
  ``n // (N / K)`` under grouped-query attention):

  .. math::

     L_{ij} &= \alpha\, q_i \cdot k_j + B_{ij}, \qquad
       \alpha = 1/\sqrt{d_{\mathrm{head}}} \\
     P_{ij} &= \frac{M_{ij}\, e^{L_{ij}}}{\sum_{j'} M_{ij'}\, e^{L_{ij'}}},
       \qquad M_{ij} = \mathrm{mask}_{ij} \wedge [\, j \le i \,]_{\text{causal}} \\
     o_i &= \sum_j \tilde P_{ij}\, v_j, \qquad
       \tilde P_{ij} = P_{ij}\, \xi_{ij} / (1 - p), \;
       \xi_{ij} \sim \mathrm{Bernoulli}(1 - p)

  where :math:`p` is ``dropout_rate`` (:math:`\tilde P = P` when ``p = 0``).

  **Fully masked rows.** A query row with no key to attend to (every
  :math:`M_{ij}` false, e.g. a padding query) gets all-zero weights and a zero
  output, and passes no gradient. Both implementations do this. In the XLA
  path a row whose every logit is :math:`-\infty` through ``bias`` behaves the
  same; the cuDNN path needs a finite ``bias`` (mask with ``mask``).

  **Causal masking** is top-left aligned: query ``i`` sees keys ``j <= i``,
  as in ``jax.nn.dot_product_attention`` and PyTorch's
  ``scaled_dot_product_attention``. For decoding with a cache use ``mask`` and
  :func:`make_causal_mask` with an offset.

  **Dispatch.** With ``implementation=None`` the fused cuDNN kernel is used on
  an NVIDIA GPU (compute capability >= 8.0) for float16/bfloat16 inputs with
  ``dropout_rate == 0``, ``return_weights=False``, head_dim a multiple of 8
  (<= 256 on Hopper, <= 128 before) and, with a mask or bias, even sequence
  lengths; otherwise the XLA path. ``'xla'`` or ``'cudnn'`` force one;
  forcing ``'cudnn'`` where it cannot run raises ``ValueError`` saying why.

  Args:
    query: ``[batch, q_len, heads, head_dim]``.
    key: ``[batch, kv_len, kv_heads, head_dim]``; ``heads`` must be a multiple
      of ``kv_heads`` (multi-query and grouped-query attention).
    value: same shape and dtype as ``key``.
    bias: optional additive logits bias, floating, broadcastable (numpy rules,
      rank <= 4) to ``[batch, heads, q_len, kv_len]``.
    mask: optional boolean mask, True = attend, broadcastable to
      ``[batch, heads, q_len, kv_len]``.
    is_causal: apply the causal mask :math:`j \le i`.
    dropout_rate: attention dropout probability :math:`p \in [0, 1)`, applied
      to the normalised weights (inverted dropout, so the expected output is
      that of no dropout). Needs ``dropout_rng``; XLA path only.
    dropout_rng: PRNG key for dropout.
    return_weights: also return the attention weights :math:`P` (before
      dropout), ``[batch, heads, q_len, kv_len]`` in float32 (float64 for
      float64 inputs). XLA path only.
    implementation: ``None`` (choose), ``'xla'`` or ``'cudnn'``.
    scale: logits scale :math:`\alpha`; default ``1 / sqrt(head_dim)``.

  Returns:
    The output ``[batch, q_len, heads, head_dim]`` in the dtype of ``query``,
    or ``(output, weights)`` when ``return_weights`` is True.

  Raises:
    ValueError: on wrong ranks, empty or mismatched sizes, heads that do not
      group, masks or biases that do not broadcast, a non-boolean mask,
      ``dropout_rate`` outside ``[0, 1)`` or without ``dropout_rng``, an
      unknown ``implementation``, or ``'cudnn'`` forced where it cannot run.

  Example:

  >>> q = k = v = jnp.ones((2, 5, 4, 8))  # [batch, length, heads, head_dim]
  >>> out = dot_product_attention(q, k, v, is_causal=True)
  >>> out.shape
  (2, 5, 4, 8)
  >>> out, w = dot_product_attention(q, k, v, is_causal=True,
  ...                                return_weights=True)
  >>> w[0, 0, 2].tolist()  # query 2 spreads evenly over keys 0..2
  [0.3333333432674408, 0.3333333432674408, 0.3333333432674408, 0.0, 0.0]

  References:
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017, eq. (1),
    https://arxiv.org/abs/1706.03762. Grouped-query attention: Ainslie et al.
    2023, https://arxiv.org/abs/2305.13245. Fused kernel: Dao, "FlashAttention-2",
    2023, https://arxiv.org/abs/2307.08691.
  """
  query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
  b, t, s, n, _, h = _check_qkv(query, key, value)
  logits_shape = (b, n, t, s)
  if mask is not None:
    mask = _as_4d(mask, "mask", logits_shape, "mask")
  if bias is not None:
    bias = _as_4d(bias, "bias", logits_shape, "bias")
  if implementation not in (None, "xla", "cudnn"):
    raise ValueError(
        f"implementation must be None, 'xla' or 'cudnn'; got "
        f"{implementation!r}.")
  dropout_rate = float(dropout_rate)
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"dropout_rate must lie in [0, 1); got {dropout_rate}.")
  if dropout_rate > 0.0 and dropout_rng is None:
    raise ValueError(
        f"dropout_rate={dropout_rate} needs a dropout_rng (a PRNG key); got "
        f"None. Pass dropout_rate=0.0 for deterministic attention.")
  scale = 1.0 / math.sqrt(h) if scale is None else float(scale)

  if implementation != "xla":
    reason = cudnn_unsupported_reason(
        query, key, has_mask_or_bias=mask is not None or bias is not None,
        dropout_rate=dropout_rate, return_weights=return_weights)
    if reason is None:
      return _cudnn_attention(query, key, value, bias, mask,
                              is_causal=is_causal, scale=scale)
    if implementation == "cudnn":
      raise ValueError(f"implementation='cudnn' cannot run here: {reason}. "
                       f"Use implementation=None or 'xla'.")
  return _xla_attention(query, key, value, bias, mask, is_causal=is_causal,
                        scale=scale, dropout_rate=dropout_rate,
                        dropout_rng=dropout_rng,
                        return_weights=return_weights)
