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
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from aila_jax.errors import ConfigError
from aila_jax.nn import depth as depth_nn


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

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride), padding="SAME",
                use_bias=False, kernel_init=nn.initializers.kaiming_normal(), dtype=self.dtype, name="conv")(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, name="bn")(x)


class BasicBranch(nn.Module):
  """conv3x3(stride) - BN - ReLU - conv3x3 - BN: the residual branch of a BasicBlock."""
  width: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(_ConvBN(self.width, 3, self.stride, self.dtype, name="a")(x, train))
    return _ConvBN(self.width, 3, 1, self.dtype, name="b")(x, train)


class BottleneckBranch(nn.Module):
  """conv1x1 - BN - ReLU - conv3x3(stride) - BN - ReLU - conv1x1(4 width) - BN."""
  width: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(_ConvBN(self.width, 1, 1, self.dtype, name="a")(x, train))
    x = nn.relu(_ConvBN(self.width, 3, self.stride, self.dtype, name="b")(x, train))
    return _ConvBN(self.width * 4, 1, 1, self.dtype, name="c")(x, train)


class CifarResNet(nn.Module):
  """The CIFAR ResNet (He et al. 2016) with a depth mixer; see the module docstring."""
  num_classes: int
  depth: int = 20
  block: str = "basic"
  widths: Sequence[int] = (16, 32, 64)
  mixer: str = "residual"
  mixer_kwargs: Any = None
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    n = cifar_blocks_per_stage(self.depth, self.block)
    if x.ndim != 4:
      raise ValueError(f"cifar_resnet: expected images [B, H, W, C], got shape {x.shape}")
    mixer_cls = depth_nn.mixer_class(self.mixer)
    mkw = _mixer_kwargs(self.mixer, self.mixer_kwargs)
    branch_cls = BasicBranch if self.block == "basic" else BottleneckBranch
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
        h = branch_cls(width, stride if t == 1 else 1, self.dtype, name=f"stage{s}_block{t}")(x, train)
        mixer = depth_nn.make_mixer(self.mixer, layer=t, depth=n + 1, activation="relu",
                                    drop_path=self.drop_path, norm="batch", dtype=self.dtype,
                                    name=f"stage{s}_mixer{t}", **mkw)
        x, buffer, w = mixer(h, buffer, train=train)
        weights.append(w)
      _collect(weights, inter, f"stage_{s}")
      inter[f"stage_{s}"] = x
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
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.depth < 1:
      raise ConfigError(f"config.model.depth: expected an int >= 1, got {self.depth}")
    mixer_cls = depth_nn.mixer_class(self.mixer)
    mkw = _mixer_kwargs(self.mixer, self.mixer_kwargs)
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
                                  name=f"mixer{t}", **mkw)
      x, buffer, w = mixer(h, buffer, train=train)
      weights.append(w)
      inter[f"layer_{t}"] = x
    _collect(weights, inter, "stage_0")
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
    x = nn.Dense(self.width, dtype=self.dtype, name="embed")(x.astype(self.dtype))  # (B, L, D)
    buffer = mixer_cls.init_buffer(x, self.depth + 1)
    inter, weights = {}, []
    for t in range(1, self.depth + 1):
      h = nn.LayerNorm(dtype=self.dtype, name=f"ln{t}")(x) if self.layer_norm else x
      h = nn.RNN(nn.OptimizedLSTMCell(self.width, dtype=self.dtype), name=f"lstm{t}")(h)  # (B, L, D)
      mixer = depth_nn.make_mixer(self.mixer, layer=t, depth=self.depth + 1, activation="none",
                                  drop_path=self.drop_path, norm="layer", dtype=self.dtype,
                                  name=f"mixer{t}", **mkw)
      x, buffer, w = mixer(h, buffer, train=train)
      weights.append(w)
    _collect(weights, inter, "stage_0")
    x = x[:, -1]  # (B, D) the last time step
    inter["features"] = x
    out = _head(self.num_classes, self.zero_head, self.dtype)(x)
    return out.astype(jnp.float32), inter
