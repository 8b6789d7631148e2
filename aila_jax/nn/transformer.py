r"""Transformer building blocks ("Attention Is All You Need", Vaswani et al. 2017).

Positions (sinusoidal and learned), the position-wise feed-forward network,
encoder and decoder layers (post-LN as in the paper, pre-LN as an option),
and the encoder and decoder stacks. Every module takes one frozen
:class:`TransformerConfig`; assemblies with presets live in
:mod:`aila_jax.models.transformer`.

A post-LN sub-layer (paper, section 5.4, residual dropout :math:`P_{drop}`):

.. math::

   x \leftarrow \mathrm{LayerNorm}\big(x + \mathrm{Dropout}(\mathrm{Sublayer}(x))\big)

and pre-LN (Xiong et al. 2020, https://arxiv.org/abs/2002.04745), with one
final LayerNorm after the stack:

.. math::

   x \leftarrow x + \mathrm{Dropout}(\mathrm{Sublayer}(\mathrm{LayerNorm}(x))).

Layout: tokens ``int[batch, length]`` with 0 = padding; activations
``[batch, length, d_model]``; attention weights ``[batch, heads, q_len,
kv_len]``.

Reference:
  Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
  https://arxiv.org/abs/1706.03762.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from aila_jax.attention.dot_product import make_padding_mask
from aila_jax.nn.attention import MultiHeadAttention

__all__ = [
    "TransformerConfig", "sinusoidal_positions", "AddPositions",
    "FeedForward", "EncoderLayer", "DecoderLayer", "Encoder", "Decoder",
    "shift_right", "check_tokens",
]

POSITION_KINDS = ("sinusoidal", "learned")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Sizes and switches of a Transformer (hashable; one per model).

  Attributes:
    vocab_size: size of the (shared source/target) vocabulary, id 0 = padding.
    max_len: size of the position table (longest sequence accepted).
    d_model: model width :math:`d_{model}`.
    num_heads: attention heads :math:`h` (``d_model`` must divide by it).
    num_encoder_layers: :math:`N` of the encoder.
    num_decoder_layers: :math:`N` of the decoder.
    d_ff: inner width of the position-wise FFN.
    dropout_rate: residual dropout :math:`P_{drop}` (after every sub-layer and
      on embeddings + positions).
    attention_dropout_rate: dropout on the attention weights (off in the
      paper; > 0 disables the fused cuDNN kernel).
    relu_dropout_rate: dropout after the FFN's ReLU (off in the paper).
    positions: ``'sinusoidal'`` (paper) or ``'learned'``.
    pre_ln: pre-LN sub-layers with a final LayerNorm instead of post-LN.
    share_embeddings: one embedding matrix for source, target and the output
      projection (paper, section 3.4); else three.
    num_kv_heads: key/value heads (grouped-query attention); None = heads.
    layer_norm_epsilon: LayerNorm epsilon.
    dtype: computation dtype (parameters stay float32).
    return_attention: return attention weights per layer (forces the XLA
      attention path: use for inspection, not training).
    decode: autoregressive decoding with a KV cache (see
      :class:`aila_jax.nn.attention.MultiHeadAttention`).
    implementation: attention implementation (None, 'xla', 'cudnn').
  """
  vocab_size: int
  max_len: int = 256
  d_model: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  d_ff: int = 2048
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  relu_dropout_rate: float = 0.0
  positions: str = "sinusoidal"
  pre_ln: bool = False
  share_embeddings: bool = True
  num_kv_heads: int | None = None
  layer_norm_epsilon: float = 1e-6
  dtype: Any = jnp.float32
  return_attention: bool = False
  decode: bool = False
  implementation: str | None = None


def sinusoidal_positions(length: int, d_model: int,
                         max_timescale: float = 1e4) -> np.ndarray:
  r"""The paper's sinusoidal position encodings (section 3.5).

  .. math::

     PE_{(pos, 2i)} = \sin(pos / 10000^{2i/d_{model}}), \qquad
     PE_{(pos, 2i+1)} = \cos(pos / 10000^{2i/d_{model}})

  Args:
    length: number of positions.
    d_model: encoding width (odd widths drop the last cosine).
    max_timescale: the base 10000.

  Returns:
    ``float32[length, d_model]``.

  Example:

  >>> pe = sinusoidal_positions(4, 6)
  >>> pe.shape, pe[0].tolist()
  ((4, 6), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
  """
  pos = np.arange(length, dtype=np.float64)[:, None]  # (L, 1)
  i = np.arange(0, d_model, 2, dtype=np.float64)[None, :]  # (1, ceil(D/2))
  angle = pos / np.power(max_timescale, i / d_model)
  pe = np.zeros((length, d_model + d_model % 2))
  pe[:, 0::2] = np.sin(angle)
  pe[:, 1::2] = np.cos(angle)
  return pe[:, :d_model].astype(np.float32)


def check_tokens(tokens, name: str) -> None:
  """Raises ValueError unless ``tokens`` is a non-empty ``int[batch, length]``."""
  shape = getattr(tokens, "shape", None)
  dtype = getattr(tokens, "dtype", None)
  if shape is None or len(shape) != 2:
    raise ValueError(f"{name} must be int32 [batch, length] token ids; got "
                     f"shape {shape}.")
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f"{name} must hold integer token ids, int32 [batch, "
                     f"length]; got dtype {dtype}.")
  if shape[0] == 0:
    raise ValueError(f"{name} has an empty batch: shape {tuple(shape)}, "
                     f"expected int32 [batch, length] with batch >= 1.")
  if shape[1] == 0:
    raise ValueError(f"{name} has zero length: shape {tuple(shape)}, "
                     f"expected int32 [batch, length] with length >= 1.")


def shift_right(targets: jax.Array, bos_id: int = 1) -> jax.Array:
  """Decoder inputs: ``[BOS, y_1, ..., y_{L-1}]`` from targets ``[y_1, ..., y_L]``.

  Example:

  >>> shift_right(jnp.array([[5, 6, 2, 0]])).tolist()
  [[1, 5, 6, 2]]
  """
  bos = jnp.full(targets.shape[:1] + (1,), bos_id, targets.dtype)
  return jnp.concatenate([bos, targets[:, :-1]], axis=1)


class AddPositions(nn.Module):
  """Adds sinusoidal or learned position encodings to ``[batch, length, d]``.

  With ``decode=True`` the position of each call continues from a counter in
  the ``'cache'`` collection (one token at a time during decoding).

  Attributes:
    max_len: size of the position table; longer inputs raise ValueError.
    kind: ``'sinusoidal'`` or ``'learned'`` (parameter ``pos_embedding``).
    decode: continue positions across calls (autoregressive decoding).
  """
  max_len: int
  kind: str = "sinusoidal"
  decode: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kind not in POSITION_KINDS:
      raise ValueError(f"config.model.positions: expected one of "
                       f"{POSITION_KINDS}, got {self.kind!r}.")
    _, length, d = x.shape
    if length > self.max_len:
      raise ValueError(
          f"sequence length {length} exceeds the position table of "
          f"max_len={self.max_len} (input shape {x.shape}); raise "
          f"config.model.max_len or truncate the sequences.")
    if self.kind == "learned":
      table = self.param("pos_embedding", nn.initializers.normal(0.02),
                         (self.max_len, d))  # (max_len, D)
    else:
      table = jnp.asarray(sinusoidal_positions(self.max_len, d))
    if self.decode:
      initialized = self.has_variable("cache", "position_index")
      index = self.variable("cache", "position_index",
                            lambda: jnp.zeros((), jnp.int32))
      if initialized:
        i = index.value
        index.value = i + length
        pe = lax.dynamic_slice(table, (i, 0), (length, d))
        return x + pe[None].astype(x.dtype)
    return x + table[None, :length].astype(x.dtype)


class FeedForward(nn.Module):
  r"""Position-wise feed-forward network (section 3.3).

  .. math::

     \mathrm{FFN}(x) = \max(0, x W_1 + b_1) W_2 + b_2

  with dropout ``relu_dropout_rate`` after the ReLU.
  """
  config: TransformerConfig

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    cfg = self.config
    init = nn.initializers.xavier_uniform()
    h = nn.Dense(cfg.d_ff, dtype=cfg.dtype, kernel_init=init, name="wi")(x)
    h = nn.relu(h)  # (B, L, F)
    h = nn.Dropout(cfg.relu_dropout_rate)(h, deterministic=not train)
    return nn.Dense(x.shape[-1], dtype=cfg.dtype, kernel_init=init,
                    name="wo")(h)  # (B, L, D)


def _attention(cfg: TransformerConfig, name: str, decode: bool = False):
  return MultiHeadAttention(
      num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads,
      dropout_rate=cfg.attention_dropout_rate, dtype=cfg.dtype,
      kernel_init=nn.initializers.xavier_uniform(),
      implementation=cfg.implementation, decode=decode, name=name)


def _residual(cfg: TransformerConfig, x, fn, *, name: str, train: bool):
  """Post-LN or pre-LN residual around ``fn``; call inside a compact method.

  ``fn`` returns ``y`` or ``(y, aux)``; returns ``(x, aux)``. The LayerNorm
  is a submodule ``{name}_norm`` of the calling module.
  """
  norm = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                      name=f"{name}_norm")
  y = fn(norm(x) if cfg.pre_ln else x)
  y, aux = y if isinstance(y, tuple) else (y, None)
  x = x + nn.Dropout(cfg.dropout_rate)(y, deterministic=not train)
  return (x if cfg.pre_ln else norm(x)), aux


class EncoderLayer(nn.Module):
  """Self-attention then FFN, each in a residual sub-layer (section 3.1)."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None, *,
               train: bool = False):
    """``x`` ``[B, L, D]``, ``mask`` bool ``[B, 1, 1, L]`` -> ``(x, weights)``."""
    cfg = self.config
    attn = _attention(cfg, "self_attention")
    ffn = FeedForward(cfg, name="ffn")
    x, weights = _residual(
        cfg, x, lambda h: attn(h, mask=mask, deterministic=not train,
                               return_weights=cfg.return_attention),
        name="self_attention", train=train)
    x, _ = _residual(cfg, x, lambda h: ffn(h, train=train), name="ffn",
                     train=train)
    return x, {"self_attention": weights} if cfg.return_attention else {}


class DecoderLayer(nn.Module):
  """Causal self-attention, cross-attention, FFN (section 3.1)."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, y: jax.Array, encoded: jax.Array,
               cross_mask: jax.Array | None, *, train: bool = False):
    """``y`` ``[B, T, D]``, ``encoded`` ``[B, S, D]``, ``cross_mask`` ``[B, 1, 1, S]``."""
    cfg = self.config
    self_attn = _attention(cfg, "self_attention", decode=cfg.decode)
    cross_attn = _attention(cfg, "cross_attention")
    ffn = FeedForward(cfg, name="ffn")
    y, w_self = _residual(
        cfg, y, lambda h: self_attn(h, is_causal=True, deterministic=not train,
                                    return_weights=cfg.return_attention),
        name="self_attention", train=train)
    y, w_cross = _residual(
        cfg, y, lambda h: cross_attn(h, encoded, mask=cross_mask,
                                     deterministic=not train,
                                     return_weights=cfg.return_attention),
        name="cross_attention", train=train)
    y, _ = _residual(cfg, y, lambda h: ffn(h, train=train), name="ffn",
                     train=train)
    weights = ({"self_attention": w_self, "cross_attention": w_cross}
               if cfg.return_attention else {})
    return y, weights


def _embed_scaled(embedding: nn.Embed, tokens, cfg) -> jax.Array:
  # Embeddings times sqrt(d_model) (section 3.4).
  x = embedding(tokens).astype(cfg.dtype)  # (B, L, D)
  return x * jnp.asarray(math.sqrt(cfg.d_model), cfg.dtype)


class Encoder(nn.Module):
  """Embedding * sqrt(d_model) + positions, dropout, ``N`` encoder layers.

  Attributes:
    config: the sizes.
    embedding: the (shared) token embedding.
    prepend_cls: prepend a learned ``cls`` vector (position 0) for pooling;
      the position table then needs ``length + 1`` entries.
  """
  config: TransformerConfig
  embedding: nn.Module
  prepend_cls: bool = False

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False):
    """``tokens`` ``int[B, L]`` -> ``(encoded [B, L(+1), D], valid [B, L(+1)], weights)``."""
    cfg = self.config
    check_tokens(tokens, "inputs")
    valid = tokens > 0  # (B, L)
    x = _embed_scaled(self.embedding, tokens, cfg)
    if self.prepend_cls:
      cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, cfg.d_model))
      x = jnp.concatenate(
          [jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, x.shape[2])),
           x], axis=1)
      valid = jnp.concatenate(
          [jnp.ones((tokens.shape[0], 1), bool), valid], axis=1)
    x = AddPositions(cfg.max_len, cfg.positions, name="positions")(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    mask = make_padding_mask(valid)  # (B, 1, 1, L)
    weights = {}
    for i in range(cfg.num_encoder_layers):
      x, w = EncoderLayer(cfg, name=f"layer_{i}")(x, mask, train=train)
      weights.update({f"encoder/layer_{i}/{k}": v for k, v in w.items()})
    if cfg.pre_ln:
      x = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                       name="final_norm")(x)
    return x, valid, weights


class Decoder(nn.Module):
  """Embedding * sqrt(d_model) + positions, ``N`` decoder layers, logits.

  The output projection is the transposed (tied) embedding when
  ``config.share_embeddings``, else a Dense layer ``logits``.
  """
  config: TransformerConfig
  embedding: nn.Module

  @nn.compact
  def __call__(self, encoded: jax.Array, inputs_valid: jax.Array,
               targets_in: jax.Array, *, train: bool = False):
    """Decoder logits.

    Args:
      encoded: ``[B, S, D]`` encoder output.
      inputs_valid: bool ``[B, S]``, True at real source tokens.
      targets_in: ``int[B, T]`` decoder inputs (BOS first); one step at a
        time when decoding with the cache.
      train: enables dropout.

    Returns:
      ``(logits float32[B, T, vocab], weights)``.
    """
    cfg = self.config
    check_tokens(targets_in, "targets")
    if encoded.ndim != 3 or encoded.shape[0] != targets_in.shape[0]:
      raise ValueError(
          f"encoded must be [batch, src_len, d_model] with the batch of the "
          f"targets ({targets_in.shape[0]}); got shape {encoded.shape}.")
    y = _embed_scaled(self.embedding, targets_in, cfg)  # (B, T, D)
    y = AddPositions(cfg.max_len, cfg.positions, decode=cfg.decode,
                     name="positions")(y)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=not train)
    cross_mask = make_padding_mask(inputs_valid)  # (B, 1, 1, S)
    weights = {}
    for i in range(cfg.num_decoder_layers):
      y, w = DecoderLayer(cfg, name=f"layer_{i}")(y, encoded, cross_mask,
                                                  train=train)
      weights.update({f"decoder/layer_{i}/{k}": v for k, v in w.items()})
    if cfg.pre_ln:
      y = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                       name="final_norm")(y)
    if cfg.share_embeddings:
      logits = self.embedding.attend(y.astype(cfg.dtype))  # (B, T, V)
    else:
      logits = nn.Dense(cfg.vocab_size, dtype=cfg.dtype, name="logits")(y)
    return logits.astype(jnp.float32), weights
