"""DLA pieces the model-level tests leave loose, each against an independent numpy reference written from
specs/dla.md (the official ucbdrive/dla code): IDAUp/DLAUp's aggregation order and projection, kuangliu's
CIFAR Tree root order and block shortcut, ConvLevel with several convs (and its PyTorch names), the odd-factor
bilinear kernel of fill_up_weights, and the initialisers of the classifiers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.models import dla
from aila_jax.nn import dla as dla_nn
from helpers import np_conv

BN_EPS = 1e-5


# --------------------------------------------------------------------------- numpy references

def _conv(x, w, stride=1, pad=None):
  """Cross-correlation NHWC x HWIO (groups 1), symmetric zero padding ``pad`` (default k // 2), float64."""
  return np_conv(x, w, stride, w.shape[0] // 2 if pad is None else pad)


def _bn(x, p, s):
  """Eval-mode BatchNorm with running statistics ``s`` and affine ``p``."""
  return (x - s["mean"]) / np.sqrt(s["var"] + BN_EPS) * p["scale"] + p["bias"]


def _relu(x):
  return np.maximum(x, 0.0)


def _bilinear_1d(f):
  """fill_up_weights' per-axis profile, hand-written for the factors used here (f = 2, 4)."""
  return {2: np.array([.25, .75, .75, .25]),
          4: np.array([.125, .375, .625, .875, .875, .625, .375, .125])}[f]


def _up_torch(x, f):
  """PyTorch ConvTranspose2d(C, C, 2f, stride f, padding f // 2, groups C) with the bilinear kernel, by its
  definition out[f i + a - p] += x[i] w[a] (NHWC)."""
  w = np.outer(_bilinear_1d(f), _bilinear_1d(f))
  b, h, wd, c = x.shape
  k, p = 2 * f, f // 2
  full = np.zeros((b, (h - 1) * f + k, (wd - 1) * f + k, c))
  for i in range(h):
    for j in range(wd):
      full[:, i * f:i * f + k, j * f:j * f + k] += x[:, i, j][:, None, None] * w[:, :, None]
  return full[:, p:full.shape[1] - p, p:full.shape[2] - p]


def _randomize(variables, seed):
  """Every parameter and BN statistic redrawn (variances positive); the up-sampling kernels kept bilinear."""
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name = jax.tree_util.keystr(path)
    if "'up'" in name:
      return x
    v = rng.uniform(0.5, 2.0, size=x.shape) if "'var'" in name else rng.normal(size=x.shape) * 0.5
    return jnp.asarray(v, x.dtype)

  return jax.tree_util.tree_map_with_path(draw, variables)


def _np(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def _conv_bn(x, p, s, relu=True, stride=1):
  y = _bn(_conv(x, p["conv"]["kernel"], stride), p["bn"], s["bn"])
  return _relu(y) if relu else y


def _ida_up_ref(layers, factors, out_dim, p, s):
  """Official IDAUp.forward: layers[i] = up_i(proj_i(l)); x = layers[0]; x = node_i(cat[x, layers[i]])."""
  ups = []
  for i, (l, f) in enumerate(zip(layers, factors)):
    if l.shape[-1] != out_dim:
      l = _conv_bn(l, p[f"proj_{i}"], s[f"proj_{i}"])  # 1x1 conv + BN + ReLU
    if f != 1:
      l = _up_torch(l, f)
    ups.append(l)
  x, ys = ups[0], []
  for i in range(1, len(ups)):
    x = _conv_bn(np.concatenate([x, ups[i]], -1), p[f"node_{i}"], s[f"node_{i}"])
    ys.append(x)
  return x, ys


# --------------------------------------------------------------------------- IDAUp / DLAUp

def _layers(rng, shapes):
  return [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]


def test_ida_up_equals_the_official_forward():
  """Projection (1x1 + BN + ReLU where the width differs), bilinear up-sampling, node on cat[x, layer_i]."""
  rng = np.random.default_rng(0)
  layers = _layers(rng, [(2, 8, 8, 3), (2, 4, 4, 5), (2, 2, 2, 4)])
  ida = dla_nn.IDAUp(3, (1, 2, 4))
  v = _randomize(ida.init(jax.random.PRNGKey(0), layers), 1)
  x, ys = ida.apply(v, layers)
  p, s = _np(v["params"]), _np(v["batch_stats"])
  want, want_ys = _ida_up_ref([np.asarray(l, np.float64) for l in layers], (1, 2, 4), 3, p, s)
  np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-4)
  assert len(ys) == 2
  for a, b in zip(ys, want_ys):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_dla_up_equals_the_official_forward():
  """Official DLAUp.forward: for i: x, y = ida_i(layers[-i-2:]); layers[-i-1:] = y (in order)."""
  rng = np.random.default_rng(2)
  channels, scales = (2, 3, 4, 5), (1, 2, 4, 8)  # 4 inputs: ida_1's two outputs both feed ida_2, in order
  layers = _layers(rng, [(2, 16 // s, 16 // s, c) for c, s in zip(channels, scales)])
  up = dla_nn.DLAUp(scales=scales)
  v = _randomize(up.init(jax.random.PRNGKey(0), layers), 3)
  got = up.apply(v, layers)
  p, s = _np(v["params"]), _np(v["batch_stats"])
  ls, sc = [np.asarray(l, np.float64) for l in layers], list(scales)
  n = len(ls)
  for i in range(n - 1):
    j = n - 2 - i
    x, y = _ida_up_ref(ls[j:], [t // sc[j] for t in sc[j:]], channels[j], p[f"ida_{i}"], s[f"ida_{i}"])
    ls[j + 1:] = y
    sc[j + 1:] = [sc[j]] * (n - 1 - j)
  np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- bilinear kernel, odd factor

def test_bilinear_kernel_odd_factor_is_fill_up_weights():
  # fill_up_weights on a 6x6 kernel: f = 3, c = (2f - 1 - f % 2) / 2f = 4/6, w_i = 1 - |i/3 - 2/3|
  w1 = np.array([1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3, 0.0])
  np.testing.assert_allclose(dla_nn.bilinear_kernel(3), np.outer(w1, w1), atol=1e-6)


# --------------------------------------------------------------------------- CIFAR (kuangliu)

def _cifar_block_ref(x, p, s, stride):
  y = _relu(_bn(_conv(x, p["conv1"]["kernel"], stride), p["bn1"], s["bn1"]))
  y = _bn(_conv(y, p["conv2"]["kernel"]), p["bn2"], s["bn2"])
  sc = x
  if "shortcut_conv" in p:
    sc = _bn(_conv(x, p["shortcut_conv"]["kernel"], stride, pad=0), p["shortcut_bn"], s["shortcut_bn"])
  return _relu(y + sc)


@pytest.mark.parametrize("stride, cin", [(2, 3), (1, 4)])
def test_cifar_block_equals_kuangliu(stride, cin):
  """kuangliu BasicBlock: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut), shortcut = bn(1x1 strided conv)."""
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(2, 6, 6, cin)), jnp.float32)
  block = dla_nn.CifarBlock(4, stride)
  v = _randomize(block.init(jax.random.PRNGKey(0), x), 5)
  assert ("shortcut_conv" in v["params"]) == (stride != 1 or cin != 4)
  want = _cifar_block_ref(np.asarray(x, np.float64), _np(v["params"]), _np(v["batch_stats"]), stride)
  np.testing.assert_allclose(block.apply(v, x), want, rtol=1e-4, atol=1e-4)


def test_cifar_tree_level2_root_order_is_kuangliu():
  """kuangliu Tree(level=2).forward: xs = [prev_root(x)]; x = level_1(x); xs += [x]; x = left(x); xs += [x];
  x = right(x); xs += [x]; root(cat xs) = relu(bn(conv1x1(cat xs))) (no residual). The blocks' own maths is
  pinned above; this checks the whole level-2 tree from numpy blocks."""
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
  tree = dla_nn.CifarTree(4, 2, 2)
  v = _randomize(tree.init(jax.random.PRNGKey(0), x), 7)
  p, s = _np(v["params"]), _np(v["batch_stats"])
  xn = np.asarray(x, np.float64)

  def root(xs, p, s):
    return _relu(_bn(_conv(np.concatenate(xs, -1), p["conv"]["kernel"]), p["bn"], s["bn"]))

  def level1(x, p, s, stride):  # kuangliu Tree(level=1): root([left(x), right(left(x))])
    a = _cifar_block_ref(x, p["left_node"], s["left_node"], stride)
    b = _cifar_block_ref(a, p["right_node"], s["right_node"], 1)
    return root([a, b], p["root"], s["root"])

  xs = [_cifar_block_ref(xn, p["prev_root"], s["prev_root"], 2)]
  y = level1(xn, p["level_1"], s["level_1"], 2)
  xs.append(y)
  y = _cifar_block_ref(y, p["left_node"], s["left_node"], 1)
  xs.append(y)
  y = _cifar_block_ref(y, p["right_node"], s["right_node"], 1)
  xs.append(y)
  want = root(xs, p["root"], s["root"])
  np.testing.assert_allclose(tree.apply(v, x), want, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- ConvLevel with several convs

def test_conv_level_with_two_convs():
  """Official _make_conv_level: [conv3x3(stride if i == 0 else 1), BN, ReLU] * convs, a Sequential whose
  conv i / bn i are the state-dict indices 3i / 3i + 1."""
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
  lv = dla_nn.ConvLevel(4, convs=2, stride=2)
  v = _randomize(lv.init(jax.random.PRNGKey(0), x), 9)
  p, s = _np(v["params"]), _np(v["batch_stats"])
  y = np.asarray(x, np.float64)
  for i, st in enumerate((2, 1)):
    y = _relu(_bn(_conv(y, p[f"conv{i}"]["kernel"], st), p[f"bn{i}"], s[f"bn{i}"]))
  np.testing.assert_allclose(lv.apply(v, x), y, rtol=1e-4, atol=1e-4)
  names = {("level1", "conv1", "kernel"): "level1.3.weight", ("level1", "bn1", "scale"): "level1.4.weight",
           ("level0", "bn1", "mean"): "level0.4.running_mean", ("level0", "conv0", "kernel"): "level0.0.weight",
           ("level1", "bn2", "var"): "level1.7.running_var"}
  for path, want in names.items():
    assert dla.torch_name(path) == want


# --------------------------------------------------------------------------- initialisers

def test_dla_classifier_initialisation():
  """Official DLA fc = Conv2d(C5, K, 1) with bias: weight N(0, 2 / K) (the init loop's n = 1*1*out),
  bias PyTorch's default U(+-1/sqrt(C5))."""
  model = dla.DLA(num_classes=4000, levels=(1, 1, 1, 1, 1, 1), channels=(4, 4, 4, 4, 16, 64), block="basic")
  v = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  k = np.asarray(v["params"]["fc"]["kernel"])  # (64, 4000)
  b = np.asarray(v["params"]["fc"]["bias"])
  assert abs(k.std() / np.sqrt(2 / 4000) - 1) < 0.03
  bound = 1 / np.sqrt(64)
  assert b.min() >= -bound and b.max() <= bound and b.max() > 0.98 * bound and b.min() < -0.98 * bound


def test_cifar_pytorch_default_kernel_init():
  """kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)), fan_in = k*k*C_in (the CIFAR models' peer init)."""
  v = dla_nn.CifarBlock(64).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 32)))
  w = np.asarray(v["params"]["conv1"]["kernel"]).ravel()  # 18,432 draws
  bound = 1 / np.sqrt(9 * 32)
  assert w.max() <= bound and w.min() >= -bound and w.max() > 0.99 * bound
  assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.02
