r"""Backbones whose cross-layer connections are a pluggable depth mixer (``config.model.mixer``).

* :class:`CifarResNet` (``cifar_resnet``): the 3-stage CIFAR ResNet of He et
  al. (2016, sec. 4.2): a 3x3 stem of ``widths[0]`` channels, three stages of
  ``n`` blocks at widths 16/32/64 (stride 2 at stages 2 and 3), global average
  pooling and a linear head. BasicBlock (two 3x3 convs, depth = 6n + 2: 20, 56,
  110) or Bottleneck (1x1, 3x3, 1x1 with expansion 4, depth = 9n + 2: 20, 56,
  110), BatchNorm, projection shortcuts (1x1 conv + BN) where the shape
  changes. The mixer replaces the addition ``relu(F(x) + shortcut(x))``; with
  ``mixer='residual'`` the network *is* the plain ResNet. Depth buffers are per
  stage (slot 0 = the projected stage input), as in MRLA.
* :class:`DepthMLP` (``depth_mlp``): flatten, embed to ``width``, ``depth``
  pre-norm MLP blocks :math:`h_t = W_2\,\mathrm{gelu}(W_1\,\mathrm{LN}(x_{t-1}))`,
  mixer, LayerNorm and a linear head.
* :class:`DepthLSTM` (``depth_lstm``): a ``[B, L, F]`` sequence embedded to
  ``width``, ``depth`` LSTM layers (each over the whole sequence) joined by the
  mixer, the last time step to a linear head. ``mixer='none'`` is the classic
  stacked LSTM.

Every model returns ``(outputs, intermediates)``; ``intermediates['depth_weights']``
maps ``stage_s`` to the ``[layers, T]`` matrix of the layer-to-layer weights
(averaged over the batch and heads; row ``t - 1`` is layer ``t``'s
distribution over slots ``0 .. T-1``) and ``intermediates['depth_heads']``
to ``[layers, heads, T]`` for multi-head mixers. ``num_classes`` is the number
of outputs (classes, or the forecast horizon for regression). ``zero_head``
(``DepthMLP``, ``DepthLSTM``; default False) starts the linear head at zero,
so an untrained model outputs exactly 0 (for forecasting with
``target='change'``, exactly the naive last-value forecast).

**ELA** (arXiv 2503.06473, reconstructed from its abstract; :mod:`aila_jax.train.ela`): every backbone
takes ``skip_layers``, a tuple of block names ``'stage_s/block_t'`` (``s`` the 0-based stage, the
``stage_s`` of ``intermediates['depth_weights']``; ``t`` the 1-based block, its mixer's layer; the MLP
and LSTM have one stage), whose mixers reuse the previous block's retrieval instead of computing their
attention (only mixers with a distribution over depth, :data:`aila_jax.nn.depth.SKIPPABLE`; never
block 1). The skip set is static: the parameter tree does not depend on it, so a changed set means a
recompiled step, not new parameters. ``ela_stats=True`` adds ``intermediates['ela_kl']``, a flat dict
``{'stage_s/block_t': mean adjacent KL}`` (:func:`ela_kl`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aila_jax.attention import redundancy
from aila_jax.errors import ConfigError
from aila_jax.nn import depth as depth_nn

KL_CAP = 1e4  # an infinite adjacent KL (a float32 softmax weight underflowed to 0) is reported as this


def layer_name(stage: int, block: int) -> str:
  """The name of block ``block`` (1-based, = its mixer's layer) of stage ``stage`` (0-based): ``'stage_s/block_t'``."""
  return f"stage_{stage}/block_{block}"


def check_skip_layers(skip_layers, *, mixer: str, blocks_per_stage: Sequence[int]) -> frozenset:
  """``config.model.skip_layers`` as a set of ``(stage, block)``, checked: clear ConfigErrors for names that
  do not exist (the valid ones listed), a mixer with no distribution over depth (the ones that have one
  named), and block 1 of a stage (no earlier retrieval to reuse)."""
  if isinstance(skip_layers, str):
    raise ConfigError(f"config.model.skip_layers: expected a tuple of names like 'stage_1/block_3', got the "
                      f"string {skip_layers!r} (write ('{skip_layers}',))")
  names = tuple(skip_layers or ())
  if not names:
    return frozenset()
  if mixer not in depth_nn.SKIPPABLE:
    raise ConfigError(f"config.model.skip_layers: mixer {mixer!r} has no distribution over depth, so it has no "
                      f"retrieval to skip; the mixers that have one are {list(depth_nn.SKIPPABLE)}")
  valid = {layer_name(s, t): (s, t) for s, n in enumerate(blocks_per_stage) for t in range(1, n + 1)}
  unknown = [n for n in names if n not in valid]
  if unknown:
    raise ConfigError(f"config.model.skip_layers: no block(s) {unknown} in this model; the blocks are "
                      f"{list(valid)}")
  first = [n for n in names if valid[n][1] == 1]
  if first:
    raise ConfigError(f"config.model.skip_layers: {first} cannot be skipped: block 1 of a stage has no earlier "
                      "retrieval to reuse")
  return frozenset(valid[n] for n in names)


def check_ela(mixer: str, ela_stats: bool, support: str) -> None:
  """``ela_stats`` needs a mixer with a distribution over depth and a known KL support."""
  if ela_stats and mixer not in depth_nn.SKIPPABLE:
    raise ConfigError(f"config.ela.enabled: ELA measures and skips layer-attention distributions, but mixer "
                      f"{mixer!r} (config.model.mixer) has none; the mixers that have one are "
                      f"{list(depth_nn.SKIPPABLE)}")
  if support not in redundancy.SUPPORTS:
    raise ConfigError(f"config.ela.kl_support: expected one of {redundancy.SUPPORTS}, got {support!r}")


def ela_kl(weights: list, inter: dict, *, stage: int, mixer: str, mixer_kwargs: Mapping, depth: int,
           support: str = "pad") -> None:
  r"""Adds ``inter['ela_kl']['stage_s/block_t']``: the mean over batch (and heads) of the adjacent KL
  :math:`\mathrm{KL}(P_{t-1} \oplus 0 \| P_t)` (:func:`aila_jax.attention.redundancy.adjacent_kl`) for
  each block :math:`t \ge 2` whose slots extend block :math:`t-1`'s by one, under ``stop_gradient``.

  ``weights`` are the stage's per-layer distributions as the mixers return them (padded to ``depth``
  slots; ``[T]`` for AILA-1, ``[B, heads, T]`` for AILA-2, where ``per_token`` weights are already the
  position average, and MRLA-base). An ELA-skipped block returns its predecessor's distribution, so its
  own KL is 0. Infinite values (an underflowed softmax weight) are reported as :data:`KL_CAP`.
  """
  out = inter.setdefault("ela_kl", {})
  for t in range(2, len(weights) + 1):
    a = depth_nn.mixer_readable_slots(mixer, t - 1, depth, dict(mixer_kwargs))
    b = depth_nn.mixer_readable_slots(mixer, t, depth, dict(mixer_kwargs))
    if b.start != a.start or b.stop != a.stop + 1:
      continue  # e.g. AILA with include_input=False: block 1 reads x_0, block 2 reads x_1 only
    p_prev = jax.lax.stop_gradient(weights[t - 2].astype(jnp.float32))[..., a]
    p_next = jax.lax.stop_gradient(weights[t - 1].astype(jnp.float32))[..., b]
    kl = redundancy.adjacent_kl(p_prev, p_next, support=support)
    out[layer_name(stage, t)] = jnp.minimum(jnp.mean(kl), KL_CAP)


def require_ela_pairs(inter: dict, *, model: str, layout: str) -> None:
  """A clear error, at initialisation, when ELA is on but no block has an adjacent KL to report.

  ELA compares block ``t``'s depth distribution with block ``t-1``'s in the same stage, so a network whose
  stages have one block each (a CIFAR ResNet of depth 8, a one-layer MLP) gives the controller nothing to
  measure. ``layout`` names the config key that sets the blocks per stage and its value.
  """
  if not inter.get("ela_kl"):
    raise ConfigError(f"config.ela.enabled: {model} has no pair of adjacent blocks in a stage to compare "
                      f"({layout}); ELA needs >= 2 blocks per stage whose readable slots grow by one from block to "
                      f"block (config.model.mixer_kwargs may shift them instead), and >= protect_first + 1 blocks "
                      f"(config.ela.protect_first) for any block to be skipped")


def _mixer_kwargs(name: str, kwargs: Mapping | None) -> dict:
  kwargs = dict(kwargs or {})
  depth_nn.check_mixer_kwargs(name, kwargs)
  return kwargs


def _collect(weights: list, inter: dict, stage: str) -> None:
  """Stacks the per-layer depth distributions of a stage into ``[layers, T]`` (and ``[layers, heads, T]``)."""
  if not weights or weights[0] is None:
    return
  rows, heads = [], []
  for w in weights:
    w = w.astype(jnp.float32)
    if w.ndim == 1:
      rows.append(w)
    else:  # (B, N, T)
      rows.append(w.mean(axis=(0, 1)))
      heads.append(w.mean(axis=0))
  inter.setdefault("depth_weights", {})[stage] = jnp.stack(rows)
  if heads:
    inter.setdefault("depth_heads", {})[stage] = jnp.stack(heads)


def _head(num_classes: int, zero: bool, dtype) -> nn.Dense:
  """The linear head; ``zero``: kernel and bias start at zero, so the initial output is exactly 0."""
  init = dict(kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros) if zero else {}
  return nn.Dense(num_classes, dtype=dtype, name="head", **init)


def cifar_blocks_per_stage(depth: int, block: str) -> int:
  """``n`` of a CIFAR ResNet of ``depth`` layers: 6n + 2 (basic) or 9n + 2 (bottleneck)."""
  per = {"basic": 6, "bottleneck": 9}
  if block not in per:
    raise ConfigError(f"config.model.block: expected 'basic' or 'bottleneck', got {block!r}")
  if depth < per[block] + 2 or (depth - 2) % per[block]:
    examples = [per[block] * n + 2 for n in (1, 3, 6, 9, 12, 18)]
    raise ConfigError(f"config.model.depth: a {block} CIFAR ResNet has depth {per[block]}n + 2 "
                      f"(e.g. {examples}), got {depth}")
  return (depth - 2) // per[block]


class _ConvBN(nn.Module):
  features: int
  kernel: int = 3
  stride: int = 1
  dtype: Any = jnp.float32
  zero_scale: bool = False  # BN scale starts at 0 (the last BN of a residual branch, official MRLA init)

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride), padding="SAME",
                use_bias=False, kernel_init=nn.initializers.kaiming_normal(), dtype=self.dtype, name="conv")(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, name="bn",
                        scale_init=nn.initializers.zeros if self.zero_scale else nn.initializers.ones)(x)


class BasicBranch(nn.Module):
  """conv3x3(stride) - BN - ReLU - conv3x3 - BN: the residual branch of a BasicBlock."""
  width: int
  stride: int = 1
  dtype: Any = jnp.float32
  zero_last: bool = False  # the last BN's scale starts at 0
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(_ConvBN(self.width, 3, self.stride, self.dtype, name="a")(x, train))
    return _ConvBN(self.width, 3, 1, self.dtype, self.zero_last, name="b")(x, train)


class BottleneckBranch(nn.Module):
  """conv1x1 - BN - ReLU - conv3x3(stride) - BN - ReLU - conv1x1(4 width) - BN."""
  width: int
  stride: int = 1
  dtype: Any = jnp.float32
  zero_last: bool = False  # the last BN's scale starts at 0
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(_ConvBN(self.width, 1, 1, self.dtype, name="a")(x, train))
    x = nn.relu(_ConvBN(self.width, 3, self.stride, self.dtype, name="b")(x, train))
    return _ConvBN(self.width * 4, 1, 1, self.dtype, self.zero_last, name="c")(x, train)


class CifarResNet(nn.Module):
  """The CIFAR ResNet (He et al. 2016) with a depth mixer; see the module docstring."""
  num_classes: int
  depth: int = 20
  block: str = "basic"
  widths: Sequence[int] = (16, 32, 64)
  mixer: str = "residual"
  mixer_kwargs: Any = None
  drop_path: float = 0.0
  skip_layers: Sequence[str] = ()  # ELA: blocks 'stage_s/block_t' that reuse the previous retrieval
  ela_stats: bool = False          # ELA: intermediates['ela_kl'] (adjacent-layer KLs)
  ela_kl_support: str = "pad"      # ELA: redundancy.adjacent_kl's support, 'pad' or 'renormalize'
  zero_init_last_bn: bool | None = None  # None: on for the MRLA mixers with their official init
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    n = cifar_blocks_per_stage(self.depth, self.block)
    if x.ndim != 4:
      raise ValueError(f"cifar_resnet: expected images [B, H, W, C], got shape {x.shape}")
    mixer_cls = depth_nn.mixer_class(self.mixer)
    mkw = _mixer_kwargs(self.mixer, self.mixer_kwargs)
    check_ela(self.mixer, self.ela_stats, self.ela_kl_support)
    skips = check_skip_layers(self.skip_layers, mixer=self.mixer, blocks_per_stage=(n,) * len(self.widths))
    branch_cls = BasicBranch if self.block == "basic" else BottleneckBranch
    zero_last = (depth_nn.zero_init_last_bn(self.mixer, mkw) if self.zero_init_last_bn is None
                 else bool(self.zero_init_last_bn))
    inter: dict = {}
    x = nn.relu(_ConvBN(self.widths[0], 3, 1, self.dtype, name="stem")(x.astype(self.dtype), train))
    for s, width in enumerate(self.widths):
      stride = 1 if s == 0 else 2
      out_width = width * branch_cls.expansion
      x0 = x
      if stride != 1 or x.shape[-1] != out_width:
        x0 = _ConvBN(out_width, 1, stride, self.dtype, name=f"shortcut_{s}")(x, train)
      buffer = mixer_cls.init_buffer(x0, n + 1)
      weights = []
      for t in range(1, n + 1):
        h = branch_cls(width, stride if t == 1 else 1, self.dtype, zero_last, name=f"stage{s}_block{t}")(x, train)
        mixer = depth_nn.make_mixer(self.mixer, layer=t, depth=n + 1, activation="relu",
                                    drop_path=self.drop_path, norm="batch", dtype=self.dtype,
                                    name=f"stage{s}_mixer{t}", skip=(s, t) in skips, **mkw)
        x, buffer, w = mixer(h, buffer, train=train)
        weights.append(w)
      _collect(weights, inter, f"stage_{s}")
      if self.ela_stats:
        ela_kl(weights, inter, stage=s, mixer=self.mixer, mixer_kwargs=mkw, depth=n + 1,
               support=self.ela_kl_support)
      inter[f"stage_{s}"] = x
    if self.ela_stats:
      require_ela_pairs(inter, model="cifar_resnet",
                        layout=f"config.model.depth={self.depth}: {n} {self.block} block(s) per stage")
    x = x.mean(axis=(1, 2))  # (B, C)
    inter["features"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), inter


class DepthMLP(nn.Module):
  """Embedding, ``depth`` pre-norm MLP blocks joined by a depth mixer, LayerNorm, linear head."""
  num_classes: int
  width: int = 64
  depth: int = 4
  expansion: int = 2
  mixer: str = "residual"
  mixer_kwargs: Any = None
  drop_path: float = 0.0
  dropout_rate: float = 0.0
  zero_head: bool = False
  skip_layers: Sequence[str] = ()  # ELA: blocks 'stage_0/block_t' that reuse the previous retrieval
  ela_stats: bool = False          # ELA: intermediates['ela_kl'] (adjacent-layer KLs)
  ela_kl_support: str = "pad"      # ELA: redundancy.adjacent_kl's support, 'pad' or 'renormalize'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.depth < 1:
      raise ConfigError(f"config.model.depth: expected an int >= 1, got {self.depth}")
    mixer_cls = depth_nn.mixer_class(self.mixer)
    mkw = _mixer_kwargs(self.mixer, self.mixer_kwargs)
    check_ela(self.mixer, self.ela_stats, self.ela_kl_support)
    skips = check_skip_layers(self.skip_layers, mixer=self.mixer, blocks_per_stage=(self.depth,))
    x = x.reshape((x.shape[0], -1)).astype(self.dtype)  # (B, F)
    x = nn.Dense(self.width, dtype=self.dtype, name="embed")(x)  # (B, D)
    buffer = mixer_cls.init_buffer(x, self.depth + 1)
    inter, weights = {}, []
    for t in range(1, self.depth + 1):
      h = nn.LayerNorm(dtype=self.dtype, name=f"ln{t}")(x)
      h = nn.gelu(nn.Dense(self.width * self.expansion, dtype=self.dtype, name=f"fc{t}_a")(h))
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
      h = nn.Dense(self.width, dtype=self.dtype, name=f"fc{t}_b")(h)
      mixer = depth_nn.make_mixer(self.mixer, layer=t, depth=self.depth + 1, activation="none",
                                  drop_path=self.drop_path, norm="layer", dtype=self.dtype,
                                  name=f"mixer{t}", skip=(0, t) in skips, **mkw)
      x, buffer, w = mixer(h, buffer, train=train)
      weights.append(w)
      inter[f"layer_{t}"] = x
    _collect(weights, inter, "stage_0")
    if self.ela_stats:
      ela_kl(weights, inter, stage=0, mixer=self.mixer, mixer_kwargs=mkw, depth=self.depth + 1,
             support=self.ela_kl_support)
      require_ela_pairs(inter, model="depth_mlp", layout=f"config.model.depth={self.depth}")
    x = nn.LayerNorm(dtype=self.dtype, name="ln_out")(x)
    inter["features"] = x
    out = _head(self.num_classes, self.zero_head, self.dtype)(x)
    return out.astype(jnp.float32), inter


class DepthLSTM(nn.Module):
  """Embedding, ``depth`` LSTM layers joined by a depth mixer, the last step to a linear head."""
  num_classes: int
  width: int = 64
  depth: int = 2
  mixer: str = "none"
  mixer_kwargs: Any = None
  layer_norm: bool = False
  drop_path: float = 0.0
  zero_head: bool = False
  skip_layers: Sequence[str] = ()  # ELA: blocks 'stage_0/block_t' that reuse the previous retrieval
  ela_stats: bool = False          # ELA: intermediates['ela_kl'] (adjacent-layer KLs)
  ela_kl_support: str = "pad"      # ELA: redundancy.adjacent_kl's support, 'pad' or 'renormalize'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.depth < 1:
      raise ConfigError(f"config.model.depth: expected an int >= 1, got {self.depth}")
    if x.ndim == 2:
      x = x[..., None]
    if x.ndim != 3:
      raise ValueError(f"depth_lstm: expected sequences [B, L, F] (or [B, L]), got shape {x.shape}")
    mixer_cls = depth_nn.mixer_class(self.mixer)
    mkw = _mixer_kwargs(self.mixer, self.mixer_kwargs)
    check_ela(self.mixer, self.ela_stats, self.ela_kl_support)
    skips = check_skip_layers(self.skip_layers, mixer=self.mixer, blocks_per_stage=(self.depth,))
    x = nn.Dense(self.width, dtype=self.dtype, name="embed")(x.astype(self.dtype))  # (B, L, D)
    buffer = mixer_cls.init_buffer(x, self.depth + 1)
    inter, weights = {}, []
    for t in range(1, self.depth + 1):
      h = nn.LayerNorm(dtype=self.dtype, name=f"ln{t}")(x) if self.layer_norm else x
      h = nn.RNN(nn.OptimizedLSTMCell(self.width, dtype=self.dtype), name=f"lstm{t}")(h)  # (B, L, D)
      mixer = depth_nn.make_mixer(self.mixer, layer=t, depth=self.depth + 1, activation="none",
                                  drop_path=self.drop_path, norm="layer", dtype=self.dtype,
                                  name=f"mixer{t}", skip=(0, t) in skips, **mkw)
      x, buffer, w = mixer(h, buffer, train=train)
      weights.append(w)
    _collect(weights, inter, "stage_0")
    if self.ela_stats:
      ela_kl(weights, inter, stage=0, mixer=self.mixer, mixer_kwargs=mkw, depth=self.depth + 1,
             support=self.ela_kl_support)
      require_ela_pairs(inter, model="depth_lstm", layout=f"config.model.depth={self.depth}")
    x = x[:, -1]  # (B, D) the last time step
    inter["features"] = x
    out = _head(self.num_classes, self.zero_head, self.dtype)(x)
    return out.astype(jnp.float32), inter
