r"""Deep Layer Aggregation models by name, a PyTorch weight converter, dense prediction and CIFAR variants.

**ImageNet family** (official topology as timm keeps it; :data:`VARIANTS`):
``base_layer`` (7x7 conv stride 1 - BN - ReLU), ``level0`` and ``level1``
(3x3 conv levels, ``level1`` of stride 2), ``level2`` .. ``level5``
(:class:`~aila_jax.nn.dla.Tree` of stride 2; ``level3`` .. ``level5`` with
``level_root``, i.e. iterative aggregation across stages), global average
pooling and the classifier ``fc``. Level outputs have strides 1, 2, 4, 8, 16,
32, so both input sides must be multiples of 32.

=============  ====================  ===========================  ================  ===============  ==========
name           levels                channels                     block             residual root    parameters
=============  ====================  ===========================  ================  ===============  ==========
``dla34``      1, 1, 1, 2, 2, 1      16, 32, 64, 128, 256, 512    basic             no               15,742,104
``dla46_c``    1, 1, 1, 2, 2, 1      16, 32, 64, 64, 128, 256     bottleneck        no                1,301,400
``dla46x_c``   1, 1, 1, 2, 2, 1      16, 32, 64, 64, 128, 256     bottleneckx (32)  no                1,068,440
``dla60x_c``   1, 1, 1, 2, 3, 1      16, 32, 64, 64, 128, 256     bottleneckx (32)  no                1,319,832
``dla60``      1, 1, 1, 2, 3, 1      16, 32, 128, 256, 512, 1024  bottleneck        no               22,036,632
``dla60x``     1, 1, 1, 2, 3, 1      16, 32, 128, 256, 512, 1024  bottleneckx (32)  no               17,352,344
``dla102``     1, 1, 1, 3, 4, 1      16, 32, 128, 256, 512, 1024  bottleneck        yes              33,268,888
``dla102x``    1, 1, 1, 3, 4, 1      16, 32, 128, 256, 512, 1024  bottleneckx (32)  yes              26,309,272
``dla102x2``   1, 1, 1, 3, 4, 1      16, 32, 128, 256, 512, 1024  bottleneckx (64)  yes              41,282,200
``dla169``     1, 1, 2, 3, 5, 1      16, 32, 128, 256, 512, 1024  bottleneck        yes              53,389,720
=============  ====================  ===========================  ================  ===============  ==========

(Parameters at 1000 classes: weights + biases + BN scale/bias, equal to timm's.)
Every model returns ``(logits, intermediates)`` with
``intermediates['levels']`` the six level outputs ``(B, H/s, W/s, C_i)`` and
``intermediates['features']`` the pooled ``(B, C_5)``.

:func:`params_from_torch` loads a timm or official PyTorch state dict (the
format of the published ImageNet weights, which timm hosts); with PyTorch
and timm installed and network access::

  sd = {k: v.numpy() for k, v in timm.create_model("dla34", pretrained=True).state_dict().items()}
  variables = params_from_torch(sd, "dla34")
  logits, inter = get_model("dla34").apply(variables, images, train=False)  # images NHWC, ImageNet mean/std

**Dense prediction** (``dla_up.py``): :class:`DLASeg` (``dla34_up``) runs the
backbone's levels from ``log2(down_ratio)`` through
:class:`~aila_jax.nn.dla.DLAUp`, a 1x1 classifier at stride ``down_ratio``
and a frozen bilinear up-sampling to the input size.

**CIFAR**: :class:`CifarDLA` (``cifar_dla``) is the topology of
kuangliu/pytorch-cifar ``models/dla.py`` (16,291,386 parameters at 10
classes), :class:`CifarSimpleDLA` (``cifar_simple_dla``) its SimpleDLA
(``models/dla_simple.py``, 15,142,970); ``dla34_cifar`` is the ImageNet DLA-34
topology with a CIFAR stem (see :data:`CIFAR_STEM`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aila_jax.errors import ConfigError, DataError
from aila_jax.nn import dla as dla_nn

# name -> the official arguments. cardinality only matters for 'bottleneckx'.
VARIANTS: dict[str, dict[str, Any]] = {
    "dla34": dict(levels=(1, 1, 1, 2, 2, 1), channels=(16, 32, 64, 128, 256, 512), block="basic"),
    "dla46_c": dict(levels=(1, 1, 1, 2, 2, 1), channels=(16, 32, 64, 64, 128, 256), block="bottleneck"),
    "dla46x_c": dict(levels=(1, 1, 1, 2, 2, 1), channels=(16, 32, 64, 64, 128, 256), block="bottleneckx",
                     cardinality=32),
    "dla60x_c": dict(levels=(1, 1, 1, 2, 3, 1), channels=(16, 32, 64, 64, 128, 256), block="bottleneckx",
                     cardinality=32),
    "dla60": dict(levels=(1, 1, 1, 2, 3, 1), channels=(16, 32, 128, 256, 512, 1024), block="bottleneck"),
    "dla60x": dict(levels=(1, 1, 1, 2, 3, 1), channels=(16, 32, 128, 256, 512, 1024), block="bottleneckx",
                   cardinality=32),
    "dla102": dict(levels=(1, 1, 1, 3, 4, 1), channels=(16, 32, 128, 256, 512, 1024), block="bottleneck",
                   residual_root=True),
    "dla102x": dict(levels=(1, 1, 1, 3, 4, 1), channels=(16, 32, 128, 256, 512, 1024), block="bottleneckx",
                    cardinality=32, residual_root=True),
    "dla102x2": dict(levels=(1, 1, 1, 3, 4, 1), channels=(16, 32, 128, 256, 512, 1024), block="bottleneckx",
                     cardinality=64, residual_root=True),
    "dla169": dict(levels=(1, 1, 2, 3, 5, 1), channels=(16, 32, 128, 256, 512, 1024), block="bottleneck",
                   residual_root=True),
}

# The CIFAR stem of ``dla34_cifar``: a 3x3 base conv (not 7x7), and no down-sampling in level1 and level2
# (ImageNet: stride 2 each), so 32x32 inputs reach level5 at 4x4 (strides 1, 1, 1, 2, 4, 8), as in the
# kuangliu CIFAR DLA. Everything else is DLA-34's: channels, blocks, trees, init.
CIFAR_STEM = dict(base_kernel=3, level_strides=(1, 1, 1, 2, 2, 2))


def check_variant(name: str) -> dict[str, Any]:
  """The arguments of DLA variant ``name``; a ConfigError listing the variants otherwise."""
  if name not in VARIANTS:
    raise ConfigError(f"DLA variant: unknown {name!r}; expected one of {sorted(VARIANTS)}")
  return VARIANTS[name]


def nearest_multiple(n: int, m: int) -> int:
  return max(m, int(math.floor(n / m + 0.5)) * m)


def check_image(x, total_stride: int, model: str) -> None:
  """Images ``[B, H, W, C]`` with ``H`` and ``W`` multiples of ``total_stride`` (clear error otherwise)."""
  if x.ndim != 4:
    raise ValueError(f"{model}: expected images [B, H, W, C], got shape {tuple(x.shape)}")
  for side, n in (("height", x.shape[1]), ("width", x.shape[2])):
    if n % total_stride:
      raise ValueError(f"{model}: input {side} {n} is not a multiple of {total_stride} (the network's total "
                       f"stride: the pooled shortcuts round down where the strided convs round up); the "
                       f"nearest valid {side} is {nearest_multiple(n, total_stride)}")


class DLA(nn.Module):
  """The ImageNet DLA (official ``dla.DLA``); see the module docstring. Registered variants are subclasses
  with the defaults of :data:`VARIANTS` (``get_model('dla34', num_classes=10)``).

  ``head=False`` drops the classifier: the output is then the last level's
  ``(B, H/32, W/32, C_5)`` (used by :class:`DLASeg`).
  """
  num_classes: int = 1000
  levels: Sequence[int] = (1, 1, 1, 2, 2, 1)
  channels: Sequence[int] = (16, 32, 64, 128, 256, 512)
  block: str = "basic"
  cardinality: int = 1
  residual_root: bool = False
  base_kernel: int = 7
  level_strides: Sequence[int] = (1, 2, 2, 2, 2, 2)
  head: bool = True
  dtype: Any = jnp.float32

  variant = "dla"  # the registered name, for error messages (a class attribute, not a field)

  def _check(self):
    for key in ("levels", "channels", "level_strides"):
      v = getattr(self, key)
      if len(v) != 6 or not all(isinstance(i, (int, np.integer)) and i >= 1 for i in v):
        raise ConfigError(f"config.model.{key}: expected 6 positive ints (base level0 .. level5), got {v!r}")
    dla_nn.block_class(self.block)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    self._check()
    total = int(np.prod(self.level_strides))
    check_image(x, total, self.variant)
    c, lv, s = self.channels, self.levels, self.level_strides
    x = dla_nn.ConvBN(c[0], self.base_kernel, 1, dtype=self.dtype, name="base_layer")(x.astype(self.dtype),
                                                                                       train=train)
    outs = []
    x = dla_nn.ConvLevel(c[0], lv[0], s[0], self.dtype, name="level0")(x, train=train)
    outs.append(x)
    x = dla_nn.ConvLevel(c[1], lv[1], s[1], self.dtype, name="level1")(x, train=train)
    outs.append(x)
    for i in range(2, 6):
      x = dla_nn.Tree(lv[i], c[i], self.block, s[i], level_root=i > 2, root_residual=self.residual_root,
                      cardinality=self.cardinality, dtype=self.dtype, name=f"level{i}")(x, train=train)
      outs.append(x)  # (B, H / prod(s[:i+1]), W / ..., c[i])
    inter = {"levels": tuple(outs)}
    if not self.head:
      return x, inter
    feats = x.mean(axis=(1, 2))  # (B, C_5)
    inter["features"] = feats
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dla_nn.he_fan_out,
                      bias_init=dla_nn.torch_default_bias(c[5]), name="fc")(feats)
    return logits.astype(jnp.float32), inter


def _subclass(base: type, name: str, defaults: Mapping[str, Any], doc: str) -> type:
  """A registered model: ``base`` with new field defaults (so ``get_model(name, ...)`` sees the fields)."""
  cls_name = "".join(p.capitalize() for p in name.split("_"))
  ann = {k: base.__annotations__[k] for k in defaults}
  return type(cls_name, (base,), {"__module__": __name__, "__qualname__": cls_name, "__annotations__": ann,
                                  "__doc__": doc, "variant": name, **defaults})


DLA_MODELS: dict[str, type] = {
    name: _subclass(DLA, name, {**VARIANTS[name]}, f"DLA variant ``{name}``: {VARIANTS[name]}.")
    for name in VARIANTS
}
DLA_MODELS["dla34_cifar"] = _subclass(
    DLA, "dla34_cifar", {**VARIANTS["dla34"], **CIFAR_STEM, "num_classes": 10},
    "DLA-34 with the CIFAR stem :data:`CIFAR_STEM` (3x3 base, level1/level2 of stride 1): input sides "
    "multiples of 8, 32x32 -> level5 at 4x4.")


# --------------------------------------------------------------------------- weights from PyTorch

_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
                  "var": "running_var"}
_SEQUENTIAL = {"conv": "0", "bn": "1"}  # base_layer and project are Sequential(conv, bn) in PyTorch


def torch_name(path: Sequence[str]) -> str:
  """The PyTorch state-dict key of our variable at ``path`` (module names, then the leaf)."""
  mods, leaf = list(path[:-1]), path[-1]
  out = []
  for i, m in enumerate(mods):
    parent = mods[i - 1] if i else None
    if parent in ("base_layer", "project"):
      m = _SEQUENTIAL[m]
    elif parent in ("level0", "level1") and i == 1:  # ConvLevel: conv{i} -> 3i, bn{i} -> 3i + 1
      kind, idx = re.fullmatch(r"(conv|bn)(\d+)", m).groups()
      m = str(3 * int(idx) + (0 if kind == "conv" else 1))
    out.append(m)
  return ".".join(out + [_LEAF_TO_TORCH[leaf]])


def _torch_shape(shape: tuple) -> tuple:
  if len(shape) == 4:  # (kh, kw, I/g, O) -> (O, I/g, kh, kw)
    return (shape[3], shape[2], shape[0], shape[1])
  if len(shape) == 2:  # Dense (C, K) <- 1x1 conv (K, C, 1, 1)
    return (shape[1], shape[0], 1, 1)
  return tuple(shape)


def _from_torch(w: np.ndarray, ndim: int) -> np.ndarray:
  if ndim == 4:
    return np.transpose(w, (2, 3, 1, 0))
  if ndim == 2:
    return w.reshape(w.shape[0], w.shape[1]).T
  return w


def _flatten(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, Mapping):
      yield from _flatten(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _set(tree: dict, path, value) -> None:
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def _deep_trees(params, prefix=()):
  """Paths of the levels > 1 Trees (they hold tree1/tree2 and no root)."""
  for k, v in params.items():
    if isinstance(v, Mapping):
      if "tree1" in v and "root" not in v:
        yield ".".join(prefix + (k,))
      yield from _deep_trees(v, prefix + (k,))


def params_from_torch(state_dict: Mapping[str, Any], variant: str | DLA, *, num_classes: int | None = None
                      ) -> dict[str, Any]:
  """Maps a timm or official DLA state dict to our ``{'params': ..., 'batch_stats': ...}``.

  ``state_dict``: name -> array (numpy, or CPU torch tensors); ``variant``: a
  name of :data:`DLA_MODELS` or a :class:`DLA` instance; ``num_classes``
  defaults to the rows of ``fc.weight``. Conv weights ``(O, I/g, kh, kw)``
  become ``(kh, kw, I/g, O)``; BN ``weight``/``bias`` -> ``scale``/``bias``,
  ``running_mean``/``running_var`` -> ``batch_stats`` ``mean``/``var``; the fc
  ``(K, C, 1, 1)`` -> the Dense kernel ``(C, K)``. ``num_batches_tracked`` and
  the official file's unused ``project`` tensors of levels > 1 trees are
  ignored. Any missing, unexpected or mis-shaped tensor raises one
  :class:`~aila_jax.errors.DataError` naming all of them.

  Use with ``model.apply(variables, x, train=False)``. (PyTorch updates
  ``running_var`` with the unbiased batch variance, flax with the biased one:
  tiny, and irrelevant for evaluation with loaded statistics.)
  """
  sd = {k: np.asarray(v) for k, v in state_dict.items()}
  if isinstance(variant, str):
    if variant not in DLA_MODELS:
      raise ConfigError(f"params_from_torch: unknown DLA variant {variant!r}; expected one of {sorted(DLA_MODELS)}")
    if num_classes is None:
      num_classes = int(sd["fc.weight"].shape[0]) if "fc.weight" in sd else DLA_MODELS[variant].num_classes
    model = DLA_MODELS[variant](num_classes=num_classes)
  else:
    model = variant
  side = int(np.prod(model.level_strides))
  in_chans = int(sd["base_layer.0.weight"].shape[1]) if sd.get("base_layer.0.weight", np.zeros(0)).ndim == 4 else 3
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, side, side, in_chans)))
  deep = set(_deep_trees(shapes["params"]))
  out: dict[str, dict] = {"params": {}, "batch_stats": {}}
  used, missing, misshaped = set(), [], []
  for coll in ("params", "batch_stats"):
    for path, leaf in _flatten(shapes.get(coll, {})):
      key = torch_name(path)
      expect = _torch_shape(tuple(leaf.shape))
      if key not in sd:
        missing.append(f"{key} {expect}")
        continue
      used.add(key)
      w = sd[key]
      if tuple(w.shape) != expect:
        misshaped.append(f"{key}: expected {expect}, got {tuple(w.shape)}")
        continue
      _set(out[coll], path, jnp.asarray(_from_torch(w.astype(np.float32), len(leaf.shape))))
  dead = re.compile(r"^(.*)\.project\.[01]\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
  unexpected = []
  for k in sd:
    if k in used or k.endswith("num_batches_tracked") and k.rsplit(".", 1)[0] + ".running_mean" in used:
      continue
    m = dead.match(k)
    if m and m.group(1) in deep:
      continue
    unexpected.append(f"{k} {tuple(sd[k].shape)}")
  if missing or unexpected or misshaped:
    name = model.variant
    parts = [f"params_from_torch({name!r}): the state dict does not match the model"]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
      if items:
        parts.append(f"{len(items)} {label}: " + "; ".join(items))
    raise DataError("\n".join(parts))
  return out


# --------------------------------------------------------------------------- dense prediction

class DLASeg(nn.Module):
  r"""``dla_up.DLASeg``: a DLA backbone, :class:`~aila_jax.nn.dla.DLAUp`, a 1x1 classifier, bilinear up.

  With :math:`l = \log_2(\text{down\_ratio})`, levels :math:`l .. 5` of the
  backbone (no classifier) go through DLAUp (``scales`` :math:`2^0 .. 2^{5-l}`)
  to ``channels[l]`` at stride ``down_ratio``; ``fc`` (1x1 conv with bias)
  gives the class scores there and a *frozen* bilinear transposed convolution
  (kernel ``2 down_ratio``, a constant, not a parameter) brings them to the
  input size. Returns ``(logits (B, H, W, K), intermediates)`` with
  ``intermediates['levels']`` (the backbone's six), ``['features']`` (DLAUp's
  output) and ``['coarse_logits']`` (at stride ``down_ratio``). The official
  model applies ``log_softmax`` to the up-sampled scores; here that is the
  loss's job.
  """
  num_classes: int = 19
  base: str = "dla34"
  down_ratio: int = 2
  dtype: Any = jnp.float32

  variant = "dla_seg"

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.down_ratio not in (2, 4, 8, 16):
      raise ConfigError(f"config.model.down_ratio: expected 2, 4, 8 or 16, got {self.down_ratio!r}")
    check_variant(self.base)
    first = int(round(math.log2(self.down_ratio)))
    _, inter = DLA_MODELS[self.base](head=False, dtype=self.dtype, name="base")(x, train=train)
    levels = inter["levels"][first:]
    y = dla_nn.DLAUp(scales=tuple(2 ** i for i in range(len(levels))), dtype=self.dtype, name="dla_up")(
        levels, train=train)  # (B, H / down_ratio, W / down_ratio, channels[first])
    coarse = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=dla_nn.he_fan_out,
                     bias_init=dla_nn.torch_default_bias(y.shape[-1]), name="fc")(y)
    logits = dla_nn.bilinear_upsample(coarse, self.down_ratio)  # (B, H, W, K)
    return logits.astype(jnp.float32), {"levels": inter["levels"], "features": y,
                                        "coarse_logits": coarse.astype(jnp.float32)}


DLA34Up = _subclass(DLASeg, "dla34_up", {"base": "dla34"}, "DLASeg on DLA-34 (``dla_up.dla34up``).")


# --------------------------------------------------------------------------- CIFAR

class CifarDLA(nn.Module):
  r"""kuangliu/pytorch-cifar's DLA (``models/dla.py``), PyTorch's default init as the peer.

  ``base``, ``layer1``, ``layer2``: 3x3 conv (stride 1) - BN - ReLU at 16, 16,
  32 channels; ``layer3`` .. ``layer6``: :class:`~aila_jax.nn.dla.CifarTree`
  32 -> 64 (level 1, stride 1), 64 -> 128 and 128 -> 256 (level 2, stride 2),
  256 -> 512 (level 1, stride 2); global average pooling (the peer's
  ``avg_pool2d(4)`` at 32x32) and ``linear``. Input sides must be multiples of
  8. ``intermediates['levels']``: the outputs of ``layer1`` .. ``layer6``.
  """
  num_classes: int = 10
  dtype: Any = jnp.float32

  variant = "cifar_dla"
  tree = dla_nn.CifarTree

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    check_image(x, 8, self.variant)
    init = dla_nn.torch_default_kernel
    x = x.astype(self.dtype)
    outs = []
    for name, c in (("base", 16), ("layer1", 16), ("layer2", 32)):
      x = dla_nn.ConvBN(c, 3, dtype=self.dtype, kernel_init=init, name=name)(x, train=train)
      if name != "base":
        outs.append(x)
    for name, c, level, stride in (("layer3", 64, 1, 1), ("layer4", 128, 2, 2), ("layer5", 256, 2, 2),
                                   ("layer6", 512, 1, 2)):
      x = self.tree(c, level, stride, self.dtype, name=name)(x, train=train)
      outs.append(x)
    feats = x.mean(axis=(1, 2))  # (B, 512)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=init,
                      bias_init=dla_nn.torch_default_bias(512), name="linear")(feats)
    return logits.astype(jnp.float32), {"levels": tuple(outs), "features": feats}


class CifarSimpleDLA(CifarDLA):
  """kuangliu's SimpleDLA (``models/dla_simple.py``, 15,142,970 parameters at 10 classes): :class:`CifarDLA`
  with the plain binary :class:`~aila_jax.nn.dla.CifarSimpleTree` (each root reads its two sub-trees only)."""
  variant = "cifar_simple_dla"
  tree = dla_nn.CifarSimpleTree


# The registered classes under their names (Dla34, ..., Dla34Cifar, Dla34Up), so they pickle like any class.
globals().update({cls.__name__: cls for cls in DLA_MODELS.values()})
globals()[DLA34Up.__name__] = DLA34Up

# Everything this module registers in aila_jax.models.MODELS.
MODELS: dict[str, type] = {**DLA_MODELS, "dla34_up": DLA34Up, "cifar_dla": CifarDLA,
                           "cifar_simple_dla": CifarSimpleDLA}
