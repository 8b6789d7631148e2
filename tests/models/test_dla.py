"""Deep Layer Aggregation: parameter counts against the official ones, timm logits from a fixture, errors."""
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError, DataError
from aila_jax.models import dla
from aila_jax.nn import dla as dla_nn
from aila_jax.train.state import param_count

FIXTURE = pathlib.Path(__file__).with_name("fixtures") / "dla_timm_fixture.npz"

# Weights + biases + BN scale/bias at 1000 classes: the official/timm counts (specs/dla.md; timm 1.0.31's
# sum(p.numel()) gives the same ten numbers, bench/dla_port_check.py).
IMAGENET = {"dla34": 15_742_104, "dla46_c": 1_301_400, "dla46x_c": 1_068_440, "dla60x_c": 1_319_832,
            "dla60": 22_036_632, "dla60x": 17_352_344, "dla102": 33_268_888, "dla102x": 26_309_272,
            "dla102x2": 41_282_200, "dla169": 53_389_720}
DLA34_NO_FC = IMAGENET["dla34"] - (512 * 1000 + 1000)
PINNED = {
    **{name: (1000, count) for name, count in IMAGENET.items()},
    # kuangliu/pytorch-cifar's DLA at 10 classes (its own sum of parameter sizes)
    "cifar_dla": (10, 16_291_386),
    "cifar_simple_dla": (10, 15_142_970),
    # DLA-34 with a 3x3 base conv (3 -> 16) instead of the 7x7, 10-class fc
    "dla34_cifar": (10, DLA34_NO_FC - 7 * 7 * 3 * 16 + 3 * 3 * 3 * 16 + 512 * 10 + 10),
    # backbone without its fc, DLAUp (2,310,400 in the official dla_up.py), 1x1 classifier 32 -> 19
    "dla34_up": (19, DLA34_NO_FC + 2_310_400 + 32 * 19 + 19),
}


def _shapes(model, side=32, batch=1):
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((batch, side, side, 3)))


def test_every_dla_model_is_pinned():
  assert set(PINNED) == set(dla.MODELS) and set(dla.MODELS) <= set(models.MODELS)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_param_counts(name):
  num_classes, count = PINNED[name]
  assert param_count(_shapes(models.get_model(name, num_classes=num_classes))["params"]) == count


def _root_inputs(params, prefix=""):
  out = {}
  for k, v in params.items():
    if isinstance(v, dict):
      if k == "root":
        out[prefix] = v["conv"]["kernel"].shape[2]
      else:
        out.update(_root_inputs(v, f"{prefix}.{k}" if prefix else k))
  return out


def test_root_input_widths_follow_the_official_tree():
  # specs/dla.md: dla34 level3 roots 256 and 448, level4 512 and 896, level5 1280;
  # dla60x_c level4 roots 256, 384, 256, 576 (children concatenated: x2, x1, the pooled input, earlier x1s).
  roots = _root_inputs(_shapes(dla.DLA_MODELS["dla34"]())["params"])
  assert {k: v for k, v in roots.items() if k[:6] in ("level3", "level4", "level5")} == {
      "level3.tree1": 256, "level3.tree2": 448, "level4.tree1": 512, "level4.tree2": 896, "level5": 1280}
  roots = _root_inputs(_shapes(dla.DLA_MODELS["dla60x_c"]())["params"])
  assert [roots[k] for k in ("level4.tree1.tree1", "level4.tree1.tree2", "level4.tree2.tree1",
                             "level4.tree2.tree2")] == [256, 384, 256, 576]


def test_cifar_root_widths_follow_kuangliu():
  # level-2 trees: root over [prev_root(x), level_1(x), left, right] = 4 * out; level 1: 2 * out.
  # (Both CIFAR models also give the peers' logits from converted weights: checked locally, not in CI.)
  roots = _root_inputs(_shapes(models.get_model("cifar_dla"))["params"])
  assert roots == {"layer3": 128, "layer4": 512, "layer4.level_1": 256, "layer5": 1024,
                   "layer5.level_1": 512, "layer6": 1024}
  roots = _root_inputs(_shapes(models.get_model("cifar_simple_dla"))["params"])
  assert roots == {"layer3": 128, "layer4": 256, "layer4.left_tree": 256, "layer4.right_tree": 256,
                   "layer5": 512, "layer5.left_tree": 512, "layer5.right_tree": 512, "layer6": 1024}


def test_levels_train_mode_and_bf16():
  model = models.get_model("dla46x_c", num_classes=10)
  variables = dla.params_from_torch(_fixture("dla46x_c")[0], "dla46x_c")  # cheaper than model.init on CPU
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 32, 3)), jnp.float32)
  train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  (logits, inter), updates = train(variables, x)
  chex.assert_shape(logits, (2, 10))
  assert [l.shape for l in inter["levels"]] == [(2, 32 // s, 32 // s, c) for s, c in
                                                zip((1, 2, 4, 8, 16, 32), (16, 32, 64, 64, 128, 256))]
  # training mode normalises with the batch statistics and moves the running averages by 0.1
  h = jax.lax.conv_general_dilated(x, variables["params"]["base_layer"]["conv"]["kernel"], (1, 1),
                                   ((3, 3), (3, 3)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   precision="highest")  # (B, H, W, 16)
  old = variables["batch_stats"]["base_layer"]["bn"]
  new = updates["batch_stats"]["base_layer"]["bn"]
  np.testing.assert_allclose(new["mean"], 0.9 * old["mean"] + 0.1 * h.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(new["var"], 0.9 * old["var"] + 0.1 * h.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
  # bf16 compute, float32 parameters and logits (shapes and dtypes only: bf16 convolutions are slow on CPU)
  bf16 = models.get_model("dla46x_c", num_classes=5, dtype=jnp.bfloat16)
  (logits, inter), v = jax.eval_shape(lambda x: bf16.init_with_output(jax.random.PRNGKey(0), x), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(v["params"]))
  assert logits.dtype == jnp.float32 and inter["features"].dtype == jnp.bfloat16
  assert all(l.dtype == jnp.bfloat16 for l in inter["levels"])


def test_cifar_models_shapes():
  for name in ("dla34_cifar", "cifar_dla", "cifar_simple_dla"):
    out = jax.eval_shape(lambda x, name=name: models.get_model(name, num_classes=10).init_with_output(
        jax.random.PRNGKey(0), x)[0], jnp.zeros((2, 32, 32, 3)))
    logits, inter = out
    assert logits.shape == (2, 10)
    assert [l.shape[1] for l in inter["levels"]] == [32, 32, 32, 16, 8, 4]
    assert inter["levels"][-1].shape[-1] == 512


# ------------------------------------------------------------------ weights from timm (fixture)

def _fixture(key):
  z = np.load(FIXTURE)
  sd = {k[len(key) + 4:]: z[k] for k in z.files if k.startswith(f"{key}/sd/")}
  official = {k[len(key) + 10:]: z[k] for k in z.files if k.startswith(f"{key}/official/")}
  return sd, official, z[f"{key}/x"], z[f"{key}/logits"]


def _tiny():
  return dla.DLA(num_classes=10, levels=(1, 1, 1, 2, 3, 1), channels=(8, 8, 16, 24, 24, 32), block="basic",
                 residual_root=True)


@pytest.mark.parametrize("key", ["dla46x_c", "tiny"])
def test_timm_logits_from_converted_weights(key):
  """timm's model (random weights and BN statistics, eval mode) and ours with the converted state dict."""
  sd, official, x, ref = _fixture(key)
  model = dla.DLA_MODELS["dla46x_c"](num_classes=10) if key == "dla46x_c" else _tiny()
  variables = dla.params_from_torch(sd, "dla46x_c" if key == "dla46x_c" else model)
  with jax.default_matmul_precision("highest"):
    logits, _ = jax.jit(lambda v, x: model.apply(v, x))(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  err = np.abs(np.asarray(logits) - ref).max() / np.abs(ref).max()
  assert err <= 1e-4, err
  # the official file's form: its dead `project` tensors of levels > 1 trees are ignored
  assert official
  again = dla.params_from_torch({**sd, **official}, "dla46x_c" if key == "dla46x_c" else model)
  chex.assert_trees_all_equal(again, variables)


def test_state_dict_errors_name_every_bad_tensor():
  sd, _, _, _ = _fixture("dla46x_c")
  bad = dict(sd)
  del bad["level3.tree2.root.bn.running_var"]
  bad["level2.tree1.conv2.weight"] = bad["level2.tree1.conv2.weight"][:, :, :2]
  bad["level9.conv.weight"] = np.zeros((1,), np.float32)
  bad["level2.project.0.weight_extra"] = np.zeros((1,), np.float32)
  # a `project` in a levels-1 tree that has none (level5: 128 -> 256 has one; level2.tree1 is a block)
  bad["level3.tree1.tree1.project.0.weight"] = np.zeros((64, 64, 1, 1), np.float32)
  with pytest.raises(DataError) as e:
    dla.params_from_torch(bad, "dla46x_c")
  msg = str(e.value)
  assert "1 missing: level3.tree2.root.bn.running_var (64,)" in msg
  assert "level2.tree1.conv2.weight: expected (64, 2, 3, 3), got (64, 2, 2, 3)" in msg
  for k in ("level9.conv.weight (1,)", "level2.project.0.weight_extra", "level3.tree1.tree1.project.0.weight"):
    assert k in msg
  assert "3 unexpected" in msg


def test_unknown_variant_and_bad_config():
  with pytest.raises(ConfigError, match=r"unknown DLA variant 'dla35'; expected one of \[.*'dla169'.*'dla34'"):
    dla.params_from_torch({}, "dla35")
  with pytest.raises(ConfigError, match=r"unknown 'resnet'; expected one of"):
    dla.check_variant("resnet")
  with pytest.raises(ConfigError, match=r"config.model.levels: expected 6 positive ints"):
    _shapes(models.get_model("dla34", num_classes=10, levels=(1, 1, 2, 2, 1)))
  with pytest.raises(ConfigError, match=r"config.model.channels: expected 6 positive ints"):
    _shapes(models.get_model("dla34", num_classes=10, channels=(16, 32, 64, 128, 256, 512, 1024)))
  with pytest.raises(ConfigError, match=r"config.model.block: expected one of"):
    _shapes(models.get_model("dla34", num_classes=10, block="dense"))


def test_input_sides_must_be_multiples_of_the_total_stride():
  model = models.get_model("dla34", num_classes=10)
  with pytest.raises(ValueError, match=r"dla34: input height 100 is not a multiple of 32 .* nearest valid "
                                       r"height is 96"):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 100, 64, 3)))
  with pytest.raises(ValueError, match=r"input width 90 is not a multiple of 32 .* nearest valid width is 96"):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 90, 3)))
  with pytest.raises(ValueError, match=r"dla34_cifar: input width 36 is not a multiple of 8 .* is 40"):
    jax.eval_shape(models.get_model("dla34_cifar").init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 36, 3)))
  with pytest.raises(ValueError, match=r"cifar_dla: input height 30 is not a multiple of 8 .* is 32"):
    jax.eval_shape(models.get_model("cifar_dla").init, jax.random.PRNGKey(0), jnp.zeros((1, 30, 32, 3)))


# ------------------------------------------------------------------ dense prediction

def _conv_transpose_numpy(x, w, stride, pad):
  """PyTorch's depthwise ConvTranspose2d by its definition: out[s*i + a - p] += x[i] * w[a] (NHWC, w (k, k, C))."""
  b, h, wd, c = x.shape
  k = w.shape[0]
  full = np.zeros((b, (h - 1) * stride + k, (wd - 1) * stride + k, c))
  for i in range(h):
    for j in range(wd):
      full[:, i * stride:i * stride + k, j * stride:j * stride + k] += x[:, i, j][:, None, None] * w
  return full[:, pad:full.shape[1] - pad, pad:full.shape[2] - pad]


@pytest.mark.parametrize("f", [2, 4])
def test_bilinear_kernel_and_upsample_are_the_transposed_conv(f):
  k = 2 * f
  c = (2 * f - 1 - f % 2) / (2 * f)
  w1 = np.array([1 - abs(i / f - c) for i in range(k)])
  np.testing.assert_allclose(dla_nn.bilinear_kernel(f), np.outer(w1, w1), rtol=1e-6)
  if f == 2:
    np.testing.assert_allclose(dla_nn.bilinear_kernel(2)[0], 0.25 * np.array([.25, .75, .75, .25]))
  rng = np.random.default_rng(f)
  x = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
  up = dla_nn.Upsample(f)
  v = up.init(jax.random.PRNGKey(0), x)
  np.testing.assert_allclose(v["params"]["up"]["kernel"][:, :, 0, 2], dla_nn.bilinear_kernel(f))  # initial
  np.testing.assert_allclose(up.apply(v, x), _conv_transpose_numpy(x, np.repeat(
      dla_nn.bilinear_kernel(f)[:, :, None], 5, -1), f, f // 2), atol=1e-5)
  np.testing.assert_allclose(dla_nn.bilinear_upsample(jnp.asarray(x), f), up.apply(v, x), atol=1e-6)
  # a trained (asymmetric) PyTorch kernel ports as its spatial flip
  w = rng.standard_normal((k, k, 5)).astype(np.float32)
  ours = up.apply({"params": {"up": {"kernel": jnp.asarray(w[::-1, ::-1, None])}}}, x)
  np.testing.assert_allclose(ours, _conv_transpose_numpy(x, w, f, f // 2), atol=1e-5)


def test_dla_up_parameters_and_shapes():
  # levels 1-5 of DLA-34 at 64x64: 32 @ 32, 64 @ 16, 128 @ 8, 256 @ 4, 512 @ 2
  levels = [jax.ShapeDtypeStruct((1, 64 // 2 ** i, 64 // 2 ** i, c), jnp.float32)
            for i, c in enumerate((32, 64, 128, 256, 512), start=1)]
  up = dla_nn.DLAUp()
  out, v = jax.eval_shape(lambda ls: up.init_with_output(jax.random.PRNGKey(0), ls), levels)
  assert param_count(v["params"]) == 2_310_400 and out.shape == (1, 32, 32, 32)
  assert sorted(v["params"]) == ["ida_0", "ida_1", "ida_2", "ida_3"]
  # ida_i aggregates the last i + 2 inputs into the width of the shallowest one
  assert [v["params"][f"ida_{i}"][f"node_{i + 1}"]["conv"]["kernel"].shape[-1] for i in range(4)] == [
      256, 128, 64, 32]
  model = models.get_model("dla34_up", num_classes=3)
  (logits, inter), v = jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x),
                                      jnp.zeros((1, 64, 96, 3)))
  chex.assert_shape([logits, inter["coarse_logits"], inter["features"]], [(1, 64, 96, 3), (1, 32, 48, 3),
                                                                          (1, 32, 48, 32)])
  # the final up-sampling is frozen (dla_nn.bilinear_upsample, a constant): the model's parameters are the
  # backbone without fc, DLAUp and the 1x1 classifier
  assert sorted(v["params"]) == ["base", "dla_up", "fc"] and "fc" not in v["params"]["base"]


def test_pytorch_initialisation():
  """Convs N(0, 2 / (k^2 C_out)) not truncated (the official loop), fc bias U(+-1/sqrt(C)), BN 1 and 0."""
  x = jnp.zeros((1, 8, 8, 64))
  v = dla_nn.ConvBN(256, 3).init(jax.random.PRNGKey(0), x)
  w = np.asarray(v["params"]["conv"]["kernel"]).ravel()  # 147,456 draws
  std = np.sqrt(2 / (9 * 256))
  assert abs(w.std() / std - 1) < 0.01 and abs(w.mean()) < 0.01 * std
  assert abs(np.mean(np.abs(w) > 2 * std) - 0.0455) < 0.003  # normal tails (a truncated normal has none)
  np.testing.assert_array_equal(v["params"]["bn"]["scale"], 1.0)
  np.testing.assert_array_equal(v["params"]["bn"]["bias"], 0.0)
  b = np.asarray(dla_nn.torch_default_bias(512)(jax.random.PRNGKey(1), (20000,)))
  assert b.max() <= 1 / np.sqrt(512) and b.min() >= -1 / np.sqrt(512) and b.std() > 0.95 / np.sqrt(3 * 512)
