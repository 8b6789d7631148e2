"""depth_backbones pinned against independent references: the ELA skip set (exact sets, valid names, the
skipped block's output), the adjacent-KL statistics and depth-weight summaries on hand-made distributions,
numpy forwards of the CIFAR blocks and the MLP, the LSTM's last step, the zero head and the checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.models import depth_backbones as bb
from helpers import np_conv, random_variables


def _cbn(v, path, x, stride):
  """_ConvBN ``path`` in eval mode: (conv(x) - running mean) / sqrt(running var + 1e-5) * scale + bias."""
  p, st = v["params"], v["batch_stats"]
  for name in path.split("/"):
    p, st = p[name], st[name]
  y = np_conv(x, p["conv"]["kernel"], stride, "SAME")
  return ((y - np.asarray(st["bn"]["mean"])) / np.sqrt(np.asarray(st["bn"]["var"], np.float64) + 1e-5)
          * np.asarray(p["bn"]["scale"]) + np.asarray(p["bn"]["bias"]))


def _relu(x):
  return np.maximum(x, 0.0)


def test_check_skip_layers_returns_exactly_the_named_blocks():
  # names -> (stage, block) as written (0-based stage, 1-based block); every block but block 1 of a stage, the
  # last one included, is a valid name; the listed valid names are all the model's blocks.
  got = bb.check_skip_layers(("stage_1/block_3", "stage_0/block_2"), mixer="aila2", blocks_per_stage=(2, 3))
  assert got == frozenset({(1, 3), (0, 2)})
  assert bb.check_skip_layers((), mixer="residual", blocks_per_stage=(2,)) == frozenset()
  assert bb.check_skip_layers(None, mixer="residual", blocks_per_stage=(2,)) == frozenset()
  with pytest.raises(ConfigError, match=(r"no block\(s\) \['stage_0/block_3'\] in this model; the blocks are "
                                         r"\['stage_0/block_1', 'stage_0/block_2', 'stage_1/block_1', "
                                         r"'stage_1/block_2', 'stage_1/block_3'\]")):
    bb.check_skip_layers(("stage_0/block_3",), mixer="aila1", blocks_per_stage=(2, 3))
  with pytest.raises(ConfigError, match=r"\['stage_1/block_1'\] cannot be skipped"):
    bb.check_skip_layers(("stage_0/block_2", "stage_1/block_1"), mixer="mrla_base", blocks_per_stage=(2, 3))


def test_check_ela_rejects_an_unknown_kl_support():
  with pytest.raises(ConfigError, match=r"config.ela.kl_support: expected one of .*got 'both'"):
    bb.check_ela("aila1", True, "both")
  bb.check_ela("aila1", True, "renormalize")
  bb.check_ela("residual", False, "pad")  # ELA off: any mixer


def _ela_kl(weights, stage=0, **kw):
  """bb.ela_kl's entries for ``weights`` (one compiled call, not op by op)."""
  def f(w):
    inter = {}
    bb.ela_kl(list(w), inter, stage=stage, **kw)
    return inter["ela_kl"]
  return {k: float(v) for k, v in jax.jit(f)([jnp.asarray(w, jnp.float32) for w in weights]).items()}


def test_ela_kl_on_hand_made_distributions():
  # AILA-1 weights [T=4], blocks 1..3: KL(P_1 + 0 || P_2) with P_1 = (1), P_2 = (0, 1) is infinite -> KL_CAP;
  # KL(P_2 + 0 || P_3) with P_3 = (1/2, 1/2, 0) is log 2.
  kl = _ela_kl([[1.0, 0, 0, 0], [0.0, 1, 0, 0], [0.5, 0.5, 0, 0]], stage=2, mixer="aila1", mixer_kwargs={}, depth=4)
  assert set(kl) == {"stage_2/block_2", "stage_2/block_3"}
  assert kl["stage_2/block_2"] == bb.KL_CAP == 1e4
  np.testing.assert_allclose(kl["stage_2/block_3"], math.log(2), rtol=1e-6)
  # AILA-2 weights [B=2, heads=1, T=3]: the statistic is the batch mean of the per-sample KLs
  # KL((1) + 0 || (1/2, 1/2)) = log 2 and KL((1) + 0 || (0.9, 0.1)) = log(1 / 0.9)
  p1 = [[[1.0, 0, 0]], [[1.0, 0, 0]]]
  p2 = [[[0.5, 0.5, 0]], [[0.9, 0.1, 0]]]
  kl = _ela_kl([p1, p2], mixer="aila2", mixer_kwargs={}, depth=3)
  np.testing.assert_allclose(kl["stage_0/block_2"], (math.log(2) + math.log(1 / 0.9)) / 2, rtol=1e-6)
  # include_input=False: block 1 reads slot 0, block 2 slot 1 only (no pair: not one more slot), block 3
  # slots 1..2 (a pair with block 2): KL((1) + 0 || (1/4, 3/4)) = log 4
  kl = _ela_kl([[1.0, 0, 0, 0], [0.0, 1, 0, 0], [0.0, 0.25, 0.75, 0]], mixer="aila1",
               mixer_kwargs={"include_input": False}, depth=4)
  assert set(kl) == {"stage_0/block_3"}
  np.testing.assert_allclose(kl["stage_0/block_3"], math.log(4), rtol=1e-6)


def test_collect_averages_batch_and_heads():
  # depth_weights: per layer the mean over batch and heads; depth_heads: the mean over the batch only.
  w1 = np.array([[[1.0, 0, 0], [0, 1, 0]], [[0.5, 0.5, 0], [0, 0, 1]]])  # (B=2, N=2, T=3)
  w2 = np.array([[[0.2, 0.8, 0], [0.4, 0.6, 0]], [[0.6, 0.4, 0], [0.8, 0.2, 0]]])
  inter = {}
  bb._collect([jnp.asarray(w1), jnp.asarray(w2)], inter, "stage_1")  # pylint: disable=protected-access
  np.testing.assert_allclose(inter["depth_weights"]["stage_1"], [[0.375, 0.375, 0.25], [0.5, 0.5, 0.0]],
                             rtol=1e-6)
  np.testing.assert_allclose(inter["depth_heads"]["stage_1"],
                             [[[0.75, 0.25, 0], [0, 0.5, 0.5]], [[0.4, 0.6, 0], [0.6, 0.4, 0]]], rtol=1e-6)


def test_cifar_blocks_per_stage_and_depth_checks():
  assert [bb.cifar_blocks_per_stage(d, "basic") for d in (8, 20, 110)] == [1, 3, 18]
  assert [bb.cifar_blocks_per_stage(d, "bottleneck") for d in (11, 29)] == [1, 3]
  for depth, block in ((2, "basic"), (2, "bottleneck")):  # 6n + 2 / 9n + 2 with n >= 1: no network of 0 blocks
    with pytest.raises(ConfigError, match="config.model.depth"):
      bb.cifar_blocks_per_stage(depth, block)
  with pytest.raises(ConfigError, match="config.model.depth: expected an int >= 1, got 0"):
    models.get_model("depth_mlp", num_classes=2, width=4, depth=0).init(jax.random.PRNGKey(0), jnp.ones((1, 3)))


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_cifar_resnet_matches_numpy(block):
  # 3x3 stem (stride 1), stage 1 at stride 1, stage 2 at stride 2 on the branch's 3x3 conv (the first conv of a
  # BasicBlock, the middle one of a Bottleneck) and a strided 1x1 projection; relu(F(x) + shortcut(x)), the
  # global average pool and the head. Eval mode, random weights and BN statistics, 'SAME' padding.
  depth = {"basic": 8, "bottleneck": 11}[block]
  model = models.get_model("cifar_resnet", num_classes=3, depth=depth, block=block, widths=(2, 4))
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3)))
  v = random_variables(model, x)
  logits, inter = jax.jit(model.apply)(v, x)
  y = _relu(_cbn(v, "stem", x, 1))
  for s, stride in ((0, 1), (1, 2)):
    b = f"stage{s}_block1"
    if block == "basic":
      h = _cbn(v, f"{b}/b", _relu(_cbn(v, f"{b}/a", y, stride)), 1)
    else:
      h = _relu(_cbn(v, f"{b}/b", _relu(_cbn(v, f"{b}/a", y, 1)), stride))
      h = _cbn(v, f"{b}/c", h, 1)
    shortcut = _cbn(v, f"shortcut_{s}", y, stride) if f"shortcut_{s}" in v["params"] else y
    y = _relu(h + shortcut)
    np.testing.assert_allclose(inter[f"stage_{s}"], y, rtol=1e-4, atol=1e-5)
  assert y.shape[1:3] == (4, 4)
  features = y.mean(axis=(1, 2))
  np.testing.assert_allclose(inter["features"], features, rtol=1e-4, atol=1e-5)
  head = v["params"]["head"]
  np.testing.assert_allclose(logits, features @ np.asarray(head["kernel"]) + np.asarray(head["bias"]),
                             rtol=1e-4, atol=1e-5)


def test_cifar_conv_init_is_he_normal_fan_in():
  # He et al.'s init: std sqrt(2 / fan_in), fan_in = 3 * 3 * 64 (fan_out would be the same here, so 32 -> 64)
  conv = bb._ConvBN(64, 3)  # pylint: disable=protected-access
  k = jax.jit(conv.init, static_argnums=2)(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 32)), False)["params"]["conv"][
      "kernel"]
  np.testing.assert_allclose(np.asarray(k).std(), math.sqrt(2 / (9 * 32)), rtol=0.03)


def test_cifar_ela_skip_hits_the_named_stage_and_passes_on_the_reused_mix():
  # ResNet-14 (2 blocks a stage), AILA-1 with depth logits 0 (uniform), skip 'stage_1/block_2' only: stage 1's
  # block 2 reuses block 1's weights (1, 0, 0) and mix, x_2 = relu(h_2 + x_0) with x_0 the projected stage input;
  # stage 0 is untouched, (1/2, 1/2, 0). With support='renormalize' both adjacent KLs are 0 ('pad' would give
  # log 2 at stage 0).
  model = models.get_model("cifar_resnet", num_classes=2, depth=14, widths=(2, 2), mixer="aila1",
                           skip_layers=("stage_1/block_2",), ela_stats=True, ela_kl_support="renormalize")
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  v = random_variables(model, x)
  (_, inter), cap = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))(
      v, x)
  np.testing.assert_allclose(inter["depth_weights"]["stage_0"], [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-7)
  np.testing.assert_allclose(inter["depth_weights"]["stage_1"], [[1, 0, 0], [1, 0, 0]], atol=1e-7)
  np.testing.assert_allclose([float(inter["ela_kl"][f"stage_{s}/block_2"]) for s in (0, 1)], 0.0, atol=1e-6)
  c = cap["intermediates"]
  x0 = np.asarray(c["shortcut_1"]["__call__"][0])
  x1 = np.asarray(c["stage1_mixer1"]["__call__"][0][0])
  h2 = np.asarray(c["stage1_block2"]["__call__"][0])
  np.testing.assert_allclose(inter["stage_1"], _relu(h2 + x0), rtol=1e-5, atol=1e-6)
  assert not np.allclose(inter["stage_1"], _relu(h2 + (x0 + x1) / 2), atol=1e-3)  # not the unskipped mix


def _layer_norm(x, p):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + 1e-6) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def _dense(x, p):
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"])


def _gelu(x):  # the tanh approximation (flax's default)
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def test_depth_mlp_matches_numpy_and_renormalized_kl():
  # x_t = x_{t-1} + W_2 gelu(W_1 LN(x_{t-1})) (residual mixer, no activation), then LN and the head; dropout is
  # off in eval mode (no rng needed). Then AILA-1 with ela_kl_support='renormalize': uniform weights give KL 0
  # (with 'pad', log(t / (t - 1))).
  model = models.get_model("depth_mlp", num_classes=2, width=4, depth=2, mixer="residual", dropout_rate=0.5)
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3, 5, 1)))
  (out, inter), v = jax.jit(lambda x: model.init_with_output(jax.random.PRNGKey(1), x))(x)
  p = v["params"]
  y = _dense(x.reshape(3, 5), p["embed"])
  for t in (1, 2):
    y = y + _dense(_gelu(_dense(_layer_norm(y, p[f"ln{t}"]), p[f"fc{t}_a"])), p[f"fc{t}_b"])
    np.testing.assert_allclose(inter[f"layer_{t}"], y, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out, _dense(_layer_norm(y, p["ln_out"]), p["head"]), rtol=1e-4, atol=1e-5)
  assert np.all(np.asarray(p["head"]["kernel"]) != 0)  # zero_head=False (default): a random head, not zeros
  aila = models.get_model("depth_mlp", num_classes=2, width=4, depth=3, mixer="aila1", ela_stats=True,
                          ela_kl_support="renormalize")
  (_, inter), _ = jax.jit(lambda x: aila.init_with_output(jax.random.PRNGKey(1), x))(x)
  np.testing.assert_allclose([float(inter["ela_kl"][f"stage_0/block_{t}"]) for t in (2, 3)], 0.0, atol=1e-6)


def test_zero_head_outputs_exactly_zero():
  # zero_head: kernel and bias start at 0, so the untrained output is exactly 0 (the naive forecast)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 1))
  model = models.get_model("depth_mlp", num_classes=3, width=4, depth=1, zero_head=True)
  (out, _), _ = jax.jit(lambda x: model.init_with_output(jax.random.PRNGKey(1), x))(x)
  np.testing.assert_array_equal(out, 0.0)  # (the default, zero_head=False, is a random head: see the MLP test)


def test_depth_lstm_reads_the_last_step_skips_and_takes_2d_sequences():
  # The head reads the last time step: changing only the last input changes every output. A [B, L] sequence is
  # the [B, L, 1] one. Skip set and KL support reach the LSTM's mixers: AILA-1 (depth logits 0) over 3 layers
  # with block 3 skipped has weights (1), (1/2, 1/2), (1/2, 1/2) and 'renormalize' KLs 0 ('pad': log 2 at block 2).
  model = models.get_model("depth_lstm", num_classes=2, width=4, depth=3, mixer="aila1",
                           skip_layers=("stage_0/block_3",), ela_stats=True, ela_kl_support="renormalize")
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 5, 1)))
  moved = x.copy()
  moved[:, -1] += 1.0
  xx = np.concatenate([x, moved])  # one batch: the sequences and their moved copies
  v = random_variables(model, xx)
  f = jax.jit(model.apply)
  out, inter = f(v, xx)
  out = np.asarray(out)
  assert np.all(np.abs(out[2:] - out[:2]) > 1e-4), out
  np.testing.assert_allclose(inter["depth_weights"]["stage_0"], [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0]],
                             atol=1e-7)
  np.testing.assert_allclose([float(inter["ela_kl"][f"stage_0/block_{t}"]) for t in (2, 3)], 0.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(f(v, xx[..., 0])[0]), out, rtol=1e-6)
