r"""An ImageNet-shaped ResNet (He et al. 2016) whose residual additions are a pluggable depth mixer.

:class:`DepthResNet` (registered as ``resnet50_depth``; ``stage_sizes`` makes
ResNet-101/152) follows torchvision's ``resnet50`` layout, which is also the
layout of the official MRLA ResNets (github joyfang1106/MRLA,
``resnet/models/resnet_mrla_{light,base}.py``):

* stem: 7x7 convolution, 64 channels, stride 2, BN, ReLU, 3x3 max pooling with
  stride 2 (``stem='standard'``), or MRLA-base's deep stem (``stem='deep'``:
  3x3 convs of 32 (stride 2), 32 and 64 channels with BN-ReLU between them,
  then the BN-ReLU and max pooling of the standard stem);
* four stages of ``stage_sizes`` Bottleneck blocks (default ``(3, 4, 6, 3)``)
  at widths 64, 128, 256, 512 (outputs 4x wider), stride 2 on the 3x3
  convolution of each stage's first block (stages 2-4; torchvision's "v1.5"),
  1x1 conv + BN projection shortcuts where the shape changes;
* global average pooling and a linear head.

The mixer replaces ``relu(F(x) + shortcut(x))`` exactly as in
:class:`~aila_jax.models.depth_backbones.CifarResNet`: per stage a depth buffer
whose slot 0 is the (projected) stage input, and block :math:`t`'s mixer
combines its branch output :math:`h_t` with the buffer. The MRLA mixers put
their module where the official code does: after ``relu(F(x) + identity)``,
added as ``out + DP(BN(mrla(out, identity)))`` (light) or
``out + DP(relu(BN(mrla(out))))`` (base), with the cache restarting at each
stage. With ``mixer='residual'`` the network *is* torchvision's ResNet-50
(25,557,032 parameters at 1000 classes); with ``mrla_light`` (standard stem)
and ``mrla_base`` (``stem='deep'``) it has the parameter counts of the
official ``resnet50_mrlal`` (25,738,452) and ``resnet50_mrlab`` (25,742,580).

Initialisation as torchvision and the official MRLA code: convolutions
:math:`\mathcal N(0, 2/\text{fan\_out})` (He normal, fan-out mode), BN scale 1
and bias 0, the head :math:`\mathcal U(\pm 1/\sqrt{\text{fan\_in}})` (PyTorch's
``nn.Linear`` default). ``zero_init_last_bn`` starts the last BN of every
residual branch at zero scale (each block then starts as its shortcut);
``None`` (default) follows the mixer: on for the MRLA mixers with their
official initialisation (:func:`aila_jax.nn.depth.zero_init_last_bn`), as
both official MRLA ResNets do, off otherwise, as torchvision does.

ELA's static skip set (``skip_layers``, names ``'stage_{s}/block_{t}'``),
``ela_stats`` and ``ela_kl_support`` are plumbed as in ``CifarResNet``. The model
returns ``(logits, intermediates)`` with ``depth_weights``/``depth_heads`` per
stage like the other backbones.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aila_jax.errors import ConfigError
from aila_jax.models import depth_backbones as bb
from aila_jax.nn import depth as depth_nn

STEMS = ("standard", "deep")

he_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # kaiming_normal_(mode='fan_out')


def torch_linear_init(key, shape, dtype=jnp.float32, *, fan_in: int):
  r""":math:`\mathcal U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`: PyTorch's default for
  ``nn.Linear`` / ``nn.Conv`` weights (``kaiming_uniform_(a=sqrt(5))``) and biases."""
  bound = 1.0 / jnp.sqrt(fan_in)
  return jax.random.uniform(key, shape, dtype, -bound, bound)


class ConvBN(nn.Module):
  """Convolution (no bias, He fan-out init) then BatchNorm; ``zero_scale`` starts the BN scale at 0."""
  features: int
  kernel: int = 3
  stride: int = 1
  zero_scale: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    pad = self.kernel // 2  # torchvision's symmetric padding (differs from 'SAME' at stride 2, even sizes)
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride), padding=[(pad, pad)] * 2,
                use_bias=False, kernel_init=he_fan_out, dtype=self.dtype, name="conv")(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                        scale_init=nn.initializers.zeros if self.zero_scale else nn.initializers.ones,
                        name="bn")(x)


class Bottleneck(nn.Module):
  """conv1x1 - BN - ReLU - conv3x3(stride) - BN - ReLU - conv1x1(4 width) - BN: the residual branch."""
  width: int
  stride: int = 1
  zero_last_bn: bool = False
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(ConvBN(self.width, 1, 1, dtype=self.dtype, name="a")(x, train))
    x = nn.relu(ConvBN(self.width, 3, self.stride, dtype=self.dtype, name="b")(x, train))
    return ConvBN(self.width * 4, 1, 1, zero_scale=self.zero_last_bn, dtype=self.dtype, name="c")(x, train)


class DepthResNet(nn.Module):
  """ImageNet ResNet (bottleneck, torchvision layout) with a depth mixer; see the module docstring."""
  num_classes: int = 1000
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  widths: Sequence[int] = (64, 128, 256, 512)
  stem: str = "standard"
  mixer: str = "residual"
  mixer_kwargs: Any = None
  drop_path: float = 0.0
  zero_init_last_bn: bool | None = None
  skip_layers: Sequence[str] = ()
  ela_stats: bool = False
  ela_kl_support: str = "pad"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if x.ndim != 4:
      raise ValueError(f"resnet50_depth: expected images [B, H, W, C], got shape {x.shape}")
    if len(self.stage_sizes) != len(self.widths) or any(int(n) < 1 for n in self.stage_sizes):
      raise ConfigError(f"config.model.stage_sizes: expected one block count >= 1 per stage width "
                        f"{tuple(self.widths)}, got {tuple(self.stage_sizes)}")
    if self.stem not in STEMS:
      raise ConfigError(f"config.model.stem: expected one of {STEMS}, got {self.stem!r}")
    mixer_cls = depth_nn.mixer_class(self.mixer)
    mkw = bb._mixer_kwargs(self.mixer, self.mixer_kwargs)  # pylint: disable=protected-access
    bb.check_ela(self.mixer, self.ela_stats, self.ela_kl_support)
    skips = bb.check_skip_layers(self.skip_layers, mixer=self.mixer,
                                 blocks_per_stage=tuple(int(n) for n in self.stage_sizes))
    zero_last = (depth_nn.zero_init_last_bn(self.mixer, mkw) if self.zero_init_last_bn is None
                 else bool(self.zero_init_last_bn))
    inter: dict = {}
    x = x.astype(self.dtype)
    if self.stem == "standard":
      x = nn.relu(ConvBN(64, 7, 2, dtype=self.dtype, name="stem")(x, train))
    else:  # MRLA-base's deep stem: conv-BN-ReLU, conv-BN-ReLU, conv, then the stem's BN-ReLU
      x = nn.relu(ConvBN(32, 3, 2, dtype=self.dtype, name="stem_a")(x, train))
      x = nn.relu(ConvBN(32, 3, 1, dtype=self.dtype, name="stem_b")(x, train))
      x = nn.relu(ConvBN(64, 3, 1, dtype=self.dtype, name="stem")(x, train))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=[(1, 1), (1, 1)])
    for s, (n, width) in enumerate(zip(self.stage_sizes, self.widths)):
      n = int(n)
      stride = 1 if s == 0 else 2
      out_width = width * Bottleneck.expansion
      x0 = x
      if stride != 1 or x.shape[-1] != out_width:
        x0 = ConvBN(out_width, 1, stride, dtype=self.dtype, name=f"shortcut_{s}")(x, train)
      buffer = mixer_cls.init_buffer(x0, n + 1)
      weights = []
      for t in range(1, n + 1):
        h = Bottleneck(width, stride if t == 1 else 1, zero_last, self.dtype, name=f"stage{s}_block{t}")(x, train)
        mixer = depth_nn.make_mixer(self.mixer, layer=t, depth=n + 1, activation="relu", drop_path=self.drop_path,
                                    norm="batch", dtype=self.dtype, skip=(s, t) in skips,
                                    name=f"stage{s}_mixer{t}", **mkw)
        x, buffer, w = mixer(h, buffer, train=train)
        weights.append(w)
      bb._collect(weights, inter, f"stage_{s}")  # pylint: disable=protected-access
      if self.ela_stats:
        bb.ela_kl(weights, inter, stage=s, mixer=self.mixer, mixer_kwargs=mkw, depth=n + 1,
                  support=self.ela_kl_support)
      inter[f"stage_{s}"] = x
    if self.ela_stats:
      bb.require_ela_pairs(inter, model="resnet50_depth", layout=f"config.model.stage_sizes={tuple(self.stage_sizes)}")
    x = x.mean(axis=(1, 2))  # (B, C)
    inter["features"] = x
    fan_in = x.shape[-1]
    init = lambda key, shape, dtype=jnp.float32: torch_linear_init(key, shape, dtype, fan_in=fan_in)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=init, bias_init=init, name="head")(x)
    return logits.astype(jnp.float32), inter
