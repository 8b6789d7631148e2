"""resnet50_depth pinned against independent references: a numpy forward of the deep stem and of a strided
stage (stride on the 3x3 conv, torchvision v1.5), the documented initialisers and BN momentum, the
zero_init_last_bn override, and the ELA skip set wired to the right stage and block (AILA-1's uniform
start gives every depth weight and KL by hand)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.models import depth_resnet
from helpers import np_conv, random_variables

EPS = 1e-5  # the BatchNorm epsilon (torchvision's)


def _conv_bn(v, path, x, stride, pad):
  """ConvBN ``path`` (its module names) in eval mode: (conv(x) - running mean) / sqrt(running var + eps) * scale
  + bias."""
  p, st = v["params"], v["batch_stats"]
  for name in path.split("/"):
    p, st = p[name], st[name]
  y = np_conv(x, p["conv"]["kernel"], stride, pad)
  return ((y - np.asarray(st["bn"]["mean"])) / np.sqrt(np.asarray(st["bn"]["var"], np.float64) + EPS)
          * np.asarray(p["bn"]["scale"]) + np.asarray(p["bn"]["bias"]))


def _max_pool(x):  # 3x3, stride 2, padding 1 (padded with -inf)
  x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  ho, wo = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
  return np.max([x[:, i:i + 2 * ho - 1:2, j:j + 2 * wo - 1:2] for i in range(3) for j in range(3)], axis=0)


def _relu(x):
  return np.maximum(x, 0.0)


def test_deep_stem_and_strided_stage_match_numpy():
  # The deep stem (3x3 convs 32 (stride 2), 32, 64, BN-ReLU after each, max pool) and a stage-2 bottleneck whose
  # stride sits on the 3x3 conv (not the first 1x1), with a strided 1x1 projection: relu(F(x) + P(x)); then the
  # global average pool and the linear head. Residual mixer, eval mode, random weights and BN statistics.
  model = models.get_model("resnet50_depth", num_classes=3, stage_sizes=(1, 1), widths=(2, 2), stem="deep")
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3)))
  v = random_variables(model, x)
  logits, inter = jax.jit(model.apply)(v, x)
  y = _relu(_conv_bn(v, "stem_a", x, 2, 1))  # 8x8
  y = _relu(_conv_bn(v, "stem_b", y, 1, 1))
  y = _max_pool(_relu(_conv_bn(v, "stem", y, 1, 1)))  # 4x4
  stage = []
  for s, stride in ((0, 1), (1, 2)):
    b = f"stage{s}_block1"
    h = _relu(_conv_bn(v, f"{b}/a", y, 1, 0))
    h = _relu(_conv_bn(v, f"{b}/b", h, stride, 1))
    h = _conv_bn(v, f"{b}/c", h, 1, 0)
    y = _relu(h + _conv_bn(v, f"shortcut_{s}", y, stride, 0))
    stage.append(y)
  assert stage[1].shape == (2, 2, 2, 8)
  np.testing.assert_allclose(inter["stage_0"], stage[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(inter["stage_1"], stage[1], rtol=1e-4, atol=1e-5)
  features = stage[1].mean(axis=(1, 2))
  np.testing.assert_allclose(inter["features"], features, rtol=1e-4, atol=1e-5)
  head = v["params"]["head"]
  np.testing.assert_allclose(logits, features @ np.asarray(head["kernel"]) + np.asarray(head["bias"]),
                             rtol=1e-4, atol=1e-5)


def test_initialisers_and_zero_init_last_bn_override():
  # convs: N(0, 2 / fan_out) with fan_out = k*k*out (kaiming_normal_, mode='fan_out'): the 7x7x3x64 stem has
  # std sqrt(2 / 3136) (fan_in would give sqrt(2 / 147), 4.6x larger). Head kernel and bias: U(+-1/sqrt(fan_in))
  # with fan_in = the feature width 4 * 4 = 16 (bound 0.25), not the number of classes. zero_init_last_bn=True
  # overrides the residual mixer's default (torchvision's ones): the last BN of each branch starts at scale 0.
  model = models.get_model("resnet50_depth", num_classes=400, stage_sizes=(1,), widths=(4,), zero_init_last_bn=True)
  p = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))["params"]
  stem = np.asarray(p["stem"]["conv"]["kernel"])
  np.testing.assert_allclose(stem.std(), math.sqrt(2 / (7 * 7 * 64)), rtol=0.03)
  assert abs(stem.mean()) < 0.002
  for name in ("kernel", "bias"):
    w = np.abs(np.asarray(p["head"][name]))
    assert w.max() <= 0.25 and w.max() > 0.24, (name, w.max())  # 6400 / 400 uniform draws reach the bound
    np.testing.assert_allclose(w.mean(), 0.125, rtol=0.08)  # E|U(-b, b)| = b / 2
  np.testing.assert_array_equal(p["stage0_block1"]["c"]["bn"]["scale"], 0.0)
  np.testing.assert_array_equal(p["stage0_block1"]["b"]["bn"]["scale"], 1.0)


def test_bn_running_mean_uses_torch_momentum():
  # torch's BN momentum 0.1 is flax's 0.9: one training step moves the stem BN's running mean m to
  # 0.9 m + 0.1 x the batch mean of the stem convolution's output.
  model = models.get_model("resnet50_depth", num_classes=2, stage_sizes=(1,), widths=(2,))
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (2, 8, 8, 3)))
  v = random_variables(model, x)
  _, new = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
  conv = np_conv(x, v["params"]["stem"]["conv"]["kernel"], 2, 3)  # (2, 4, 4, 64)
  old = np.asarray(v["batch_stats"]["stem"]["bn"]["mean"])
  np.testing.assert_allclose(new["batch_stats"]["stem"]["bn"]["mean"], 0.9 * old + 0.1 * conv.mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)


def test_stage_of_zero_blocks_is_a_config_error():
  # the module's own check (get_model's type check catches it first; direct construction must too)
  with pytest.raises(ConfigError, match=r"config.model.stage_sizes: expected one block count >= 1"):
    depth_resnet.DepthResNet(num_classes=2, stage_sizes=(1, 0), widths=(2, 2)).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


def test_ela_skip_hits_the_named_block_and_passes_on_the_reused_mix():
  # AILA-1 with depth logits 0 mixes uniformly over slots 0..t-1, so every distribution is known by hand.
  # Skipping 'stage_1/block_3' (of stages of 2 and 4 blocks) makes block 3 of stage 1 -- and no block of stage 0
  # -- reuse block 2's weights (1/2, 1/2) and mix: x_3 = relu(h_3 + (x_0 + x_1) / 2); block 4 then reads
  # x_0..x_3 (x_3 the skipped block's output) uniformly. ELA's KLs with support='renormalize' follow: 0
  # everywhere but block 4, KL((1/2, 1/2, 0) || (1/3, 1/3, 1/3)) = log(3/2) ('pad' would give log 2 at block 2).
  model = models.get_model("resnet50_depth", num_classes=2, stage_sizes=(2, 4), widths=(4, 4), mixer="aila1",
                           skip_layers=("stage_1/block_3",), ela_stats=True, ela_kl_support="renormalize")
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  v = random_variables(model, x)
  (_, inter), cap = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))(
      v, x)
  half, quarter = [0.5, 0.5, 0.0], [0.25] * 4 + [0.0]
  np.testing.assert_allclose(inter["depth_weights"]["stage_0"], [[1, 0, 0], half], atol=1e-7)
  np.testing.assert_allclose(inter["depth_weights"]["stage_1"],
                             [[1, 0, 0, 0, 0], half + [0, 0], half + [0, 0], quarter], atol=1e-7)
  kl = {k: float(v) for k, v in inter["ela_kl"].items()}
  assert set(kl) == {"stage_0/block_2", "stage_1/block_2", "stage_1/block_3", "stage_1/block_4"}
  np.testing.assert_allclose([kl["stage_0/block_2"], kl["stage_1/block_2"], kl["stage_1/block_3"]], 0.0, atol=1e-6)
  np.testing.assert_allclose(kl["stage_1/block_4"], math.log(1.5), rtol=1e-5)
  c = cap["intermediates"]
  x0 = np.asarray(c["shortcut_1"]["__call__"][0])  # slot 0: the projected stage input
  xs = [x0] + [np.asarray(c[f"stage1_mixer{t}"]["__call__"][0][0]) for t in (1, 2, 3)]
  h3 = np.asarray(c["stage1_block3"]["__call__"][0])
  h4 = np.asarray(c["stage1_block4"]["__call__"][0])
  np.testing.assert_allclose(xs[3], _relu(h3 + (xs[0] + xs[1]) / 2), rtol=1e-5, atol=1e-6)
  assert not np.allclose(xs[3], _relu(h3 + (xs[0] + xs[1] + xs[2]) / 3), atol=1e-3)  # not the unskipped mix
  np.testing.assert_allclose(inter["stage_1"], _relu(h4 + sum(xs) / 4), rtol=1e-5, atol=1e-6)
