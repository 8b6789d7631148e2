r"""Transformer assemblies by preset: the encoder-decoder and an encoder-only classifier.

Presets (``preset=`` keyword; any size field given explicitly overrides it):

================== ======= ===== ====== ======== ======= ==================
preset             d_model heads d_ff   layers   dropout  source
================== ======= ===== ====== ======== ======= ==================
transformer_base   512     8     2048   6 + 6    0.1      paper, Table 3
transformer_big    1024    16    4096   6 + 6    0.3      paper, Table 3
transformer_small  256     4     1024   3 + 3    0.1      this library
transformer_tiny   64      4     128    2 + 2    0.1      this library (CI)
================== ======= ===== ====== ======== ======= ==================

Both models are called like every model of :mod:`aila_jax.models`, returning
``(outputs, intermediates)``:

* ``EncoderDecoder``: ``model.apply(variables, inputs, targets, train=...)``
  with ``inputs int32[B, S]`` and ``targets int32[B, T]`` (0 = padding,
  targets end with EOS and do not start with BOS); the decoder reads
  ``shift_right(targets)`` (BOS = 1 first) and the model returns
  ``logits float32[B, T, vocab]``. ``encode``/``decode`` methods serve
  :mod:`aila_jax.models.decoding`.
* ``TransformerClassifier``: ``model.apply(variables, tokens, train=...)`` ->
  ``logits float32[B, num_classes]``, pooling over non-padding tokens (mean)
  or a learned CLS vector.

With ``return_attention=True`` the intermediates hold every attention map,
``'encoder/layer_{i}/self_attention'``, ``'decoder/layer_{i}/self_attention'``
and ``'decoder/layer_{i}/cross_attention'``, each ``[B, heads, q_len,
kv_len]``.

Reference:
  Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
  https://arxiv.org/abs/1706.03762.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aila_jax.errors import ConfigError
from aila_jax.nn.transformer import (POSITION_KINDS, Decoder, Encoder,
                                     TransformerConfig, check_tokens,
                                     shift_right)

__all__ = ["PRESETS", "TransformerSizes", "EncoderDecoder",
           "TransformerClassifier", "make_config"]

PRESETS: dict[str, dict[str, Any]] = {
    "transformer_base": dict(d_model=512, num_heads=8, d_ff=2048,
                             num_encoder_layers=6, num_decoder_layers=6,
                             dropout_rate=0.1),
    "transformer_big": dict(d_model=1024, num_heads=16, d_ff=4096,
                            num_encoder_layers=6, num_decoder_layers=6,
                            dropout_rate=0.3),
    "transformer_small": dict(d_model=256, num_heads=4, d_ff=1024,
                              num_encoder_layers=3, num_decoder_layers=3,
                              dropout_rate=0.1),
    "transformer_tiny": dict(d_model=64, num_heads=4, d_ff=128,
                             num_encoder_layers=2, num_decoder_layers=2,
                             dropout_rate=0.1),
}

# Model fields that override the preset when not None.
_OVERRIDES = ("d_model", "num_heads", "num_kv_heads", "d_ff",
              "num_encoder_layers", "num_decoder_layers", "dropout_rate",
              "attention_dropout_rate", "relu_dropout_rate", "positions",
              "pre_ln", "share_embeddings")


def make_config(module, *, max_len: int, **extra) -> TransformerConfig:
  """The :class:`TransformerConfig` of ``module``'s preset and overrides, validated.

  Raises:
    ConfigError: unknown preset or positions, ``d_model`` not divisible by
      ``num_heads``, ``num_heads`` not a multiple of ``num_kv_heads``, or a
      non-positive size, naming the ``config.model`` key.
  """
  if module.preset not in PRESETS:
    raise ConfigError(f"config.model.preset: unknown preset {module.preset!r}; "
                      f"expected one of {sorted(PRESETS)}")
  kw = dict(PRESETS[module.preset])
  for name in _OVERRIDES:
    value = getattr(module, name)
    if value is not None:
      kw[name] = value
  kw.update(extra)
  cfg = TransformerConfig(vocab_size=module.vocab_size, max_len=max_len,
                          dtype=module.dtype,
                          return_attention=module.return_attention,
                          implementation=module.implementation, **kw)
  for key in ("vocab_size", "max_len", "d_model", "num_heads", "d_ff"):
    if int(getattr(cfg, key)) < 1:
      raise ConfigError(f"config.model.{key}: expected an int >= 1, got "
                        f"{getattr(cfg, key)!r}")
  if cfg.d_model % cfg.num_heads:
    raise ConfigError(
        f"config.model.num_heads: d_model ({cfg.d_model}) must be divisible "
        f"by num_heads ({cfg.num_heads}) so that head_dim = d_model / "
        f"num_heads is an integer")
  if cfg.num_kv_heads is not None and (
      cfg.num_kv_heads < 1 or cfg.num_heads % cfg.num_kv_heads):
    raise ConfigError(
        f"config.model.num_kv_heads: num_heads ({cfg.num_heads}) must be a "
        f"multiple of num_kv_heads ({cfg.num_kv_heads})")
  if cfg.positions not in POSITION_KINDS:
    raise ConfigError(f"config.model.positions: expected one of "
                      f"{POSITION_KINDS}, got {cfg.positions!r}")
  for key in ("dropout_rate", "attention_dropout_rate", "relu_dropout_rate"):
    if not 0.0 <= getattr(cfg, key) < 1.0:
      raise ConfigError(f"config.model.{key}: expected a number in [0, 1), "
                        f"got {getattr(cfg, key)!r}")
  return cfg


def _embedding(cfg: TransformerConfig, name: str) -> nn.Embed:
  # N(0, d^-1/2) so that embedding * sqrt(d) has unit scale (tensor2tensor).
  return nn.Embed(cfg.vocab_size, cfg.d_model, dtype=cfg.dtype,
                  embedding_init=nn.initializers.normal(cfg.d_model**-0.5),
                  name=name)


class TransformerSizes(nn.Module):
  """The preset overrides and switches shared by the Transformer assemblies.

  Each size field overrides the preset when not None (see
  :class:`aila_jax.nn.transformer.TransformerConfig`); subclasses add their
  own fields as keyword-only arguments.
  """
  d_model: int | None = None
  num_heads: int | None = None
  num_kv_heads: int | None = None
  d_ff: int | None = None
  num_encoder_layers: int | None = None
  num_decoder_layers: int | None = None
  dropout_rate: float | None = None
  attention_dropout_rate: float | None = None
  relu_dropout_rate: float | None = None
  positions: str | None = None
  pre_ln: bool | None = None
  share_embeddings: bool | None = None
  dtype: Any = jnp.float32
  return_attention: bool = False
  implementation: str | None = None


class EncoderDecoder(TransformerSizes, kw_only=True):
  r"""The Transformer encoder-decoder (paper, figure 1).

  .. math::

     p(y_t \mid y_{<t}, x) = \mathrm{softmax}\big(
       \mathrm{Decoder}(\mathrm{Encoder}(E x \sqrt{d} + PE),\;
       E\,\mathrm{shift}(y) \sqrt{d} + PE)\, E^\top\big)_{y_t}

  with one embedding matrix :math:`E` shared by source, target and output
  (section 3.4) when ``share_embeddings``.

  Attributes:
    vocab_size: shared vocabulary size (from the dataset), 0 = padding.
    max_len: position table size (longest source or target sequence).
    preset: one of :data:`PRESETS`.
    d_model, num_heads, num_kv_heads, d_ff, num_encoder_layers,
    num_decoder_layers, dropout_rate, attention_dropout_rate,
    relu_dropout_rate, positions, pre_ln, share_embeddings: override the
      preset when not None (see :class:`aila_jax.nn.transformer.TransformerConfig`).
    dtype: computation dtype.
    return_attention: put every attention map into the intermediates.
    decoding: decoding mode with a KV cache in the ``'cache'`` collection
      (flax's ``decode=True`` idiom, renamed because :meth:`decode` is a
      method); use through :mod:`aila_jax.models.decoding`.
    implementation: attention implementation (None, 'xla', 'cudnn').
    bos_id: the BOS id that starts the decoder input.

  Example:

  >>> model = EncoderDecoder(vocab_size=11, max_len=8, preset="transformer_tiny")
  >>> x, y = jnp.ones((2, 5), jnp.int32), jnp.ones((2, 6), jnp.int32)
  >>> variables = model.init(jax.random.key(0), x, y)
  >>> logits, _ = model.apply(variables, x, y)
  >>> logits.shape
  (2, 6, 11)
  """
  vocab_size: int
  max_len: int = 256
  preset: str = "transformer_base"
  decoding: bool = False
  bos_id: int = 1

  def setup(self):
    cfg = make_config(self, max_len=self.max_len, decode=self.decoding)
    self.config = cfg
    if cfg.share_embeddings:
      src = tgt = _embedding(cfg, "embedding")
    else:
      src, tgt = (_embedding(cfg, "source_embedding"),
                  _embedding(cfg, "target_embedding"))
    self.encoder = Encoder(cfg, src)
    self.decoder = Decoder(cfg, tgt)

  def encode(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
    """``inputs int[B, S]`` -> encoded ``[B, S, d_model]``."""
    return self.encoder(inputs, train=train)[0]

  def decode(self, encoded: jax.Array, inputs_mask: jax.Array,
             targets_in: jax.Array, *, train: bool = False) -> jax.Array:
    """Logits ``float32[B, T, vocab]`` of the decoder inputs ``targets_in``.

    Args:
      encoded: ``[B, S, d_model]`` from :meth:`encode`.
      inputs_mask: bool ``[B, S]``, True at real source tokens
        (``inputs > 0``).
      targets_in: ``int[B, T]`` decoder inputs, already shifted (BOS first);
        with ``decoding=True`` the next ``T`` tokens after the cached ones.
      train: enables dropout.
    """
    return self.decoder(encoded, inputs_mask, targets_in, train=train)[0]

  def __call__(self, inputs: jax.Array, targets: jax.Array, *,
               train: bool = False):
    """``(logits float32[B, T, vocab], intermediates)`` of teacher forcing."""
    check_tokens(inputs, "inputs")
    check_tokens(targets, "targets")
    if inputs.shape[0] != targets.shape[0]:
      raise ValueError(f"inputs {inputs.shape} and targets {targets.shape} "
                       f"must have the same batch size.")
    encoded, valid, w_enc = self.encoder(inputs, train=train)
    targets_in = targets if self.decoding else shift_right(targets, self.bos_id)
    logits, w_dec = self.decoder(encoded, valid, targets_in, train=train)
    return logits, {"encoded": encoded, **w_enc, **w_dec}


POOLINGS = ("mean", "cls")


class TransformerClassifier(TransformerSizes, kw_only=True):
  r"""Encoder-only Transformer classifier.

  .. math::

     h = \mathrm{Encoder}(E x \sqrt{d} + PE), \qquad
     z = W\,\mathrm{pool}(h) + b

  with ``pool`` the mean over non-padding positions (``pooling='mean'``) or
  the output at a learned CLS vector prepended at position 0
  (``pooling='cls'``; the position table then has ``max_len + 1`` entries).

  Attributes:
    vocab_size: vocabulary size (from the dataset), 0 = padding.
    num_classes: number of classes (from the dataset).
    max_len: longest token sequence.
    preset: one of :data:`PRESETS` (only the encoder sizes are used).
    pooling: ``'mean'`` or ``'cls'``.
    (size overrides as in :class:`EncoderDecoder`.)

  Example:

  >>> model = TransformerClassifier(vocab_size=11, num_classes=3, max_len=8,
  ...                               preset="transformer_tiny", pooling="cls")
  >>> x = jnp.array([[4, 5, 6, 0], [7, 0, 0, 0]])
  >>> variables = model.init(jax.random.key(0), x)
  >>> model.apply(variables, x)[0].shape
  (2, 3)
  """
  vocab_size: int
  num_classes: int
  max_len: int = 512
  preset: str = "transformer_small"
  pooling: str = "mean"

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False):
    """``tokens int[B, L]`` -> ``(logits float32[B, num_classes], intermediates)``."""
    if self.pooling not in POOLINGS:
      raise ConfigError(f"config.model.pooling: expected one of {POOLINGS}, "
                        f"got {self.pooling!r}")
    if self.num_classes < 1:
      raise ConfigError(f"config.model.num_classes: expected an int >= 1, "
                        f"got {self.num_classes!r}")
    cls = self.pooling == "cls"
    cfg = make_config(self, max_len=self.max_len + int(cls))
    check_tokens(tokens, "tokens")
    h, valid, weights = Encoder(cfg, _embedding(cfg, "embedding"),
                                prepend_cls=cls, name="encoder")(
                                    tokens, train=train)  # (B, L', D)
    if cls:
      pooled = h[:, 0]
    else:
      w = valid.astype(h.dtype)[..., None]  # (B, L, 1)
      pooled = (h * w).sum(1) / jnp.maximum(w.sum(1), 1.0)  # (B, D)
    pooled = nn.Dropout(cfg.dropout_rate)(pooled, deterministic=not train)
    logits = nn.Dense(self.num_classes, dtype=cfg.dtype, name="head")(pooled)
    return logits.astype(jnp.float32), {"pooled": pooled, **weights}

