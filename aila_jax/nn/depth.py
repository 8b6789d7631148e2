r"""Depth mixers: one interface for "how does layer t combine the outputs of layers < t".

A backbone (``aila_jax.models.depth_backbones``) is a stack of blocks
:math:`F_t`. It keeps a *depth buffer* of the representations
:math:`x_0, x_1, \dots` it has built (slot 0 = the stage's input embedding),
and after block :math:`t` computes :math:`h_t = F_t(x_{t-1})` it calls layer
:math:`t`'s mixer::

    x_t, buffer, weights = mixer(h_t, buffer, train=train)

The mixer returns the next input :math:`x_t`, the updated buffer (it writes
slot ``t`` itself, because MRLA's cache holds keys and values computed with
each block's own parameters) and its attention distribution over depth
(``None`` for mixers without one).

**The buffer** is a dict made by the mixer class's ``init_buffer(x0, T)``
(``T`` = the stage's blocks + 1). Mixers that read only :math:`x_{t-1}`
(``none``, ``residual``, ``mrla_light``) keep ``{"prev": x_{t-1}}``. Mixers
that read every earlier layer (``uses_history``: ``dense``, ``aila1``,
``aila2``, ``dla``) keep ``{"x": (x_0, ..., x_{t-1})}``, a tuple of per-slot
``[B, *feature]`` arrays: layer :math:`t` reads the slice of its readable slots
(:func:`~aila_jax.attention.depth.readable_slots`) and appends :math:`x_t`.
MRLA-base keeps ``prev`` and its cache of keys ``"k"`` and values ``"v"``
as tuples of slots ``1 .. t-1`` (it appends slot :math:`t` and reads
``1 .. t``). The layer index is static (the backbones unroll each stage in
Python), so nothing is padded: the weighted sums are Python sums over the
slots, which XLA fuses into one loop, and in the backward pass each slot gets
its own gradient (no ``[B, T, ...]`` buffer written with dynamic updates and
summed over layers). A mixer checks that the buffer holds exactly the
:math:`t` slots written before layer :math:`t` (call a stage's mixers in
order on the buffer from ``init_buffer``). The weights over depth are padded
to all ``T`` slots (:func:`~aila_jax.attention.depth.pad_depth`). Mixers sow
what is worth plotting into the ``intermediates`` collection
(``depth_weights`` and, for MRLA-light, ``gates`` and ``lambda``).

Mixers (:data:`MIXERS`), with :math:`\phi` the backbone's activation (ReLU in a
ResNet, identity in the MLP/LSTM) and :math:`\mathrm{DP}` drop-path:

============  ================================================================================
``none``      :math:`x_t = \phi(h_t)` (a plain stack, no skip)
``residual``  :math:`x_t = \phi(h_t + x_{t-1})` (He et al. 2016)
``dense``     :math:`x_t = \phi(h_t + \frac{1}{|V_t|}\sum_{i \in V_t} x_i)`: every earlier layer with
              equal, fixed weights (DenseNet-style aggregation at constant width: DenseNet's
              concatenation would grow the width; here the widths must agree)
``aila1``     :math:`x_t = \phi(h_t + [x_{t-1}] + \sum_{i \in V_t} a_{t,i} x_i)`, learned
              :math:`a_{t,\cdot}` = ``normalization`` of per-layer logits (AILA architecture 1)
``aila2``     :math:`x_t = \phi(h_t + [x_{t-1}] + \mathrm{MHA}_{\text{depth}}(q_t, \{k_i, x_i\}_{i\in V_t}))`
              (AILA architecture 2, multi-head attention with the layers as keys)
``mrla_base`` :math:`o_t = \phi(h_t + x_{t-1})`, :math:`x_t = o_t + \mathrm{DP}(\phi(\mathrm{BN}(
              \sum_{i \le t} \mathrm{softmax}_i(q_t k_i^\top/\sqrt d)\, v_i)))` over the stage's cache
``mrla_light`` :math:`o_t = \phi(h_t + x_{t-1})`, :math:`x_t = o_t + \mathrm{DP}(\mathrm{BN}(
              \lambda_t \odot x_{t-1} + \sigma(q_t k_t^\top/\sqrt d)\, v_t))`
``dla``       :math:`o_t = \phi(h_t + x_{t-1})`; at an aggregation node :math:`x_t = \phi(\mathrm{N}(
              W[o_t; x_{s_1}; \dots; x_{s_k}]) + [o_t])` (DLA's Root: concat, 1x1, norm, residual),
              else :math:`x_t = o_t`; nodes and slots :math:`s_i` from ``grouping``: ``tree`` (DLA's
              HDA binary tree, :func:`dla_root_slots`) or ``all`` (every earlier slot, every layer)
============  ================================================================================

:math:`[x_{t-1}]` is present when ``residual=True``. Drop-path acts on the
attention branch in the MRLA mixers (as in the official code) and on the block
output :math:`h_t` in the others (stochastic depth, Huang et al. 2016).

**Choices where AILA's text is silent** (arXiv 2503.22742's body is not
available; each is a switch):

* ``include_input`` (default True): the input embedding :math:`x_0` is one
  of the layers read (a key).
* ``normalization`` (AILA-1, default ``softmax``): how learned logits become
  weights (``softmax``, ``sum``, ``l1``, ``none``); logits start at zero
  (uniform weights), or, for ``none``, one-hot on the previous layer (the
  plain residual network at initialisation).
* ``residual`` (default False): keep the plain skip :math:`x_{t-1}` beside the
  learned mix; by default the mix replaces it.
* ``query`` (AILA-2, default ``block``): the query comes from the current
  block output :math:`h_t` (``block``) or from its input :math:`x_{t-1}`
  (``previous``); keys from :math:`W_k x_i`, values are the :math:`x_i`
  themselves (so the mix stays a convex combination of earlier layers, like AILA-1).
* ``pooling`` (AILA-2, default ``per_token``): one distribution per
  position, or one per example from position-averaged descriptors (``pooled``).
* ``qk_norm`` (AILA-2, default True): LayerNorm on query and key inputs.

**MRLA as in the official code** (github joyfang1106/MRLA,
``resnet/models/resnet_mrla_{base,light}.py`` and
``modules/mrla_{base,light}_module.py``): the query and key are ECA-style 1-D
convolutions (kernel :func:`~aila_jax.attention.depth.eca_kernel_size`, no
bias) over the channels of the globally average-pooled block output; the
value is a 3x3 depthwise convolution (no bias) of the block output; heads of
``dim_per_head`` channels (16 for base, 32 for light; a stage narrower than one
head uses a single head); MRLA-base's cache restarts at each stage and
includes the current block; MRLA-light's :math:`\lambda_t \in \mathbb{R}^C` is
initialised from a standard normal, and :math:`o_{t-1}` is the block's input
(the official ``identity``). On sequences the depthwise convolution is 1-D
(kernel 3); on vectors it is a per-channel scale.

**ELA skips** (arXiv 2503.06473, reconstructed from its abstract; see
:mod:`aila_jax.train.ela`). The mixers with a distribution over depth
(:data:`SKIPPABLE`: ``aila1``, ``aila2``, ``mrla_base``) return, in the
buffer, their retrieval :math:`r_t` (the mix before the block's own
residual/BN/activation: :math:`\sum_i a_{t,i} x_i` for AILA,
:math:`\sum_i \mathrm{softmax}_i(\cdot)\, v_i` for MRLA-base) as
``buffer["retrieval"]`` and their padded distribution as ``buffer["weights"]``.
A mixer built with ``skip=True`` (set per block by the backbone's
``skip_layers``) uses :math:`r_{t-1}` and block :math:`t-1`'s distribution
instead of computing its own attention (the weighted sum and, for AILA-2 and
MRLA-base, the query-key logits and softmax), which XLA then drops from the
compiled step. With ``skip_append=True`` (default) a skipped MRLA-base block
still computes and caches its key and value for the later blocks; with
``False`` it caches nothing (``None`` slots, which later blocks do not read).
AILA's buffer holds layer outputs, which a skipped block still produces, so
``skip_append`` applies to MRLA-base only. Block 1 of a stage has no earlier
retrieval and cannot be skipped. The parameters do not depend on ``skip``.
"""

from __future__ import annotations

import functools
import itertools
import operator
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from aila_jax.attention import depth as depth_attn
from aila_jax.errors import ConfigError

Buffer = dict[str, Any]  # 'prev': [B, *F]; 'x', 'k', 'v': tuples of per-slot arrays (module docstring)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "gelu": nn.gelu, "tanh": jnp.tanh, "none": lambda x: x}


def drop_path(module: nn.Module, x: jax.Array, rate: float, *, train: bool) -> jax.Array:
  r"""Stochastic depth: drops ``x`` for whole examples with probability ``rate``.

  .. math:: \mathrm{DP}(x)_b = x_b\, \xi_b / (1 - p), \qquad \xi_b \sim \mathrm{Bernoulli}(1 - p)

  Uses the module's ``dropout`` RNG stream (Huang et al., "Deep Networks with
  Stochastic Depth", ECCV 2016).
  """
  if not train or rate == 0.0:
    return x
  keep = 1.0 - rate
  xi = jax.random.bernoulli(module.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(xi, x / keep, jnp.zeros_like(x))


def _check_same(name: str, layer: int, h: jax.Array, ref: jax.Array, what: str) -> None:
  if h.shape != ref.shape:
    raise ConfigError(
        f"config.model.mixer: depth mixer {name!r} at layer {layer} got a block output of shape "
        f"{h.shape} but {what} has shape {ref.shape}; the layers a depth mixer combines must have the "
        "same width and resolution (mix within a stage, or make the widths equal)")


def _heads_for(name: str, channels: int, dim_per_head: int) -> int:
  if channels < dim_per_head:
    return 1
  if channels % dim_per_head:
    raise ConfigError(f"config.model.mixer_kwargs.dim_per_head: mixer {name!r} needs the width {channels} "
                      f"to be a multiple of dim_per_head={dim_per_head}")
  return channels // dim_per_head


class _Mixer(nn.Module):
  """Fields shared by every mixer."""
  layer: int                    # t >= 1: which slot this mixer writes
  depth: int                    # T: slots of the buffer (the stage's blocks + 1)
  activation: str = "relu"      # phi, the backbone's activation after the addition
  drop_path: float = 0.0        # stochastic depth rate (see the module docstring)
  norm: str = "batch"           # MRLA branch norm: 'batch' (CNN), 'layer' (sequences), 'none'
  dtype: Any = jnp.float32
  skip: bool = False            # ELA: reuse the previous block's retrieval (SKIPPABLE mixers; set per block)
  skip_append: bool = True      # ELA, MRLA-base: a skipped block still appends its own key/value

  uses_history = False           # does the buffer hold every earlier layer ('x'), or only x_{t-1} ('prev')?

  @classmethod
  def init_buffer(cls, x0: jax.Array, depth: int) -> Buffer:
    """The buffer before layer 1: ``{"x": (x0,)}`` (history mixers) or ``{"prev": x0}``.

    ``depth`` (the stage's slots ``T``) is unused, since the tuple grows by one
    slot per layer; it stays so that every mixer class is called alike.
    """
    del depth
    if not cls.uses_history:
      return {"prev": x0}
    return {"x": (x0,)}

  def _prev(self, buffer: Buffer) -> jax.Array:
    return buffer["prev"] if "prev" in buffer else buffer["x"][-1]

  def _write(self, buffer: Buffer, x: jax.Array) -> Buffer:
    out = dict(buffer)
    if "x" in buffer:
      out["x"] = tuple(buffer["x"]) + (x.astype(buffer["x"][0].dtype),)
    else:
      out["prev"] = x
    return out

  def _act(self, x):
    return ACTIVATIONS[self.activation](x)

  def _mix(self, weights, buffer, include_input):
    """``sum_i weights[i] x_i`` over the readable slots only (the others have zero weight)."""
    sl = depth_attn.readable_slots(self.layer, self.depth, include_input=include_input)
    barrier = getattr(self, "slot_barrier", None)
    if barrier not in (None, True, False):
      raise ConfigError(f"config.model.mixer_kwargs.slot_barrier: expected True, False or None (the library "
                        f"default, True), got {barrier!r}")
    return depth_attn.mix_depth(weights[sl], buffer["x"][sl], barrier=barrier)

  def _check_slots(self, name: str, buffer: Buffer, key: str, want: int, what: str) -> None:
    """``buffer[key]`` must be a tuple of exactly ``want`` per-slot arrays (``what`` names them)."""
    slots = buffer.get(key)
    if not isinstance(slots, (tuple, list)):
      got = f"an array of shape {slots.shape}" if hasattr(slots, "shape") else repr(type(slots).__name__)
      raise ValueError(f"depth mixer {name!r} at layer {self.layer}: buffer[{key!r}] must be a tuple of per-slot "
                       f"arrays ({what}), got {got}; make the buffer with the mixer class's init_buffer")
    if len(slots) != want:
      raise ValueError(f"depth mixer {name!r} at layer {self.layer}: buffer[{key!r}] holds {len(slots)} slot(s) "
                       f"but layer {self.layer} expects exactly {want} ({what}); call a stage's mixers in "
                       f"order 1, 2, ... on the buffer from init_buffer")

  def _check(self, name, h, buffer):
    if not 1 <= self.layer < self.depth + (0 if self.uses_history else 10**9):
      raise ConfigError(f"config.model.mixer: depth mixer {name!r} at layer {self.layer} with a depth buffer "
                        f"of {self.depth} slots; layers run from 1 to {self.depth - 1}")
    if "x" in buffer:
      self._check_slots(name, buffer, "x", self.layer, f"x_0 .. x_{self.layer - 1}")
    ref = buffer["x"][0] if "x" in buffer else buffer["prev"]
    _check_same(name, self.layer, h, ref, "the depth buffer")

  def _norm(self, x, train, scale_init=nn.initializers.ones):
    if self.norm == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, scale_init=scale_init,
                          name="norm")(x)
    if self.norm == "layer":
      return nn.LayerNorm(dtype=self.dtype, scale_init=scale_init, name="norm")(x)
    return x

  def _dp(self, x, train):
    return drop_path(self, x, self.drop_path, train=train)

  def _full(self) -> bool:
    """Whether this call computes its own attention: always unless skipped (and at init, for the params)."""
    return not self.skip or self.is_initializing()

  def _reused(self, name: str, buffer: Buffer) -> tuple[jax.Array, jax.Array]:
    """ELA skip: the previous block's retrieval and distribution, carried in the buffer."""
    if name not in SKIPPABLE:
      raise ConfigError(f"config.model.skip_layers: mixer {name!r} has no distribution over depth to skip; "
                        f"the mixers that have one are {list(SKIPPABLE)}")
    if self.skip_append is not True and name != "mrla_base":
      raise ConfigError(f"config.model.mixer_kwargs.skip_append: only 'mrla_base' keeps a key/value cache; "
                        f"{name!r}'s buffer holds the layer outputs, which a skipped block still produces "
                        f"(leave skip_append=True)")
    if "retrieval" not in buffer:
      raise ConfigError(f"config.model.skip_layers: block {self.layer} of a stage cannot be skipped: no "
                        "earlier block of the stage has a retrieval to reuse (block 1 never can)")
    return buffer["retrieval"], buffer["weights"]


class NoMixer(_Mixer):
  r""":math:`x_t = \phi(h_t)`: a plain stack (no skip connection)."""

  @nn.compact
  def __call__(self, h, buffer: Buffer, *, train: bool = False):
    self._check("none", h, buffer)
    x = self._act(self._dp(h, train))
    return x, self._write(buffer, x), None


class ResidualMixer(_Mixer):
  r""":math:`x_t = \phi(h_t + x_{t-1})`: the residual baseline."""

  @nn.compact
  def __call__(self, h, buffer: Buffer, *, train: bool = False):
    self._check("residual", h, buffer)
    x = self._act(self._dp(h, train) + self._prev(buffer))
    return x, self._write(buffer, x), None


class DenseMixer(_Mixer):
  r""":math:`x_t = \phi(h_t + \mathrm{mean}_{i \in V_t} x_i)`: equal fixed weights on every earlier layer.

  ``slot_barrier`` as :class:`AILA1Mixer`'s."""
  include_input: bool = True
  slot_barrier: bool | None = None  # the slots behind lax.optimization_barrier (None: depth.SLOT_BARRIER, True)
  uses_history = True

  @nn.compact
  def __call__(self, h, buffer: Buffer, *, train: bool = False):
    self._check("dense", h, buffer)
    include_input = self.include_input or self.layer == 1  # layer 1 has no earlier layer but the input
    mask = depth_attn.depth_mask(self.layer, self.depth, include_input=include_input)
    weights = depth_attn.normalize_depth_weights(jnp.zeros((self.depth,), jnp.float32), mask, "softmax")
    self.sow("intermediates", "depth_weights", weights)
    x = self._act(self._dp(h, train) + self._mix(weights, buffer, include_input))
    return x, self._write(buffer, x), weights


class AILA1Mixer(_Mixer):
  r"""AILA architecture 1: learned linear weights over every earlier layer.

  .. math:: x_t = \phi\Big(h_t + [x_{t-1}] + \sum_{i \in V_t} a_{t,i}\, x_i\Big),
     \qquad a_{t,\cdot} = \mathrm{normalize}(w_{t,\cdot}; V_t)

  ``connection='linear'`` (the abstract's "simple linear layers as the
  connection mechanism") replaces each scalar by a learned linear map of the
  channels (a 1x1 convolution on images, no bias):

  .. math:: x_t = \phi\Big(h_t + [x_{t-1}] + \sum_{i \in V_t} x_i W_{t,i}\Big),
     \qquad W_{t,i} \in \mathbb{R}^{D \times D},\ W_{t,i}^{(0)} = a_{t,i}^{(0)} I,

  one parameter ``depth_maps`` ``[T, D, D]`` (no logits) initialised at the
  scalar mix's initial weights times the identity (``softmax``: the uniform
  mean of the readable layers; ``none``: the residual network), so both
  connections start as the same network. Its distribution over depth (sown,
  returned, read by ELA) is each map's share of the Frobenius norms,
  :math:`\|W_{t,i}\|_F / \sum_{j \in V_t} \|W_{t,j}\|_F`, a measure of
  where layer :math:`t` reads, not a factor of the output.

  ``slot_barrier`` (scalar connection; default ``None``: :data:`aila_jax.attention.depth.SLOT_BARRIER`,
  True) passes the slots through ``lax.optimization_barrier`` before the weighted sum: the same
  function, compiled in about half the time on a GPU for 2-4% more step time
  (:func:`~aila_jax.attention.depth.mix_depth`); ``False`` lets XLA fuse across it.
  """
  normalization: str = "softmax"
  include_input: bool = True
  residual: bool = False
  connection: str = "scalar"   # 'scalar' (a_{t,i} x_i) or 'linear' (x_i W_{t,i}, a D x D map per slot)
  slot_barrier: bool | None = None  # the slots behind lax.optimization_barrier (None: depth.SLOT_BARRIER, True)
  uses_history = True

  @nn.compact
  def __call__(self, h, buffer: Buffer, *, train: bool = False):
    self._check("aila1", h, buffer)
    if self.normalization not in depth_attn.NORMALIZATIONS:
      raise ConfigError(f"config.model.mixer_kwargs.normalization: expected one of "
                        f"{depth_attn.NORMALIZATIONS}, got {self.normalization!r}")
    layer, depth = self.layer, self.depth

    def init(key, shape, dtype=jnp.float32):
      del key
      if self.normalization == "none":  # the residual network at initialisation
        return jnp.zeros(shape, dtype).at[layer - 1].set(1.0)
      return jnp.zeros(shape, dtype) if self.normalization == "softmax" else jnp.ones(shape, dtype)

    if self.connection not in AILA1_CONNECTIONS:
      raise ConfigError(f"config.model.mixer_kwargs.connection: expected one of {AILA1_CONNECTIONS}, "
                        f"got {self.connection!r}")
    mask = depth_attn.depth_mask(layer, depth, include_input=self.include_input or layer == 1)
    if self.connection == "linear":
      width = h.shape[-1]

      def init_maps(key, shape, dtype=jnp.float32):  # a_{t,i}^(0) I: the scalar mixer's start
        a0 = depth_attn.normalize_depth_weights(init(key, (depth,), dtype), mask, self.normalization)
        return a0[:, None, None] * jnp.eye(width, dtype=dtype)

      maps = self.param("depth_maps", init_maps, (depth, width, width))  # (T, D, D)
      if self._full():
        sl = depth_attn.readable_slots(layer, depth, include_input=self.include_input or layer == 1)
        norms = jnp.sqrt(jnp.sum(jnp.square(maps), axis=(1, 2)))  # (T,) Frobenius norms
        weights = jnp.where(mask, norms, 0.0) / jnp.sum(jnp.where(mask, norms, 0.0))
        retrieval = functools.reduce(operator.add, (
            jnp.einsum("...c,cd->...d", x, maps[i].astype(x.dtype))
            for i, x in zip(range(sl.start, sl.stop), buffer["x"][sl])))
    else:
      logits = self.param("depth_logits", init, (depth,))
    if self._full() and self.connection == "scalar":
      weights = depth_attn.normalize_depth_weights(logits, mask, self.normalization)  # (T,)
      retrieval = self._mix(weights, buffer, self.include_input or layer == 1)
    if self.skip:  # ELA: reuse block t-1's mix (no weighted sum over the slots)
      retrieval, weights = self._reused("aila1", buffer)
    self.sow("intermediates", "depth_weights", weights)
    mix = retrieval + self._prev(buffer) if self.residual else retrieval
    x = self._act(self._dp(h, train) + mix)
    return x, dict(self._write(buffer, x), retrieval=retrieval, weights=weights), weights


AILA2_KEYS = ("slots", "stacked", "folded", "folded_stacked")


class _DenseKernel(nn.Module):
  """The ``kernel`` parameter of ``nn.Dense(features, use_bias=False)`` (same name, shape, initialiser and
  dtype, so the same value from the same key), returned instead of applied."""
  features: int

  @nn.compact
  def __call__(self, in_features: int) -> jax.Array:
    return self.param("kernel", nn.linear.default_kernel_init, (in_features, self.features), jnp.float32)


class _LayerNormParams(nn.Module):
  """The ``scale`` and ``bias`` parameters of ``nn.LayerNorm()`` over a last axis of ``features`` (same names,
  shapes, initialisers and dtype), returned instead of applied."""

  @nn.compact
  def __call__(self, features: int) -> tuple[jax.Array, jax.Array]:
    return (self.param("scale", nn.initializers.ones, (features,), jnp.float32),
            self.param("bias", nn.initializers.zeros, (features,), jnp.float32))


class AILA2Mixer(_Mixer):
  r"""AILA architecture 2: multi-head query/key attention over the earlier layers.

  .. math:: x_t = \phi\big(h_t + [x_{t-1}] + \textstyle\sum_{i\in V_t} \alpha_{t,i}\, x_i\big),\quad
     \alpha_{t,i}^{(n)} = \mathrm{softmax}_i\big((W_q u_t)^{(n)} \cdot (W_k x_i)^{(n)} / \sqrt{d}\big)

  with :math:`u_t = h_t` (``query='block'``) or :math:`x_{t-1}` (``'previous'``).
  The returned weights are ``[B, heads, T]`` (averaged over positions when
  ``pooling='per_token'``).
  """
  num_heads: int = 4
  query: str = "block"
  pooling: str = "per_token"
  include_input: bool = True
  residual: bool = False
  qk_norm: bool = True
  keys: str = "folded"          # the key projection: 'folded' (into the query: one product per layer, none per
                                # slot; same parameters and values as 'slots'; the default since, on one H100,
                                # ResNet-56's first step fell from 41.4 to 32.6 s and its step from 12.64 to
                                # 12.36 ms), 'slots' (slot by slot), 'stacked' (once, on a stack) or
                                # 'folded_stacked' (folded, the slots' logits from one stacked reduction)
  projections: str = "dot"      # the query/key projections: 'dot' (nn.Dense, matrix products) or 'reduce'
                                # (float32 broadcast products and reductions, no dot; same parameters)
  uses_history = True

  @nn.compact
  def __call__(self, h, buffer: Buffer, *, train: bool = False):
    self._check("aila2", h, buffer)
    if self.query not in ("block", "previous"):
      raise ConfigError(f"config.model.mixer_kwargs.query: expected 'block' or 'previous', got {self.query!r}")
    if self.pooling not in ("per_token", "pooled"):
      raise ConfigError(f"config.model.mixer_kwargs.pooling: expected 'per_token' or 'pooled', "
                        f"got {self.pooling!r}")
    if self.keys not in AILA2_KEYS:
      raise ConfigError(f"config.model.mixer_kwargs.keys: expected one of {AILA2_KEYS}, got {self.keys!r}")
    if self.projections not in depth_attn.PROJECTION_IMPLS:
      raise ConfigError(f"config.model.mixer_kwargs.projections: expected one of {depth_attn.PROJECTION_IMPLS}, "
                        f"got {self.projections!r}")
    width = h.shape[-1]
    if width % self.num_heads:
      raise ConfigError(f"config.model.mixer_kwargs.num_heads: aila2 needs the width {width} to be divisible "
                        f"by num_heads={self.num_heads}")
    cache = {}
    if self._full():
      mix, weights, cache = self._attend(h, buffer)
    if self.skip:  # ELA: reuse block t-1's retrieval (no query-key attention over the slots)
      mix, weights = self._reused("aila2", buffer)
    self.sow("intermediates", "depth_weights", weights)
    out = mix + self._prev(buffer) if self.residual else mix
    x = self._act(self._dp(h, train) + out)
    return x, dict(self._write(buffer, x), retrieval=mix, weights=weights, **cache), weights

  def _attend(self, h, buffer: Buffer):
    """The query-key attention over the readable slots: ``(mix [B, *P, D] in h.dtype, weights [B, N, T],
    cache)``, ``cache`` the buffer entries to pass on (``keys='folded'``: ``{"k_in": ...}``)."""
    sl = depth_attn.readable_slots(self.layer, self.depth, include_input=self.include_input or self.layer == 1)
    xs = buffer["x"][sl]  # |V_t| slots [B, *P, D]: the readable layers only
    u = h if self.query == "block" else self._prev(buffer)
    pos_axes = tuple(range(1, h.ndim - 1))
    pool = (lambda a: a.mean(pos_axes)) if self.pooling == "pooled" and pos_axes else (lambda a: a)
    u = pool(u)  # (B, D) when pooled
    # the key LayerNorm and Dense (one set of parameters) applied slot by slot (keys='slots': on CPU, ResNet-20
    # at batch 32, a step with per-token keys took 267 ms this way, 300 ms stacked), once to a stack of the
    # slots (keys='stacked': one matrix product per layer instead of one per slot; same values and parameters)
    # or folded into the query (keys='folded', _folded_keys)
    cache = {}
    if self.keys in ("folded", "folded_stacked"):
      q, k_in, key_kernel = self._folded_keys(u, buffer, pool)
      k, cache = list(k_in[sl]), {"k_in": k_in}
      if self.keys == "folded_stacked" and self.pooling == "per_token" and len(k) > 1:
        k = jnp.stack(k, axis=1)  # [B, T, *P, C]: every slot's logits in one reduction, not one per slot
    else:
      (q, k), key_kernel = self._projected_keys(u, [pool(x) for x in xs]), None
    vs = [x.astype(q.dtype) for x in xs]
    if not isinstance(k, list):  # stacked per-token keys [B, T, *P, D]: the values stacked alike, one product
      vs = jnp.stack(vs, axis=1)
    if self.pooling == "pooled":
      mix, weights = depth_attn.pooled_depth_attention(q, k, vs, num_heads=self.num_heads, key_kernel=key_kernel,
                                                       projection=self.projections)
    else:
      mix, weights = depth_attn.per_token_depth_attention(q, k, vs, num_heads=self.num_heads,
                                                          key_kernel=key_kernel, projection=self.projections)
      weights = weights.mean(axis=pos_axes) if pos_axes else weights  # (B, N, |V_t|)
    weights = depth_attn.pad_depth(weights, sl, self.depth)  # (B, N, T)
    return mix.astype(h.dtype), weights, cache

  def _projected_keys(self, u, kin):
    """``(q, keys)``: the query and the slots' keys ``W_k LN_k(x_i)`` (``keys='slots'``: a list;
    ``'stacked'``: one ``[B, T, *P, D]`` array per token, a list when pooled)."""
    width = u.shape[-1]
    stacked = self.keys == "stacked" and len(kin) > 1
    if stacked:
      kin = [jnp.stack(kin)]
    if self.qk_norm:
      u = nn.LayerNorm(dtype=self.dtype, name="q_norm")(u)
      k_norm = nn.LayerNorm(dtype=self.dtype, name="k_norm")
      kin = [k_norm(a) for a in kin]
    q = self._dense(width, "query", u.shape[-1])(u)
    key = self._dense(width, "key", kin[0].shape[-1])
    k = [key(a) for a in kin]
    if stacked:
      return q, (jnp.moveaxis(k[0], 0, 1) if self.pooling == "per_token" else list(k[0]))
    return q, k

  def _dense(self, features: int, name: str, in_features: int):
    """``nn.Dense(features, use_bias=False, name=name)`` (one parameter for every input it is applied to), or with
    ``projections='reduce'`` the same parameter applied without a matrix product
    (:func:`aila_jax.attention.depth.project`, in the dtype ``nn.Dense`` computes in)."""
    if self.projections != "reduce":
      return nn.Dense(features, use_bias=False, dtype=self.dtype, name=name)
    kernel = _DenseKernel(features, name=name)(in_features)
    return lambda x: depth_attn.project(x if self.dtype is None else x.astype(self.dtype), kernel,
                                        projection="reduce")

  def _folded_keys(self, u, buffer: Buffer, pool):
    r"""``(q, key inputs, key_kernel)`` for ``keys='folded'``: the logits
    :math:`q^{(n)} \cdot (W_k^\top \mathrm{LN}_k(x_i))^{(n)}` computed as :math:`\tilde q^{(n)} \cdot \hat x_i`
    with :math:`\tilde q^{(n)}` the query carried back through :math:`\mathrm{diag}(\gamma_k) W_k`
    (``key_kernel``, :func:`~aila_jax.attention.depth.fold_key_projection`) and :math:`\hat x_i` slot
    :math:`i` (pooled if ``pooling='pooled'``) standardised: the key LayerNorm without its affine, the same for
    every layer that reads the slot. The key inputs of every slot so far (not only the readable ones) are
    returned for the buffer (``buffer["k_in"]``): each slot is standardised once, by the first layer that
    reads it, and the later layers reuse it, so its backward pass also runs once, on the summed cotangent,
    instead of once per reading layer. One product per layer and no per-slot LayerNorm or product. The key
    LayerNorm's bias adds :math:`q^{(n)} \cdot (W_k^\top \beta_k)^{(n)}` to every
    slot's logit of head :math:`n` alike, which the softmax over the slots removes, so it is left out (its
    gradient is zero either way; the parameter stays, as do the others' names, shapes and initial values).
    """
    width, c = u.shape[-1], buffer["x"][0].shape[-1]
    kernel = _DenseKernel(width, name="key")(c)  # the kernel nn.Dense(name='key') has, not applied
    k_in = list(buffer.get("k_in", ()))
    new = [pool(a) for a in buffer["x"][len(k_in):]]  # slots no earlier layer standardised
    if self.qk_norm:
      u = nn.LayerNorm(dtype=self.dtype, name="q_norm")(u)
      gamma, _ = _LayerNormParams(name="k_norm")(c)
      kernel = gamma[:, None] * kernel  # LN_k(x) @ W = standardise(x) @ (diag(gamma) W) + beta @ W
      standardize = nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype, name="k_standardize")
      new = [standardize(a) for a in new]  # no parameters
    q = self._dense(width, "query", u.shape[-1])(u)
    return q, tuple(k_in) + tuple(a.astype(q.dtype) for a in new), kernel


def depthwise_conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  r"""Depthwise convolution, stride 1, ``SAME`` zero padding, as a sum of shifted products.

  .. math:: y_{p,c} = \sum_{o} K_{o,c}\, x_{p + o - \lfloor k/2 \rfloor, c}

  (cross-correlation, like ``nn.Conv(C, k, feature_group_count=C)``, whose
  kernel layout ``[*k, 1, C]`` it takes). With a 3x3 kernel that is 9
  multiply-adds per element, which XLA fuses into one loop; a grouped
  convolution with one channel per group is a poor fit for the convolution
  kernels on GPU. Accumulates in float32 and returns ``x.dtype``.

  Args:
    x: ``[B, *spatial, C]``.
    kernel: ``[*k, 1, C]`` with every ``k`` odd.
  """
  ks = kernel.shape[:-2]
  if x.ndim != len(ks) + 2 or kernel.shape[-2:] != (1, x.shape[-1]) or any(k % 2 == 0 for k in ks):
    raise ValueError(f"depthwise_conv_same: expected x [B, *spatial, C] and a kernel [*k, 1, C] with odd k "
                     f"and len(k) = len(spatial); got x {x.shape}, kernel {kernel.shape}")
  spatial = x.shape[1:-1]
  xp = jnp.pad(x, [(0, 0)] + [(k // 2, k // 2) for k in ks] + [(0, 0)]).astype(jnp.float32)
  kernel = kernel.astype(jnp.float32)
  out = jnp.zeros(x.shape, jnp.float32)
  for offset in itertools.product(*(range(k) for k in ks)):
    window = (slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, spatial)) + (slice(None),)
    out = out + xp[window] * kernel[offset + (0,)]
  return out.astype(x.dtype)


def _grouped_conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """``nn.Conv(C, k, padding='SAME', feature_group_count=C)``'s convolution: channels-last, kernel ``[*k, 1, C]``."""
  sp = "HWD"[:x.ndim - 2]
  return jax.lax.conv_general_dilated(x, kernel, (1,) * (x.ndim - 2), "SAME",
                                      dimension_numbers=(f"N{sp}C", f"{sp}IO", f"N{sp}C"),
                                      feature_group_count=x.shape[-1])


@jax.custom_vjp
def depthwise_conv_same_wgrad(x: jax.Array, kernel: jax.Array) -> jax.Array:
  r""":func:`depthwise_conv_same` (same values), with the kernel's gradient computed by a convolution.

  Backward: the input's gradient is again a sum of shifted products, with the
  kernel flipped in space (the transpose of a stride-1 ``SAME`` cross-correlation
  with an odd kernel); the kernel's gradient,
  :math:`\partial K_{o,c} = \sum_{b,p} x_{b,p+o-\lfloor k/2 \rfloor,c}\, g_{b,p,c}`, is taken from the
  grouped convolution's own VJP (on a GPU, one cuDNN weight-gradient kernel
  instead of one reduction over the whole map per kernel tap). ``x`` and
  ``kernel`` as in :func:`depthwise_conv_same`.
  """
  return depthwise_conv_same(x, kernel)


def _wgrad_fwd(x, kernel):
  return depthwise_conv_same(x, kernel), (x, kernel)


def _wgrad_bwd(res, g):
  x, kernel = res
  spatial_axes = tuple(range(kernel.ndim - 2))
  dx = depthwise_conv_same(g.astype(x.dtype), jnp.flip(kernel, spatial_axes)).astype(x.dtype)
  _, kernel_vjp = jax.vjp(lambda k: _grouped_conv_same(x, k.astype(x.dtype)), kernel)
  (dk,) = kernel_vjp(g.astype(x.dtype))
  return dx, dk.astype(kernel.dtype)


depthwise_conv_same_wgrad.defvjp(_wgrad_fwd, _wgrad_bwd)

DEPTHWISE_IMPLS = ("shifted", "conv", "shifted_wgrad")


class _DepthwiseConv(nn.Module):
  """``nn.Conv(C, k, feature_group_count=C, use_bias=False)`` (same parameter), computed by ``impl``."""
  kernel_size: tuple[int, ...]
  impl: str = "shifted"         # 'shifted' (depthwise_conv_same), 'conv' (lax grouped convolution) or
                                # 'shifted_wgrad' (shifted sums, the kernel's gradient by the grouped convolution)
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, self.kernel_size + (1, c), jnp.float32)
    x = x.astype(self.dtype)
    if self.impl == "shifted":
      return depthwise_conv_same(x, kernel.astype(self.dtype))
    if self.impl == "shifted_wgrad":
      return depthwise_conv_same_wgrad(x, kernel.astype(self.dtype))
    return _grouped_conv_same(x, kernel.astype(self.dtype))  # channels-last, like nn.Conv


class _MRLAProjections(nn.Module):
  r"""MRLA's Q, K (ECA 1-D convs over pooled channels) and V (depthwise conv) of a block output.

  ``value_conv`` / ``eca_conv`` choose how the value's depthwise conv and the
  query/key ECA convs are computed: ``'shifted'`` (fused shifted sums,
  :func:`depthwise_conv_same`), ``'conv'`` (XLA convolutions) or
  ``'shifted_wgrad'`` (shifted sums forward and for the input's gradient, the
  kernel's gradient by the convolution: :func:`depthwise_conv_same_wgrad`). The parameter
  tree is the same either way (the ECA kernels are those of
  ``nn.Conv(1, (k,), use_bias=False)``), so checkpoints move between them.

  ``mrla_init`` (:data:`MRLA_INITS`): ``'official'`` initialises as the official
  code (its ResNets' init loop: ``kaiming_normal_(mode='fan_out')`` on every
  ``Conv2d``, the value's depthwise conv included; PyTorch's default for the
  ``Conv1d`` query/key kernels):

  .. math::

     W_v \sim \mathcal N\big(0,\ 2 / (k^{d} C)\big) \ (3 \times 3:\ \mathrm{std} = \sqrt{2/(9C)}),
     \qquad W_q, W_k \sim \mathcal U\big(\pm 1/\sqrt{k_{\mathrm{eca}}}\big)

  (``Conv2d(C, C, 3, groups=C)``'s fan-out is :math:`9C`: PyTorch does not
  divide it by the groups; a ``Conv1d(1, 1, k)`` has fan-in :math:`k`; on
  sequences the 1-D value kernel gets :math:`2/(3C)`). ``'flax'`` keeps the
  earlier default, LeCun normal (truncated) for all three. Same parameter
  tree either way.
  """
  value_conv: str = "shifted"
  eca_conv: str = "shifted"
  mrla_init: str = "official"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, o):
    for key in ("value_conv", "eca_conv"):
      if getattr(self, key) not in DEPTHWISE_IMPLS:
        raise ConfigError(f"config.model.mixer_kwargs.{key}: expected 'shifted', 'conv' or 'shifted_wgrad', "
                          f"got {getattr(self, key)!r}")
    if self.mrla_init not in MRLA_INITS:
      raise ConfigError(f"config.model.mixer_kwargs.mrla_init: expected one of {MRLA_INITS}, "
                        f"got {self.mrla_init!r}")
    c = o.shape[-1]
    pos_axes = tuple(range(1, o.ndim - 1))
    y = o.mean(pos_axes) if pos_axes else o  # (B, C) global average pooling
    ks = depth_attn.eca_kernel_size(c)
    qk_init = v_init = nn.initializers.lecun_normal()
    if self.mrla_init == "official":
      qk_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # U(+-1/sqrt(ks))
      v_init = nn.initializers.normal((2.0 / (3 ** len(pos_axes) * c)) ** 0.5)  # N(0, 2/(9C)) in 2-D
    y1 = y[..., None]  # (B, C, 1): the channels as a 1-D sequence of one feature
    # a 1-D conv of one feature is a depthwise conv of one channel: same kernel [ks, 1, 1] as nn.Conv's
    q = _DepthwiseConv((ks,), impl=self.eca_conv, kernel_init=qk_init, dtype=self.dtype, name="wq")(y1)[..., 0]
    k = _DepthwiseConv((ks,), impl=self.eca_conv, kernel_init=qk_init, dtype=self.dtype, name="wk")(y1)[..., 0]
    if pos_axes:
      v = _DepthwiseConv((3,) * len(pos_axes), impl=self.value_conv, kernel_init=v_init, dtype=self.dtype,
                         name="wv")(o)
    else:
      v = o * self.param("wv", nn.initializers.ones, (c,)).astype(o.dtype)
    return q, k, v  # (B, C), (B, C), (B, *P, C)


MRLA_NORM_INITS = ("one", "zero")


class _MRLAMixer(_Mixer):
  """Fields and projections shared by the two MRLA mixers."""
  value_conv: str = "shifted"   # the value's depthwise conv: 'shifted' (fused shifted sums), 'conv', 'shifted_wgrad'
  eca_conv: str = "shifted"     # the query/key ECA 1-D convs: 'shifted' (fused shifted sums), 'conv', 'shifted_wgrad'
  mrla_init: str = "official"   # 'official' (the official code's init, see _MRLAProjections) or 'flax' (LeCun)
  norm_init: str = "one"        # scale of the BN after the MRLA branch: 'one' (the official code) or 'zero' (the
                                # branch starts silent, each block as its plain residual step)

  def _projections(self, o):
    return _MRLAProjections(self.value_conv, self.eca_conv, self.mrla_init, dtype=self.dtype, name="mrla")(o)

  def _branch_norm(self, x, train):
    """The norm after the MRLA branch (the official ``bn_mrla`` / the light block's BN), scale from ``norm_init``."""
    if self.norm_init not in MRLA_NORM_INITS:
      raise ConfigError(f"config.model.mixer_kwargs.norm_init: expected one of {MRLA_NORM_INITS}, "
                        f"got {self.norm_init!r}")
    return self._norm(x, train, nn.initializers.zeros if self.norm_init == "zero" else nn.initializers.ones)


class MRLABaseMixer(_MRLAMixer):
  r"""MRLA-base (Fang et al. 2023, eq. 6): softmax attention over the stage's cached keys and values.

  .. math:: o_t = \phi(h_t + x_{t-1}), \quad
     x_t = o_t + \mathrm{DP}\Big(\phi\big(\mathrm{BN}\big(\textstyle\sum_{i=1}^{t}
       \mathrm{softmax}_i(q_t \cdot k_i / \sqrt{d})\, v_i\big)\big)\Big)
  """
  dim_per_head: int = 16

  @classmethod
  def init_buffer(cls, x0, depth):
    """``{"prev": x0, "k": (), "v": ()}``: the cache (slots ``1 .. t-1``) is empty before layer 1."""
    del depth
    return {"prev": x0, "k": (), "v": ()}

  @nn.compact
  def __call__(self, h, buffer: Buffer, *, train: bool = False):
    self._check("mrla_base", h, buffer)
    if not 1 <= self.layer < self.depth:
      raise ConfigError(f"config.model.mixer: mrla_base at layer {self.layer} with a cache of {self.depth} slots")
    for key in ("k", "v"):
      self._check_slots("mrla_base", buffer, key, self.layer - 1, f"the cached slots 1 .. {self.layer - 1}")
    heads = _heads_for("mrla_base", h.shape[-1], self.dim_per_head)
    prev = buffer["prev"]
    o = self._act(h + prev)
    append = not self.skip or self.skip_append  # ELA: a skipped block may still cache its key/value
    if self._full() or append:
      q, k, v = self._projections(o)
    keys = tuple(buffer["k"]) + ((k.astype(prev.dtype),) if append else (None,))  # slots 1 .. t
    values = tuple(buffer["v"]) + ((v.astype(prev.dtype),) if append else (None,))
    if self._full():
      att, weights = self._attend(q, keys, values, heads)
    if self.skip:  # ELA: reuse block t-1's retrieval (no query-key attention over the cache)
      att, weights = self._reused("mrla_base", buffer)
    self.sow("intermediates", "depth_weights", weights)
    x = o + self._dp(self._act(self._branch_norm(att.astype(o.dtype), train)), train)
    return x, {"prev": x, "k": keys, "v": values, "retrieval": att, "weights": weights}, weights

  def _attend(self, q, keys, values, heads):
    """Softmax attention over the cached slots ``1 .. t`` (``None``: a skipped block that cached nothing)."""
    present = [i for i, a in enumerate(keys) if a is not None]
    att, w = depth_attn.pooled_depth_attention(q, [keys[i].astype(q.dtype) for i in present],
                                               [values[i].astype(q.dtype) for i in present], num_heads=heads)
    if len(present) == len(keys):
      sl = depth_attn.readable_slots(self.layer, self.depth, include_input=False, include_current=True)
      return att, depth_attn.pad_depth(w, sl, self.depth)
    slots = jnp.asarray([1 + i for i in present])  # cache position i holds slot i + 1
    return att, jnp.zeros(w.shape[:-1] + (self.depth,), w.dtype).at[..., slots].set(w)


class MRLALightMixer(_MRLAMixer):
  r"""MRLA-light (Fang et al. 2023, eq. 8): a sigmoid-gated recurrence over depth.

  .. math:: o_t = \phi(h_t + x_{t-1}), \quad
     x_t = o_t + \mathrm{DP}\big(\mathrm{BN}(\lambda_t \odot x_{t-1} + \sigma(q_t \cdot k_t/\sqrt{d})\, v_t)\big)
  """
  dim_per_head: int = 32

  @nn.compact
  def __call__(self, h, buffer: Buffer, *, train: bool = False):
    self._check("mrla_light", h, buffer)
    c = h.shape[-1]
    heads = _heads_for("mrla_light", c, self.dim_per_head)
    prev = buffer["prev"]
    o = self._act(h + prev)
    q, k, v = self._projections(o)
    lam = self.param("lambda", nn.initializers.normal(1.0), (c,))
    out, gates = depth_attn.mrla_light_step(prev.astype(q.dtype), q, k, v.astype(q.dtype), lam, num_heads=heads)
    self.sow("intermediates", "gates", gates)
    self.sow("intermediates", "lambda", lam)
    x = o + self._dp(self._branch_norm(out.astype(o.dtype), train), train)
    return x, self._write(buffer, x), None


DLA_GROUPINGS = ("tree", "all")


def _tree_sizes(n: int) -> list[int]:
  """The complete binary trees a stage of ``n`` blocks is cut into: the powers of two of ``n``, largest first."""
  return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


def dla_root_slots(layer: int, depth: int, grouping: str = "tree", include_input: bool = True
                   ) -> tuple[int, ...] | None:
  r"""The buffer slots that layer ``layer``'s aggregation node reads besides its own block output.

  ``None`` when the layer has no node (``'tree'``, odd position in its tree:
  the plain residual step). The order is the order of the concatenation (the
  1x1 kernel's input rows), DLA's ``Root(x2, x1, *children)``.

  * ``'all'``: :math:`(t-1, t-2, \dots, 0)` (without 0 when not
    ``include_input``): a node over every earlier layer at every layer.
  * ``'tree'``: hierarchical deep aggregation as in the official ``Tree``.
    The stage's :math:`n` blocks are cut into complete binary trees of
    :math:`2^L` blocks, largest first (the binary digits of :math:`n`:
    ResNet-20's 3 blocks = 2 + 1, 9 = 8 + 1, 18 = 16 + 2). In a tree that
    starts after slot :math:`s`, the block at position :math:`m = t - s` closes a
    node when :math:`m` is even; with :math:`2^v` the largest power of two
    dividing :math:`m`, the node reads the previous block :math:`t - 1`, the
    tree's input :math:`s` if :math:`m = 2^L` (the tree's top node; DLA's
    ``level_root``, here ``include_input``), and the earlier nodes
    :math:`t - 2^{v-1}, \dots, t - 2` (the roots of the subtrees it closes,
    outermost first). For 8 blocks: nodes at 2: (1), 4: (3, 2), 6: (5),
    8: (7, 0, 4, 6), exactly the children that the official ``Tree(levels=3,
    level_root=True)`` hands its roots.
  """
  n = depth - 1
  if not 1 <= layer <= n:
    raise ConfigError(f"config.model.mixer: depth mixer 'dla' at layer {layer} with a depth buffer of {depth} "
                      f"slots; layers run from 1 to {n}")
  if grouping not in DLA_GROUPINGS:
    raise ConfigError(f"config.model.mixer_kwargs.grouping: expected one of {DLA_GROUPINGS}, got {grouping!r}")
  if grouping == "all":
    return tuple(range(layer - 1, -1 if include_input else 0, -1))
  start = 0
  for size in _tree_sizes(n):
    if layer <= start + size:
      break
    start += size
  m = layer - start
  if m % 2:
    return None
  v = (m & -m).bit_length() - 1  # 2^v is the largest power of two dividing m
  top = (start,) if include_input and m == size else ()
  return (layer - 1,) + top + tuple(layer - 2 ** j for j in range(v - 1, 0, -1))


class DLAMixer(_Mixer):
  r"""Deep layer aggregation over depth (Yu et al., CVPR 2018): DLA's aggregation node as a mixer.

  The block output is the residual step :math:`o_t = \phi(\mathrm{DP}(h_t) + x_{t-1})`
  (DLA's blocks add their own shortcut). At a layer with a node,

  .. math:: x_t = \phi\big(\mathrm{N}(W [o_t; x_{s_1}; \dots; x_{s_k}]) + [o_t]\big)

  with :math:`s_1, \dots, s_k` = :func:`dla_root_slots` (``grouping``), the
  concatenation on the channel axis, :math:`W` a ``Dense`` over channels (a
  1x1 convolution on images; no bias unless ``norm='none'``; initialised
  :math:`\mathcal N(0, 2/C)` like DLA's convolutions), :math:`\mathrm{N}` the
  backbone's ``norm`` (BatchNorm in a CNN, LayerNorm on sequences and
  vectors) and :math:`[o_t]` present when ``root_residual`` (DLA's
  ``residual_root``). Elsewhere (``'tree'``, odd positions) :math:`x_t = o_t`.

  Choices: ``grouping='tree'`` (default) is DLA's HDA tree; ``'all'`` puts a
  node over every earlier slot at every layer (DenseNet-like, with a learned
  1x1 fusion). ``include_input`` (default True) lets the top node of each tree
  read the tree's input (DLA's ``level_root``, how stages are chained by IDA).
  ``root_residual`` defaults to True (DLA-102 and deeper); DLA-34/60's roots
  have none (``root_residual=False``). No distribution over depth, so ELA
  cannot skip it.
  """
  grouping: str = "tree"
  include_input: bool = True
  root_residual: bool = True
  uses_history = True

  @nn.compact
  def __call__(self, h, buffer: Buffer, *, train: bool = False):
    self._check("dla", h, buffer)
    slots = dla_root_slots(self.layer, self.depth, self.grouping, self.include_input)
    o = self._act(self._dp(h, train) + self._prev(buffer))  # the block output
    if slots is None:
      x = o
    else:
      children = [o] + [buffer["x"][i].astype(o.dtype) for i in slots]
      y = jnp.concatenate(children, axis=-1)  # (B, *P, (1 + k) C)
      y = nn.Dense(h.shape[-1], use_bias=self.norm == "none", dtype=self.dtype,
                   kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"), name="root")(y)
      y = self._norm(y, train)
      x = self._act(y + o if self.root_residual else y)
    return x, self._write(buffer, x), None


MRLA_INITS = ("official", "flax")
AILA1_CONNECTIONS = ("scalar", "linear")


def zero_init_last_bn(mixer: str, mixer_kwargs=None) -> bool:
  """Whether a backbone's default starts the last BN of each residual branch at zero for ``mixer``.

  True for the MRLA mixers with ``mrla_init='official'`` (their default): both official
  MRLA ResNets (``zero_init_last_bn=True``) set the scale of each Bottleneck's
  ``bn3`` to 0, so every block starts as its shortcut plus the MRLA branch.
  """
  official = dict(mixer_kwargs or {}).get("mrla_init", "official") == "official"
  return mixer in ("mrla_base", "mrla_light") and official


SKIPPABLE = ("aila1", "aila2", "mrla_base")  # mixers with a distribution over depth (ELA may skip their retrieval)

MIXERS: dict[str, type[_Mixer]] = {
    "none": NoMixer,
    "residual": ResidualMixer,
    "dense": DenseMixer,
    "aila1": AILA1Mixer,
    "aila2": AILA2Mixer,
    "mrla_base": MRLABaseMixer,
    "mrla_light": MRLALightMixer,
    "dla": DLAMixer,
}


def mixer_class(name: str) -> type[_Mixer]:
  """The mixer class called ``name``; ConfigError naming ``config.model.mixer`` otherwise."""
  if name not in MIXERS:
    raise ConfigError(f"config.model.mixer: unknown depth mixer {name!r}; expected one of {sorted(MIXERS)}")
  return MIXERS[name]


def check_mixer_kwargs(name: str, kwargs: dict) -> None:
  """Unknown options of mixer ``name`` -> ConfigError naming ``config.model.mixer_kwargs``."""
  cls = mixer_class(name)
  fields = {f for f in cls.__dataclass_fields__} - {"parent", "name", "layer", "depth", "activation",
                                                      "drop_path", "norm", "dtype", "skip"}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ConfigError(f"config.model.mixer_kwargs: mixer {name!r} takes no option(s) {unknown}; "
                      f"it takes {sorted(fields)}")


def mixer_readable_slots(mixer: str, layer: int, depth: int, kwargs: dict | None = None) -> slice:
  """The slots layer ``layer`` of mixer ``mixer`` attends over (its distribution's support when nothing is
  skipped): ``1 .. t`` for MRLA-base (its cache, the current block included), else ``0 .. t-1``
  (``1 .. t-1`` with ``include_input=False`` beyond layer 1)."""
  if mixer == "mrla_base":
    return depth_attn.readable_slots(layer, depth, include_input=False, include_current=True)
  include_input = bool((kwargs or {}).get("include_input", True)) or layer == 1
  return depth_attn.readable_slots(layer, depth, include_input=include_input)


def make_mixer(mixer: str, *, layer: int, depth: int, **kwargs) -> _Mixer:
  """Mixer ``mixer`` for layer ``layer`` of a stage whose buffer has ``depth`` slots.

  ``kwargs`` are the mixer's fields (and flax's ``name``).
  """
  cls = mixer_class(mixer)
  return cls(layer=layer, depth=depth, **kwargs)
