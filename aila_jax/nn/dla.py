r"""Deep Layer Aggregation (Yu, Wang, Shelhamer & Darrell, CVPR 2018): blocks, aggregation nodes, trees.

The official code (github ucbdrive/dla, ``dla.py`` and ``dla_up.py``) and its
port in timm (``timm/models/dla.py``) define the ImageNet family; this module
holds their pieces as flax.linen modules (NHWC, PyTorch's defaults):

* :class:`Basic`, :class:`Bottleneck`, :class:`BottleneckX`: residual blocks
  that never build their own shortcut; the :class:`Tree` hands them one.
* :class:`Root`, the aggregation node
  :math:`N(x_1, \dots, x_n) = \sigma(\mathrm{BN}(W [x_1; \dots; x_n]) + [x_1])`
  (concatenation on channels, a 1x1 conv, BatchNorm, the first child added
  when ``residual``, ReLU :math:`\sigma`).
* :class:`Tree`, hierarchical deep aggregation (HDA): a binary tree of blocks
  whose roots also read the tree's (pooled) input when ``level_root``, which
  is how the network's stages are chained by iterative deep aggregation (IDA).
* :class:`IDAUp` and :class:`DLAUp`: the up-sampling aggregation of
  ``dla_up.py`` for dense prediction.
* :class:`CifarBlock` and :class:`CifarTree`: the CIFAR variant of
  github kuangliu/pytorch-cifar (``models/dla.py``), whose blocks carry their
  own strided 1x1 shortcut and whose level-2 tree feeds its root an extra
  block on the tree input.

Conventions shared with the official code, which matter for porting weights:
every convolution has no bias; padding is explicit and symmetric (``(1, 1)``
for 3x3, ``(3, 3)`` for 7x7, never ``'SAME'``, whose stride-2 padding
``(0, 1)`` differs from PyTorch's ``(1, 1)``); convolutions start at
:math:`\mathcal N(0, 2 / (k^2 C_\text{out}))` (He, fan-out, not truncated);
BatchNorm has :math:`\epsilon = 10^{-5}` and PyTorch momentum 0.1 (flax
``momentum=0.9``), scale 1 and bias 0. ``dtype`` is the compute dtype
(``jnp.bfloat16`` for mixed precision); parameters stay float32.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aila_jax.errors import ConfigError

# PyTorch-style initialisers.
he_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # the official DLA init
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # kaiming_uniform(a=sqrt(5))


def torch_default_bias(fan_in: int) -> Callable:
  r"""PyTorch's default bias init for a layer of ``fan_in`` inputs: :math:`U(-1/\sqrt{n}, 1/\sqrt{n})`."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def conv(features: int, kernel: int, stride: int = 1, *, groups: int = 1, dtype: Any = jnp.float32,
         kernel_init: Callable = he_fan_out, name: str | None = None) -> nn.Conv:
  """A bias-free ``kernel`` x ``kernel`` convolution with PyTorch's symmetric padding ``kernel // 2``."""
  p = kernel // 2
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((p, p), (p, p)), use_bias=False,
                 feature_group_count=groups, kernel_init=kernel_init, dtype=dtype, name=name)


def batch_norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (eps 1e-5, running averages updated with momentum 0.1)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


def max_pool(x: jax.Array, stride: int) -> jax.Array:
  """``nn.MaxPool2d(stride, stride)``: windows of ``stride`` x ``stride``, the remainder dropped."""
  if stride == 1:
    return x
  return nn.max_pool(x, (stride, stride), (stride, stride), padding="VALID")


class ConvBN(nn.Module):
  """conv (bias-free, symmetric padding) -> BN -> optional ReLU; params ``conv`` and ``bn``."""
  features: int
  kernel: int = 3
  stride: int = 1
  relu: bool = True
  dtype: Any = jnp.float32
  kernel_init: Callable = he_fan_out

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = conv(self.features, self.kernel, self.stride, dtype=self.dtype, kernel_init=self.kernel_init,
             name="conv")(x)
    x = batch_norm(train, self.dtype, "bn")(x)
    return nn.relu(x) if self.relu else x


class ConvLevel(nn.Module):
  """``convs`` x (3x3 conv - BN - ReLU), the first of stride ``stride`` (DLA's ``level0``/``level1``).

  Params ``conv{i}``/``bn{i}`` (PyTorch ``Sequential`` indices ``3i``/``3i+1``).
  """
  features: int
  convs: int = 1
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    for i in range(self.convs):
      x = conv(self.features, 3, self.stride if i == 0 else 1, dtype=self.dtype, name=f"conv{i}")(x)
      x = nn.relu(batch_norm(train, self.dtype, f"bn{i}")(x))
    return x


class Basic(nn.Module):
  r"""Two 3x3 convolutions: :math:`\sigma(\mathrm{BN}(W_2 \sigma(\mathrm{BN}(W_1 x))) + r)`.

  The first convolution has stride ``stride``; ``residual`` :math:`r` defaults
  to ``x`` (it must then have ``features`` channels and stride 1).
  ``cardinality`` is accepted for a uniform block signature and unused.
  """
  features: int
  stride: int = 1
  cardinality: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, residual=None, *, train: bool = False):
    residual = x if residual is None else residual
    y = conv(self.features, 3, self.stride, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(self.features, 3, 1, dtype=self.dtype, name="conv2")(y)
    y = batch_norm(train, self.dtype, "bn2")(y)
    return nn.relu(y + residual)


class _BottleneckBase(nn.Module):
  """1x1 -> 3x3 (stride, groups) -> 1x1 with BN, ReLU, and the residual added before the last ReLU."""

  def _width_groups(self) -> tuple[int, int]:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x, residual=None, *, train: bool = False):
    residual = x if residual is None else residual
    width, groups = self._width_groups()
    y = conv(width, 1, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(width, 3, self.stride, groups=groups, dtype=self.dtype, name="conv2")(y)
    y = nn.relu(batch_norm(train, self.dtype, "bn2")(y))
    y = conv(self.features, 1, dtype=self.dtype, name="conv3")(y)
    y = batch_norm(train, self.dtype, "bn3")(y)
    return nn.relu(y + residual)


class Bottleneck(_BottleneckBase):
  r"""DLA's bottleneck: inner width ``features // 2`` (expansion 2, not ResNet's 4).

  .. math:: y = \sigma(\mathrm{BN}(W_3\, \sigma(\mathrm{BN}(W_2\, \sigma(\mathrm{BN}(W_1 x))))) + r)

  with :math:`W_1, W_3` 1x1 and :math:`W_2` 3x3 of stride ``stride``.
  """
  features: int
  stride: int = 1
  cardinality: int = 1
  dtype: Any = jnp.float32

  def _width_groups(self):
    return self.features // 2, 1


class BottleneckX(_BottleneckBase):
  """DLA-X (ResNeXt) bottleneck: the 3x3 grouped in ``cardinality`` groups, inner width
  ``features * cardinality // 32`` (``features`` at cardinality 32, twice that at 64).

  Cardinality is an attribute of the instance (the official ``dla102x2()`` sets
  it on the class, which changes every later BottleneckX in the process).
  """
  features: int
  stride: int = 1
  cardinality: int = 32
  dtype: Any = jnp.float32

  def _width_groups(self):
    width = self.features * self.cardinality // 32
    if width % self.cardinality:
      raise ConfigError(f"BottleneckX: inner width {width} (features {self.features} * cardinality "
                        f"{self.cardinality} // 32) is not divisible by the cardinality")
    return width, self.cardinality


BLOCKS = {"basic": Basic, "bottleneck": Bottleneck, "bottleneckx": BottleneckX}


def block_class(name: str):
  if name not in BLOCKS:
    raise ConfigError(f"config.model.block: expected one of {sorted(BLOCKS)}, got {name!r}")
  return BLOCKS[name]


class Root(nn.Module):
  r"""The aggregation node :math:`\sigma(\mathrm{BN}(W [x_1; \dots; x_n]) + [x_1])`.

  ``children`` are concatenated on channels *in the given order* (the order of
  the 1x1 kernel's input rows), :math:`x_1` is added when ``residual`` (it
  must have ``features`` channels). ``kernel_size`` 1 as in every DLA model.
  """
  features: int
  residual: bool = False
  kernel_size: int = 1
  dtype: Any = jnp.float32
  kernel_init: Callable = he_fan_out

  @nn.compact
  def __call__(self, children: Sequence[jax.Array], *, train: bool = False):
    if not children:
      raise ValueError("Root: expected at least one child, got none")
    x = jnp.concatenate(list(children), axis=-1)  # (B, H, W, sum C_i)
    x = conv(self.features, self.kernel_size, dtype=self.dtype, kernel_init=self.kernel_init, name="conv")(x)
    x = batch_norm(train, self.dtype, "bn")(x)
    if self.residual:
      x = x + children[0]
    return nn.relu(x)


class Tree(nn.Module):
  r"""Hierarchical deep aggregation: a tree of ``2 ** levels`` blocks (official ``Tree``).

  ``levels == 1``: ``tree1 = block(features, stride)`` on ``x`` with the
  shortcut ``project(maxpool(x))`` (``project`` = 1x1 conv + BN, only when the
  channels change; the pooled input itself otherwise), ``tree2 = block(features)``
  on its output, and

  .. math:: y = \mathrm{Root}(x_2, x_1, c_1, \dots, c_m)

  over the children :math:`c` handed down by the parent (and the pooled input
  when ``level_root``). ``levels > 1``: ``tree1`` is a ``levels - 1`` tree on
  ``x``; ``tree2`` a ``levels - 1`` tree on its output, which receives the
  children ``(..., maxpool(x) if level_root, x_1)``, so the deepest root
  aggregates every intermediate aggregate. Only levels-1 trees have ``project``
  and ``root`` parameters (the official levels > 1 ``project`` is never used
  in its forward pass; timm and this module drop it).
  """
  levels: int
  features: int
  block: str = "basic"
  stride: int = 1
  level_root: bool = False
  root_residual: bool = False
  cardinality: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, children: Sequence[jax.Array] = (), *, train: bool = False):
    if self.levels < 1:
      raise ConfigError(f"Tree: expected levels >= 1, got {self.levels}")
    children = list(children)
    bottom = max_pool(x, self.stride)
    if self.level_root:
      children.append(bottom)
    if self.levels == 1:
      block = block_class(self.block)
      residual = bottom
      if x.shape[-1] != self.features:
        residual = ConvBN(self.features, 1, relu=False, dtype=self.dtype, name="project")(bottom, train=train)
      x1 = block(self.features, self.stride, self.cardinality, self.dtype, name="tree1")(x, residual, train=train)
      x2 = block(self.features, 1, self.cardinality, self.dtype, name="tree2")(x1, train=train)
      return Root(self.features, self.root_residual, dtype=self.dtype, name="root")([x2, x1, *children],
                                                                                     train=train)
    sub = dict(features=self.features, block=self.block, root_residual=self.root_residual,
               cardinality=self.cardinality, dtype=self.dtype)
    x1 = Tree(self.levels - 1, stride=self.stride, name="tree1", **sub)(x, train=train)
    children.append(x1)
    return Tree(self.levels - 1, stride=1, name="tree2", **sub)(x1, children, train=train)


# --------------------------------------------------------------------------- dense prediction (dla_up.py)

def bilinear_kernel(factor: int) -> np.ndarray:
  r"""The ``2f`` x ``2f`` bilinear up-sampling kernel of ``dla_up.fill_up_weights``.

  .. math:: w_{ij} = (1 - |i/f - c|)(1 - |j/f - c|), \quad c = \frac{2f - 1 - (f \bmod 2)}{2f}

  (``f = 2``: ``[.25, .75, .75, .25]`` per axis).
  """
  k = 2 * factor
  f = math.ceil(k / 2)
  c = (2 * f - 1 - f % 2) / (2.0 * f)
  w1 = 1 - np.abs(np.arange(k) / f - c)
  return np.outer(w1, w1).astype(np.float32)


def _up_padding(factor: int) -> int:
  # ConvTranspose2d(kernel 2f, stride f, padding f // 2) == input-dilated conv padded 2f - 1 - f // 2.
  return 2 * factor - 1 - factor // 2


def _bilinear_init(factor: int) -> Callable:
  def init(key, shape, dtype=jnp.float32):
    del key
    k = jnp.asarray(bilinear_kernel(factor), dtype)  # (2f, 2f)
    return jnp.broadcast_to(k[:, :, None, None], shape)

  return init


class Upsample(nn.Module):
  r"""Depthwise transposed convolution of kernel ``2f``, stride ``f``, padding ``f // 2`` (``H -> f H``).

  Written as an input-dilated grouped convolution (flax's ``ConvTranspose`` has
  no groups): the input is dilated by ``f``, padded ``2f - 1 - f // 2`` on each
  side and convolved per channel with a ``2f`` x ``2f`` kernel initialised
  bilinear (:func:`bilinear_kernel`) and trained. A PyTorch
  ``ConvTranspose2d`` weight ``(C, 1, k, k)`` ports as its spatial flip,
  ``w[:, 0, ::-1, ::-1]`` transposed to ``(k, k, 1, C)``.
  """
  factor: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    f, c = self.factor, x.shape[-1]
    p = _up_padding(f)
    return nn.Conv(c, (2 * f, 2 * f), padding=((p, p), (p, p)), input_dilation=(f, f), feature_group_count=c,
                   use_bias=False, kernel_init=_bilinear_init(f), dtype=self.dtype, name="up")(x)


def bilinear_upsample(x: jax.Array, factor: int) -> jax.Array:
  """The frozen bilinear up-sampling of ``DLASeg`` (the :class:`Upsample` operator with its initial kernel)."""
  if factor == 1:
    return x
  c, p = x.shape[-1], _up_padding(factor)
  k = jnp.broadcast_to(jnp.asarray(bilinear_kernel(factor), x.dtype)[:, :, None, None], (2 * factor, 2 * factor, 1, c))
  return jax.lax.conv_general_dilated(x, k, (1, 1), ((p, p), (p, p)), lhs_dilation=(factor, factor),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


class IDAUp(nn.Module):
  r"""Iterative deep aggregation with up-sampling (``dla_up.IDAUp``).

  Input :math:`i` is projected to ``out_dim`` channels (``proj_i``: 1x1 conv +
  BN + ReLU, only where its channels differ) and up-sampled by
  ``up_factors[i]`` (``up_i``: :class:`Upsample`); then

  .. math:: y_0 = l_0, \qquad y_i = \mathrm{node}_i([y_{i-1}; l_i]) \quad (i \ge 1)

  with node = 3x3 conv + BN + ReLU. Returns ``(y_last, [y_1, ..., y_last])``.
  """
  out_dim: int
  up_factors: Sequence[int]
  node_kernel: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, layers: Sequence[jax.Array], *, train: bool = False):
    if len(layers) != len(self.up_factors):
      raise ValueError(f"IDAUp: expected {len(self.up_factors)} inputs (one per up factor), got {len(layers)}")
    ups = []
    for i, (l, f) in enumerate(zip(layers, self.up_factors)):
      if l.shape[-1] != self.out_dim:
        l = ConvBN(self.out_dim, 1, dtype=self.dtype, name=f"proj_{i}")(l, train=train)
      if int(f) != 1:
        l = Upsample(int(f), self.dtype, name=f"up_{i}")(l)
      ups.append(l)
    x, ys = ups[0], []
    for i in range(1, len(ups)):
      x = ConvBN(self.out_dim, self.node_kernel, dtype=self.dtype, name=f"node_{i}")(
          jnp.concatenate([x, ups[i]], axis=-1), train=train)
      ys.append(x)
    return x, ys


class DLAUp(nn.Module):
  r"""``dla_up.DLAUp``: IDAUp stages from the deepest pair upward, each re-aggregating earlier aggregates.

  With inputs :math:`l_0, \dots, l_n` of channels :math:`c_j` at relative
  ``scales`` :math:`s_j`, stage :math:`i` (``ida_i``, :math:`j = n - 1 - i`)
  aggregates the last :math:`i + 2` layers into :math:`c_j` channels at scale
  :math:`s_j`, its intermediate outputs replacing the last :math:`i + 1`
  layers. The output is the last stage's, at the scale and width of
  :math:`l_0`. On DLA-34's levels 1-5 (``scales = (1, 2, 4, 8, 16)``):
  256 @ stride 16, 128 @ 8, 64 @ 4 and 32 @ 2.
  """
  scales: Sequence[int] = (1, 2, 4, 8, 16)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, layers: Sequence[jax.Array], *, train: bool = False):
    layers = list(layers)
    n = len(layers)
    if n < 2 or len(self.scales) != n:
      raise ValueError(f"DLAUp: expected {len(self.scales)} (>= 2) inputs, one per scale, got {n}")
    channels = [l.shape[-1] for l in layers]
    scales = [int(s) for s in self.scales]
    x = None
    for i in range(n - 1):
      j = n - 2 - i
      ida = IDAUp(channels[j], [s // scales[j] for s in scales[j:]], dtype=self.dtype, name=f"ida_{i}")
      x, ys = ida(layers[j:], train=train)
      layers[j + 1:] = ys
      scales[j + 1:] = [scales[j]] * (n - 1 - j)
    return x


# --------------------------------------------------------------------------- CIFAR (kuangliu/pytorch-cifar)

class CifarBlock(nn.Module):
  r"""The CIFAR ResNet basic block with its own shortcut (kuangliu ``BasicBlock``).

  :math:`\sigma(\mathrm{BN}(W_2 \sigma(\mathrm{BN}(W_1 x))) + s(x))`, :math:`s` a
  strided 1x1 conv + BN (``shortcut``) when the stride or width changes, the
  identity otherwise. PyTorch's default init (the peer's):
  :math:`U(\pm 1/\sqrt{\text{fan-in}})`.
  """
  features: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    init = torch_default_kernel
    y = conv(self.features, 3, self.stride, dtype=self.dtype, kernel_init=init, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(self.features, 3, 1, dtype=self.dtype, kernel_init=init, name="conv2")(y)
    y = batch_norm(train, self.dtype, "bn2")(y)
    s = x
    if self.stride != 1 or x.shape[-1] != self.features:
      s = conv(self.features, 1, self.stride, dtype=self.dtype, kernel_init=init, name="shortcut_conv")(x)
      s = batch_norm(train, self.dtype, "shortcut_bn")(s)
    return nn.relu(y + s)


class CifarTree(nn.Module):
  r"""kuangliu's DLA ``Tree`` (not the official one).

  ``level == 1``: :math:`\mathrm{Root}(b_l(x), b_r(b_l(x)))`. ``level > 1``:
  :math:`\mathrm{Root}(p(x), t_{l-1}(x), \dots, t_1(\cdot), b_l, b_r)` over a
  learned block ``prev_root`` :math:`p` on the tree input, the chain of
  sub-trees ``level_{l-1} .. level_1`` (each on the previous one's output),
  and the left and right blocks after them: root input ``(level + 2) * features``.
  The root has no residual.
  """
  features: int
  level: int = 1
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.level not in (1, 2):
      # The peer builds every sub-tree on the tree input (channels and stride), which only composes up to
      # level 2 (the deepest its network uses).
      raise ConfigError(f"CifarTree: expected level 1 or 2 (as in kuangliu's DLA), got {self.level}")
    xs = []
    if self.level > 1:
      xs.append(CifarBlock(self.features, self.stride, self.dtype, name="prev_root")(x, train=train))
    for i in reversed(range(1, self.level)):
      x = CifarTree(self.features, i, self.stride, self.dtype, name=f"level_{i}")(x, train=train)
      xs.append(x)
    stride = self.stride if self.level == 1 else 1
    x = CifarBlock(self.features, stride, self.dtype, name="left_node")(x, train=train)
    xs.append(x)
    x = CifarBlock(self.features, 1, self.dtype, name="right_node")(x, train=train)
    xs.append(x)
    return Root(self.features, dtype=self.dtype, kernel_init=torch_default_kernel, name="root")(xs, train=train)


class CifarSimpleTree(nn.Module):
  r"""kuangliu's SimpleDLA ``Tree`` (``models/dla_simple.py``): a plain binary tree.

  :math:`y = \mathrm{Root}(t_l(x), t_r(t_l(x)))` with :math:`t_l, t_r` trees of
  ``level - 1`` (blocks at level 1; only the left one has the stride), and a
  root of ``2 * features`` inputs at every level.
  """
  features: int
  level: int = 1
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.level < 1:
      raise ConfigError(f"CifarSimpleTree: expected level >= 1, got {self.level}")
    if self.level == 1:
      left = CifarBlock(self.features, self.stride, self.dtype, name="left_tree")
      right = CifarBlock(self.features, 1, self.dtype, name="right_tree")
    else:
      left = CifarSimpleTree(self.features, self.level - 1, self.stride, self.dtype, name="left_tree")
      right = CifarSimpleTree(self.features, self.level - 1, 1, self.dtype, name="right_tree")
    out1 = left(x, train=train)
    out2 = right(out1, train=train)
    return Root(self.features, dtype=self.dtype, kernel_init=torch_default_kernel, name="root")([out1, out2],
                                                                                              train=train)
