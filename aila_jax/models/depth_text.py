r"""Text classifiers over depth mixers (IMDB, issue 4), and the LSTM baseline.

All three take ``tokens int32[B, L]`` (0 = padding, right-padded as the text
datasets write them) and return ``(logits float32[B, num_classes],
intermediates)``; ``intermediates['depth_weights']['stage_0']`` is the
``[layers, T]`` matrix of layer-to-layer weights for mixers that have one (row
``t - 1`` is layer ``t``'s distribution over slots ``0 .. T-1``, slot 0 = the
input embedding), ``intermediates['depth_heads']['stage_0']`` the
``[layers, heads, T]`` per-head version (AILA-2, MRLA-base), as in
:mod:`aila_jax.models.depth_backbones`.

* :class:`DepthTextMLP` (``depth_text_mlp``), AILA's natural reading for IMDB
  (the paper's body is not available; each choice is a switch):

  .. math::

     e = \mathrm{pool}_{i:\,x_i \ne 0}\, E x_i, \qquad
     z = \mathrm{DepthMLP}_{\text{mixer}}(e)

  a token embedding :math:`E` (``embed_dim``), a pooling over the non-padding
  tokens (``pooling``: ``'mean'``, ``'max'`` or ``'mean_max'``, the two
  concatenated), optionally fastText-style hashed bigrams
  (``bigram_buckets > 0``: a second table indexed by
  :math:`(31\,x_i + x_{i+1}) \bmod n`, pooled with the unigrams), then
  :class:`~aila_jax.models.depth_backbones.DepthMLP` on the pooled vector: an
  embedding to ``width``, ``depth`` pre-norm MLP blocks joined by the depth
  mixer (AILA-1: every block reads a learned mix of all earlier blocks'
  outputs; AILA-2: a query/key attention over them), LayerNorm and a linear
  head. No sequential work over tokens, so it is much cheaper than an LSTM or
  a Transformer; padding never enters the pooled vector, so the logits do not
  depend on the padded length.
* :class:`DepthTransformerClassifier` (``depth_transformer_classifier``): the
  encoder-only :class:`~aila_jax.models.transformer.TransformerClassifier`
  (same embedding, positions, :class:`~aila_jax.nn.transformer.EncoderLayer`,
  pooling, presets and parameter names) whose connection between encoder
  layers is the depth mixer. Layer :math:`t`'s block output is the layer's
  update with its own skip taken out,

  .. math::

     h_t = \mathrm{EncoderLayer}_t(x_{t-1}) - x_{t-1}, \qquad
     x_t, \text{buffer} = \mathrm{mixer}_t(h_t, \text{buffer})

  (with ``pre_ln=True``, :math:`h_t` is exactly the sum of the attention and
  FFN branches added to the residual stream; with post-LN it is the layer's
  output minus its input), so ``mixer='residual'`` gives
  :math:`x_t = \mathrm{EncoderLayer}_t(x_{t-1})`: the plain encoder, with
  identical parameters. The mixers act on the token states ``[B, L, D]``
  directly (channels last, the mixers' layout): AILA-1 and dense mix whole
  layers with one weight each; AILA-2 with ``pooling='per_token'`` (default)
  is one attention over depth per token (the returned weights are averaged
  over positions, padding included, for plotting only); MRLA and AILA-2 with
  ``pooling='pooled'`` pool over *all* ``L`` positions (the mixers take no
  mask), so with them the logits depend on the padded length: the IMDB
  pipeline pads every review to ``max_len``, which keeps training and
  evaluation consistent. MRLA's value is a depthwise 1-D convolution over the
  sequence and its norm a LayerNorm. The mixers run with the identity as
  activation.
* :class:`LSTMClassifier` (``lstm_classifier``): the baseline. Embedding,
  ``num_layers`` (bi)LSTM layers over the tokens with the true lengths
  (``seq_lengths``: the backward direction starts at each review's last real
  token, padding never enters a state), pooling of the last layer's outputs
  over the non-padding positions (``'mean'``, ``'max'``) or its final states
  (``'last'``: forward at the last token, backward at the first), dropout and
  a linear head.

``max_len`` comes from the dataset with the other model kwargs; the two
models without a position table accept it and ignore it.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aila_jax.attention.dot_product import make_padding_mask
from aila_jax.errors import ConfigError
from aila_jax.models.depth_backbones import DepthMLP
from aila_jax.models.depth_backbones import _collect, _mixer_kwargs  # pylint: disable=protected-access
from aila_jax.models.transformer import POOLINGS, TransformerClassifier, make_config
from aila_jax.models.transformer import _embedding  # pylint: disable=protected-access
from aila_jax.nn import depth as depth_nn
from aila_jax.nn.transformer import AddPositions, EncoderLayer, TransformerConfig, check_tokens
from aila_jax.nn.transformer import _embed_scaled  # pylint: disable=protected-access

__all__ = ["DepthTextMLP", "DepthTransformerClassifier", "LSTMClassifier", "TEXT_POOLINGS",
           "LSTM_POOLINGS"]

TEXT_POOLINGS = ("mean", "max", "mean_max")
LSTM_POOLINGS = ("mean", "max", "last")
_BIGRAM_PRIME = 31


def _positive(name: str, value, minimum: int = 1) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ConfigError(f"config.model.{name}: expected an int >= {minimum}, got {value!r}")


def _rate(name: str, value) -> None:
  if not 0.0 <= float(value) < 1.0:
    raise ConfigError(f"config.model.{name}: expected a rate in [0, 1), got {value!r}")


def masked_pool(x: jax.Array, valid: jax.Array, kind: str) -> jax.Array:
  """Mean or max of ``x [B, L, D]`` over the positions where ``valid [B, L]``; 0 for empty rows."""
  if kind == "mean":
    w = valid.astype(x.dtype)[..., None]  # (B, L, 1)
    return (x * w).sum(1) / jnp.maximum(w.sum(1), 1.0)
  if kind == "max":
    m = jnp.where(valid[..., None], x, -jnp.inf).max(1)  # (B, D)
    return jnp.where(valid.any(1, keepdims=True), m, 0.0)
  raise ConfigError(f"config.model.pooling: expected 'mean' or 'max', got {kind!r}")


class DepthTextMLP(nn.Module):
  """Bag of token embeddings, pooled over non-padding tokens, then a DepthMLP; see the module docstring.

  Attributes:
    vocab_size: vocabulary size (from the dataset), id 0 = padding.
    num_classes: number of classes (from the dataset).
    max_len: from the dataset; unused (no position table).
    embed_dim: token embedding width.
    pooling: ``'mean'``, ``'max'`` or ``'mean_max'`` over the non-padding tokens.
    bigram_buckets: > 0: also pool hashed-bigram embeddings (a table of this many rows).
    width, depth, expansion: the DepthMLP's width, number of blocks, FFN expansion.
    mixer, mixer_kwargs: the depth mixer (:data:`aila_jax.nn.depth.MIXERS`) and its options.
    drop_path: stochastic depth rate of the mixers.
    dropout_rate: dropout inside the MLP blocks.
    embed_dropout: dropout on the pooled vector.
    dtype: computation dtype (parameters stay float32; pooling sums in float32).

  Example:

  >>> model = DepthTextMLP(vocab_size=11, num_classes=2, width=8, depth=2, mixer="aila1")
  >>> x = jnp.array([[4, 5, 6, 0], [7, 0, 0, 0]])
  >>> variables = model.init(jax.random.key(0), x)
  >>> logits, inter = model.apply(variables, x)
  >>> logits.shape, inter["depth_weights"]["stage_0"].shape
  ((2, 2), (2, 3))
  """
  vocab_size: int
  num_classes: int
  max_len: int | None = None
  embed_dim: int = 128
  pooling: str = "mean"
  bigram_buckets: int = 0
  width: int = 256
  depth: int = 4
  expansion: int = 2
  mixer: str = "aila1"
  mixer_kwargs: Any = None
  drop_path: float = 0.0
  dropout_rate: float = 0.0
  embed_dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False):
    """``tokens int[B, L]`` -> ``(logits float32[B, num_classes], intermediates)``."""
    if self.pooling not in TEXT_POOLINGS:
      raise ConfigError(f"config.model.pooling: expected one of {TEXT_POOLINGS}, got {self.pooling!r}")
    for key in ("vocab_size", "num_classes", "embed_dim", "width", "depth", "expansion"):
      _positive(key, getattr(self, key))
    _positive("bigram_buckets", self.bigram_buckets, 0)
    for key in ("drop_path", "dropout_rate", "embed_dropout"):
      _rate(key, getattr(self, key))
    depth_nn.check_mixer_kwargs(self.mixer, dict(self.mixer_kwargs or {}))
    check_tokens(tokens, "tokens")
    valid = tokens > 0  # (B, L)
    emb = nn.Embed(self.vocab_size, self.embed_dim, name="embedding")(tokens)  # (B, L, E) float32
    if self.bigram_buckets:
      pair = (tokens[:, :-1] * _BIGRAM_PRIME + tokens[:, 1:]) % self.bigram_buckets  # (B, L-1)
      bi = nn.Embed(self.bigram_buckets, self.embed_dim, name="bigram_embedding")(pair)
      emb = jnp.concatenate([emb, bi], axis=1)  # (B, 2L-1, E)
      valid = jnp.concatenate([valid, valid[:, :-1] & valid[:, 1:]], axis=1)
    kinds = ("mean", "max") if self.pooling == "mean_max" else (self.pooling,)
    pooled = jnp.concatenate([masked_pool(emb, valid, k) for k in kinds], axis=-1)  # (B, E or 2E)
    pooled = nn.Dropout(self.embed_dropout)(pooled.astype(self.dtype), deterministic=not train)
    logits, inter = DepthMLP(self.num_classes, width=self.width, depth=self.depth, expansion=self.expansion,
                             mixer=self.mixer, mixer_kwargs=self.mixer_kwargs, drop_path=self.drop_path,
                             dropout_rate=self.dropout_rate, dtype=self.dtype, name="mlp")(pooled, train=train)
    return logits, {"pooled": pooled, **inter}


class DepthEncoder(nn.Module):
  """:class:`aila_jax.nn.transformer.Encoder` with a depth mixer between the layers.

  Same submodule names as the plain encoder (``positions``, ``layer_{i}``,
  ``final_norm``, ``cls``), plus ``mixer_{i}``; see the module docstring for
  what the mixer receives.
  """
  config: TransformerConfig
  embedding: nn.Module
  prepend_cls: bool = False
  mixer: str = "residual"
  mixer_kwargs: Any = None
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False):
    """``tokens int[B, L]`` -> ``(encoded [B, L(+1), D], valid [B, L(+1)], intermediates)``."""
    cfg = self.config
    check_tokens(tokens, "tokens")
    mixer_cls = depth_nn.mixer_class(self.mixer)
    mkw = _mixer_kwargs(self.mixer, self.mixer_kwargs)
    valid = tokens > 0  # (B, L)
    x = _embed_scaled(self.embedding, tokens, cfg)
    if self.prepend_cls:
      cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, cfg.d_model))
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, x.shape[2])), x], axis=1)
      valid = jnp.concatenate([jnp.ones((tokens.shape[0], 1), bool), valid], axis=1)
    x = AddPositions(cfg.max_len, cfg.positions, name="positions")(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)  # (B, L, D)
    mask = make_padding_mask(valid)  # (B, 1, 1, L)
    n = cfg.num_encoder_layers
    buffer = mixer_cls.init_buffer(x, n + 1)
    inter, depth_weights = {}, []
    for i in range(n):
      z, w = EncoderLayer(cfg, name=f"layer_{i}")(x, mask, train=train)
      inter.update({f"encoder/layer_{i}/{k}": v for k, v in w.items()})
      h = z - x  # the layer's update, its own skip taken out
      mixer = depth_nn.make_mixer(self.mixer, layer=i + 1, depth=n + 1, activation="none",
                                  drop_path=self.drop_path, norm="layer", dtype=cfg.dtype,
                                  name=f"mixer_{i}", **mkw)
      x, buffer, dw = mixer(h, buffer, train=train)
      depth_weights.append(dw)
    _collect(depth_weights, inter, "stage_0")
    if cfg.pre_ln:
      x = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype, name="final_norm")(x)
    return x, valid, inter


class DepthTransformerClassifier(TransformerClassifier):
  """:class:`~aila_jax.models.transformer.TransformerClassifier` with a depth mixer between encoder layers.

  Attributes (beyond the parent's):
    mixer: a name of :data:`aila_jax.nn.depth.MIXERS`; ``'residual'`` is the plain encoder.
    mixer_kwargs: the mixer's options (e.g. ``{'num_heads': 4}`` for AILA-2).
    drop_path: stochastic depth on each layer's update (MRLA: on the attention branch).

  Called like the parent: ``model.apply(variables, tokens, train=...)``; with
  ``preset='transformer_tiny'`` and ``mixer='aila1'`` the intermediates hold
  ``depth_weights['stage_0']`` of shape ``[2, 3]`` (2 layers, 3 slots).
  """
  mixer: str = "residual"
  mixer_kwargs: Any = None
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False):
    """``tokens int[B, L]`` -> ``(logits float32[B, num_classes], intermediates)``."""
    if self.pooling not in POOLINGS:
      raise ConfigError(f"config.model.pooling: expected one of {POOLINGS}, got {self.pooling!r}")
    _positive("num_classes", self.num_classes)
    _rate("drop_path", self.drop_path)
    cls = self.pooling == "cls"
    cfg = make_config(self, max_len=self.max_len + int(cls))
    check_tokens(tokens, "tokens")
    h, valid, inter = DepthEncoder(cfg, _embedding(cfg, "embedding"), prepend_cls=cls, mixer=self.mixer,
                                   mixer_kwargs=self.mixer_kwargs, drop_path=self.drop_path,
                                   name="encoder")(tokens, train=train)  # (B, L', D)
    pooled = h[:, 0] if cls else masked_pool(h, valid, "mean")  # (B, D)
    pooled = nn.Dropout(cfg.dropout_rate)(pooled, deterministic=not train)
    logits = nn.Dense(self.num_classes, dtype=cfg.dtype, name="head")(pooled)
    return logits.astype(jnp.float32), {"pooled": pooled, **inter}


class LSTMClassifier(nn.Module):
  """Embedding, (bi)LSTM layers over the true lengths, pooling, linear head; see the module docstring.

  Attributes:
    vocab_size: vocabulary size (from the dataset), id 0 = padding.
    num_classes: number of classes (from the dataset).
    max_len: from the dataset; unused.
    embed_dim: token embedding width.
    hidden: LSTM units per direction.
    num_layers: stacked LSTM layers.
    bidirectional: a forward and a backward LSTM per layer (outputs concatenated).
    pooling: ``'mean'`` / ``'max'`` of the last layer's outputs over the real
      tokens, or ``'last'``: the final hidden states.
    dropout_rate: dropout on the embeddings, between layers and on the pooled vector.
    unroll: time steps per iteration of the scan (speed only).
    dtype: computation dtype.

  Example:

  >>> model = LSTMClassifier(vocab_size=11, num_classes=2, embed_dim=8, hidden=4)
  >>> x = jnp.array([[4, 5, 6, 0], [7, 0, 0, 0]])
  >>> variables = model.init(jax.random.key(0), x)
  >>> model.apply(variables, x)[0].shape
  (2, 2)
  """
  vocab_size: int
  num_classes: int
  max_len: int | None = None
  embed_dim: int = 128
  hidden: int = 128
  num_layers: int = 1
  bidirectional: bool = True
  pooling: str = "max"
  dropout_rate: float = 0.0
  unroll: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False):
    """``tokens int[B, L]`` -> ``(logits float32[B, num_classes], intermediates)``."""
    if self.pooling not in LSTM_POOLINGS:
      raise ConfigError(f"config.model.pooling: expected one of {LSTM_POOLINGS}, got {self.pooling!r}")
    for key in ("vocab_size", "num_classes", "embed_dim", "hidden", "num_layers", "unroll"):
      _positive(key, getattr(self, key))
    _rate("dropout_rate", self.dropout_rate)
    check_tokens(tokens, "tokens")
    valid = tokens > 0  # (B, L)
    lengths = valid.sum(1).astype(jnp.int32)  # (B,): right padding
    x = nn.Embed(self.vocab_size, self.embed_dim, name="embedding")(tokens).astype(self.dtype)  # (B, L, E)
    drop = nn.Dropout(self.dropout_rate)
    x = drop(x, deterministic=not train)
    inter = {}

    def rnn(name):
      return nn.RNN(nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype), unroll=self.unroll, name=name)

    for i in range(self.num_layers):
      if i:
        x = drop(x, deterministic=not train)
      if self.bidirectional:
        (fwd, bwd), x = nn.Bidirectional(rnn(f"lstm{i}_fwd"), rnn(f"lstm{i}_bwd"), name=f"bilstm{i}")(
            x, seq_lengths=lengths, return_carry=True)  # (B, L, 2H)
        last = jnp.concatenate([fwd[1], bwd[1]], axis=-1)  # carries are (c, h)
      else:
        carry, x = rnn(f"lstm{i}")(x, seq_lengths=lengths, return_carry=True)  # (B, L, H)
        last = carry[1]
      inter[f"layer_{i}"] = x
    pooled = last if self.pooling == "last" else masked_pool(x, valid, self.pooling)  # (B, H or 2H)
    inter["features"] = pooled
    pooled = drop(pooled, deterministic=not train)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(pooled)
    return logits.astype(jnp.float32), inter
