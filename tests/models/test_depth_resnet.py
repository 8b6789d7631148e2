"""resnet50_depth: the ImageNet ResNet-50 with a depth mixer (issue 16, item 6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.train.state import param_count


def _count(**kw):
  model = models.get_model("resnet50_depth", num_classes=1000, **kw)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)), train=False))
  return param_count(shapes["params"]), shapes


def test_parameter_counts_equal_torchvision_and_official_mrla():
  # torchvision.models.resnet50() and the official MRLA repo (joyfang1106/MRLA @ c238ee8, resnet/models):
  # sum(p.numel() for p in model.parameters()) for resnet50, resnet50_mrlal, resnet50_mrlab (1000 classes)
  n, shapes = _count(mixer="residual")
  assert n == 25_557_032
  assert shapes["params"]["stage3_block3"]["c"]["conv"]["kernel"].shape == (1, 1, 512, 2048)
  assert shapes["params"]["stem"]["conv"]["kernel"].shape == (7, 7, 3, 64)
  assert _count(mixer="mrla_light")[0] == 25_738_452
  assert _count(mixer="mrla_base", stem="deep")[0] == 25_742_580


def test_small_resnet_runs_every_mixer_and_zero_inits_mrla():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  for mixer in ("residual", "mrla_base"):  # the others share this plumbing (mixers tested in tests/nn)
    model = models.get_model("resnet50_depth", num_classes=5, stage_sizes=(2, 1), widths=(4, 8), mixer=mixer)
    v = model.init(jax.random.PRNGKey(1), x)
    logits, inter = model.apply(v, x, train=False)
    assert logits.shape == (2, 5) and inter["stage_1"].shape == (2, 4, 4, 32)  # 32 -> 16 -> 8 -> 4, 4 x 8 wide
    scale = np.asarray(v["params"]["stage0_block1"]["c"]["bn"]["scale"])
    assert np.all(scale == (0.0 if mixer.startswith("mrla") else 1.0))
    if mixer == "mrla_base":
      assert inter["depth_weights"]["stage_0"].shape == (2, 3)


def test_residual_block_is_relu_of_branch_plus_shortcut():
  """With every BN at identity statistics the first block is relu(branch(x) + shortcut(x))."""
  model = models.get_model("resnet50_depth", num_classes=3, stage_sizes=(1,), widths=(2,))
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 3))
  v = model.init(jax.random.PRNGKey(1), x)
  _, inter = model.apply(v, x, train=False)
  p = v["params"]
  eps = 1e-5

  def conv_bn(y, m, stride, pad):  # eval-mode BN with running mean 0, var 1
    k = np.asarray(p[m]["conv"]["kernel"]) if isinstance(m, str) else np.asarray(m["conv"]["kernel"])
    y = jax.lax.conv_general_dilated(y, k, (stride, stride), [(pad, pad)] * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return np.asarray(y) / np.sqrt(1 + eps)

  y = np.maximum(conv_bn(x, "stem", 2, 3), 0)
  y = np.asarray(jax.lax.reduce_window(y, -np.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                       [(0, 0), (1, 1), (1, 1), (0, 0)]))
  blk = p["stage0_block1"]
  h = np.maximum(conv_bn(y, blk["a"], 1, 0), 0)
  h = np.maximum(conv_bn(h, blk["b"], 1, 1), 0)
  h = conv_bn(h, blk["c"], 1, 0)
  want = np.maximum(h + conv_bn(y, "shortcut_0", 1, 0), 0)
  np.testing.assert_allclose(np.asarray(inter["stage_0"]), want, rtol=1e-4, atol=1e-5)


def test_bad_config():
  x = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ConfigError, match="config.model.stem"):
    models.get_model("resnet50_depth", num_classes=2, stem="tiny").init(jax.random.PRNGKey(0), x)
  with pytest.raises(ConfigError, match="config.model.stage_sizes"):
    models.get_model("resnet50_depth", num_classes=2, stage_sizes=(1, 1)).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ConfigError, match="skip_layers"):
    models.get_model("resnet50_depth", num_classes=2, stage_sizes=(2,), widths=(4,), mixer="aila1",
                     skip_layers=("stage_0/block_7",)).init(jax.random.PRNGKey(0), x)
