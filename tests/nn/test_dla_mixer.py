"""DLA as a depth mixer (aila_jax.nn.depth.DLAMixer, mixer='dla'): tree grouping against the official Tree
recursion, the node against a numpy reference from the module's own parameters, backbones that train."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.nn import depth as dn


def official_tree_children(levels: int, level_root: bool, start: int = 0) -> dict[int, tuple[int, ...]]:
  """Which earlier outputs each root of the official ``Tree`` reads, by re-running its recursion.

  Blocks are numbered ``start + 1 .. start + 2**levels``; a root closing block ``t`` is named ``t`` and
  the tree's (pooled) input ``start``. Follows ucbdrive/dla ``Tree.forward``: ``children`` grows by the
  input when ``level_root`` and by ``tree1``'s output before ``tree2``; a levels-1 tree's root reads
  ``(x2, x1, *children)``. Returns ``{t: (x1, *children)}`` (x2 = block t itself is left out).
  """
  roots = {}

  def tree(levels, first, children, level_root):
    children = list(children) + ([first - 1] if level_root else [])
    if levels == 1:
      roots[first + 1] = (first,) + tuple(children)  # Root(x2 = block first+1, x1 = block first, ...)
      return first + 1
    size = 2 ** (levels - 1)
    out1 = tree(levels - 1, first, (), False)
    return tree(levels - 1, first + size, children + [out1], False)

  tree(levels, start + 1, (), level_root)
  return roots


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
@pytest.mark.parametrize("include_input", [True, False])
def test_tree_grouping_is_the_official_tree(levels, include_input):
  n = 2 ** levels
  want = official_tree_children(levels, include_input)
  got = {t: dn.dla_root_slots(t, n + 1, "tree", include_input) for t in range(1, n + 1)}
  assert {t: s for t, s in got.items() if s is not None} == want
  assert all(got[t] is None for t in range(1, n + 1, 2))  # odd layers: plain residual step


@pytest.mark.parametrize("n, sizes", [(3, (2, 1)), (6, (4, 2)), (9, (8, 1)), (18, (16, 2)), (7, (4, 2, 1))])
def test_tree_grouping_chains_complete_trees(n, sizes):
  """A stage of n blocks: complete trees of the binary digits of n, largest first, each reading its input."""
  want, start = {}, 0
  for size in sizes:
    if size > 1:
      want.update(official_tree_children(size.bit_length() - 1, True, start))
    start += size
  got = {t: dn.dla_root_slots(t, n + 1) for t in range(1, n + 1)}
  assert {t: s for t, s in got.items() if s is not None} == want


def test_all_grouping():
  assert dn.dla_root_slots(1, 5, "all") == (0,)
  assert dn.dla_root_slots(4, 5, "all") == (3, 2, 1, 0)
  assert dn.dla_root_slots(3, 5, "all", include_input=False) == (2, 1)
  assert dn.dla_root_slots(1, 5, "all", include_input=False) == ()


# --------------------------------------------------------------------------- the node against numpy

def _layer(layer, depth, shape, *, norm, activation, train, seed=0, **kw):
  """Runs layer ``layer`` of a DLA mixer on a random buffer; returns (x, new buffer, variables, updated, h, xs)."""
  rng = np.random.default_rng(seed)
  xs = tuple(jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(layer))
  h = jnp.asarray(rng.normal(size=shape), jnp.float32)
  buf = dn.DLAMixer.init_buffer(xs[0], depth)
  buf["x"] = xs
  mixer = dn.make_mixer("dla", layer=layer, depth=depth, norm=norm, activation=activation, **kw)
  variables = mixer.init(jax.random.PRNGKey(seed), h, buf, train=False)
  variables = {"params": dict(variables.get("params", {}))}
  c = shape[-1]
  if norm == "batch" and "root" in variables["params"]:  # non-trivial running statistics: eval mode checked too
    variables["batch_stats"] = {"norm": {"mean": jnp.asarray(rng.normal(size=c), jnp.float32),
                                         "var": jnp.asarray(rng.uniform(0.5, 2.0, size=c), jnp.float32)}}
  if "norm" in variables["params"]:  # non-trivial affine too
    variables["params"]["norm"] = {"scale": jnp.asarray(rng.uniform(0.5, 1.5, size=c), jnp.float32),
                                   "bias": jnp.asarray(rng.normal(size=c), jnp.float32)}
  (x, new_buf, w), updated = mixer.apply(variables, h, buf, train=train, mutable=["batch_stats"])
  assert w is None
  return np.asarray(x), new_buf, variables, updated, np.asarray(h), [np.asarray(a) for a in xs]


def _reference(h, xs, slots, variables, *, norm, activation, train, root_residual=True):
  """The DLA node from the formula, in numpy float64, with the module's parameters."""
  act = (lambda a: np.maximum(a, 0.0)) if activation == "relu" else (lambda a: a)
  o = act(h + xs[-1])
  if slots is None:
    return o, None
  y = np.concatenate([o] + [xs[i] for i in slots], axis=-1) @ np.asarray(variables["params"]["root"]["kernel"],
                                                                         np.float64)
  stats = None
  axes = tuple(range(y.ndim - 1))
  p = variables["params"].get("norm")
  if norm == "batch":
    if train:
      mean, var = y.mean(axes), y.var(axes)
      old = variables["batch_stats"]["norm"]
      stats = (0.9 * np.asarray(old["mean"]) + 0.1 * mean, 0.9 * np.asarray(old["var"]) + 0.1 * var)
    else:
      mean, var = (np.asarray(variables["batch_stats"]["norm"][k], np.float64) for k in ("mean", "var"))
    y = (y - mean) / np.sqrt(var + 1e-5) * np.asarray(p["scale"]) + np.asarray(p["bias"])
  elif norm == "layer":
    mean, var = y.mean(-1, keepdims=True), y.var(-1, keepdims=True)
    y = (y - mean) / np.sqrt(var + 1e-6) * np.asarray(p["scale"]) + np.asarray(p["bias"])
  else:
    y = y + np.asarray(variables["params"]["root"]["bias"])
  return act(y + o if root_residual else y), stats


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("layer, grouping, root_residual", [(4, "tree", True), (2, "tree", False),
                                                             (3, "all", True), (3, "tree", True)])
def test_cnn_node_equals_numpy(train, layer, grouping, root_residual):
  """cifar_resnet's setting: images, BatchNorm (batch statistics in training, running ones in eval), ReLU."""
  shape, depth = (3, 4, 4, 5), 5
  x, new_buf, variables, updated, h, xs = _layer(layer, depth, shape, norm="batch", activation="relu",
                                                 train=train, grouping=grouping, root_residual=root_residual)
  slots = dn.dla_root_slots(layer, depth, grouping)
  want, stats = _reference(h, xs, slots, variables, norm="batch", activation="relu", train=train,
                           root_residual=root_residual)
  np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(new_buf["x"][layer], x)
  assert len(new_buf["x"]) == layer + 1
  if stats is not None:  # running statistics updated with PyTorch momentum 0.1 and the biased batch variance
    np.testing.assert_allclose(updated["batch_stats"]["norm"]["mean"], stats[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["norm"]["var"], stats[1], rtol=1e-4, atol=1e-5)
  if slots is None:
    assert "root" not in variables["params"]


@pytest.mark.parametrize("norm", ["layer", "none"])
def test_sequence_node_equals_numpy(norm):
  """depth_mlp / depth_lstm's setting: [B, L, D] or [B, D], LayerNorm (or none: a bias), no activation."""
  for shape, layer in (((2, 3, 6), 4), ((4, 6), 2)):
    x, _, variables, _, h, xs = _layer(layer, 5, shape, norm=norm, activation="none", train=True)
    want, _ = _reference(h, xs, dn.dla_root_slots(layer, 5), variables, norm=norm, activation="none", train=True)
    np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-4)


def test_node_parameters():
  """A node's 1x1 kernel has one input row block per child, in DLA's init N(0, 2 / C)."""
  _, _, variables, _, _, _ = _layer(4, 9, (64, 2, 2, 32), norm="batch", activation="relu", train=False)
  k = np.asarray(variables["params"]["root"]["kernel"])
  assert k.shape == (3 * 32, 32)  # o_4, x_3, x_2 (8 blocks: layer 4 closes the subtree of blocks 1-4)
  assert "bias" not in variables["params"]["root"]
  assert abs(k.std() - np.sqrt(2 / 32)) < 0.03


def test_errors():
  shape = (2, 4, 4, 3)
  with pytest.raises(ConfigError, match="mixer_kwargs.grouping"):
    _layer(2, 5, shape, norm="batch", activation="relu", train=False, grouping="binary")
  with pytest.raises(ConfigError, match="takes no option"):
    dn.check_mixer_kwargs("dla", {"levels": 2})
  dn.check_mixer_kwargs("dla", {"grouping": "all", "include_input": False, "root_residual": False})
  with pytest.raises(ConfigError, match="layers run from 1 to 4"):
    dn.dla_root_slots(5, 5)
  with pytest.raises(ConfigError, match="no distribution over depth"):
    models.get_model("cifar_resnet", num_classes=10, depth=20, mixer="dla",
                     skip_layers=("stage_0/block_2",)).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


# --------------------------------------------------------------------------- backbones

def _train_step_lowers_loss(model, x, y, lr):
  """Init, one SGD step and the loss before and after it, in one jitted call (one compilation)."""

  @jax.jit
  def run(x):
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    state = {k: v for k, v in variables.items() if k != "params"}

    def loss(p):
      (logits, _), new = model.apply({"params": p, **state}, x, train=True, mutable=list(state))
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

    (l0, new), g = jax.value_and_grad(loss, has_aux=True)(variables["params"])
    l1, _ = loss(jax.tree.map(lambda p, d: p - lr * d, variables["params"], g))
    return variables, new, g, l0, l1

  variables, new, g, l0, l1 = run(x)
  assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(g))
  assert float(l1) < float(l0), (float(l0), float(l1))
  return variables, new


def test_cifar_resnet_trains_with_dla():
  model = models.get_model("cifar_resnet", num_classes=10, depth=20, widths=(4, 4, 8), mixer="dla")
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(8, 8, 8, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 8))
  variables, new = _train_step_lowers_loss(model, x, y, 0.1)
  for s in range(3):  # n = 3 blocks: one tree of 2 (a node at block 2 over x_1, x_0) and a single block
    assert set(variables["params"][f"stage{s}_mixer2"]) == {"root", "norm"}
    assert variables["params"][f"stage{s}_mixer2"]["root"]["kernel"].shape[0] == 3 * (4, 4, 8)[s]
    assert f"stage{s}_mixer1" not in variables["params"] and f"stage{s}_mixer3" not in variables["params"]
  assert "stage0_mixer2" in new["batch_stats"]


@pytest.mark.parametrize("grouping", ["tree", "all"])
def test_depth_mlp_and_lstm_with_dla(grouping):
  kw = dict(mixer="dla", mixer_kwargs={"grouping": grouping}, width=8, depth=4)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 6))
  variables, _ = _train_step_lowers_loss(models.get_model("depth_mlp", num_classes=3, **kw), x, y, 0.05)
  nodes = sorted(k for k in variables["params"] if k.startswith("mixer"))
  assert nodes == (["mixer2", "mixer4"] if grouping == "tree" else ["mixer1", "mixer2", "mixer3", "mixer4"])
  if grouping == "all":
    return
  lstm = models.get_model("depth_lstm", num_classes=2, **kw)
  seq = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
  out, _ = jax.jit(lambda s: lstm.apply(lstm.init(jax.random.PRNGKey(0), s), s))(seq)
  assert out.shape == (2, 2) and np.isfinite(np.asarray(out)).all()
