"""ELA skips in the depth mixers and backbones: a skipped block reuses the previous block's retrieval
(checked against numpy from the previous block's weights and the buffered slots), the parameter tree does
not change, the compiled step does less work, and bad skip sets are clear ConfigErrors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.errors import ConfigError
from aila_jax.models.depth_backbones import DepthMLP, check_skip_layers
from aila_jax.nn import depth as dn

B, T, P, D = 2, 5, 3, 8  # batch, buffer slots (4 blocks), positions, width
KW = {"aila1": {}, "aila2": {"num_heads": 2, "pooling": "pooled"}, "mrla_base": {"dim_per_head": 4}}


def _mixer(name, layer, **kw):
  return dn.make_mixer(name, layer=layer, depth=T, activation="none", norm="none", **KW[name], **kw)


def _layers(name, n, rng, skip=(), **kw):
  """Runs layers 1..n of a stage (own parameters each, seeded by layer); returns the outputs per layer."""
  x0 = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  hs = [jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32) for _ in range(n)]
  buf = dn.mixer_class(name).init_buffer(x0, T)
  out = []
  for t in range(1, n + 1):
    full = _mixer(name, t)
    variables = full.init(jax.random.PRNGKey(t), hs[t - 1], buf)
    mixer = _mixer(name, t, skip=t in skip, **kw)
    if t in skip:  # the skipped block has the same parameters as the full one
      assert jax.tree_util.tree_structure(mixer.init(jax.random.PRNGKey(t), hs[t - 1], buf)) == \
          jax.tree_util.tree_structure(variables)
    before = buf
    x, buf, w = mixer.apply(variables, hs[t - 1], buf)
    out.append(dict(x=x, w=np.asarray(w), buf=buf, before=before, h=hs[t - 1]))
  return out


def _retrieval(name, w, before, heads):
  """numpy: block t-1's retrieval from its weights over the slots it read (``before`` = its input buffer)."""
  if name == "aila1":
    return sum(w[i] * np.asarray(x) for i, x in enumerate(before["x"]))
  slots = before["x"] if name == "aila2" else before["v"] + (None,)  # MRLA: slots 1..t-1, +its own value
  r = 0.0
  for i, x in enumerate(slots):
    a = w[:, :, i] if name == "aila2" else w[:, :, i + 1]  # (B, N)
    if x is None:  # MRLA-base: block t-1's own value is in the buffer it wrote
      continue
    r = r + np.repeat(a, D // heads, axis=1)[:, None, :] * np.asarray(x)
  return r


@pytest.mark.parametrize("name", dn.SKIPPABLE)
def test_skipped_block_reuses_the_previous_retrieval(name):
  rng = np.random.default_rng(0)
  ref = _layers(name, 3, np.random.default_rng(0))
  got = _layers(name, 3, rng, skip=(3,))
  prev = got[1]  # block 2, computed in full
  heads = 2 if name == "aila2" else D // 4
  if name == "mrla_base":  # block 2 read slots 1..2: the cached value of block 1 and its own
    r = sum(np.repeat(prev["w"][:, :, s], D // heads, axis=1)[:, None, :] * np.asarray(prev["buf"]["v"][s - 1])
            for s in (1, 2))
    o = np.asarray(got[2]["h"]) + np.asarray(got[2]["before"]["prev"])
    expected = o + r
  else:
    r = _retrieval(name, prev["w"], prev["before"], heads)
    expected = np.asarray(got[2]["h"]) + r
  np.testing.assert_allclose(np.asarray(got[2]["x"]), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got[2]["w"], prev["w"])  # its distribution is block 2's
  assert not np.allclose(np.asarray(ref[2]["x"]), np.asarray(got[2]["x"]), atol=1e-3)  # and it differs
  for a, b in zip(ref[:2], got[:2]):  # blocks before the skip are untouched
    np.testing.assert_array_equal(np.asarray(a["x"]), np.asarray(b["x"]))
  if name == "mrla_base":  # skip_append (default): the skipped block still caches its key/value
    np.testing.assert_allclose(got[2]["buf"]["k"][2], ref[2]["buf"]["k"][2], rtol=1e-6)


def test_mrla_base_skip_without_append_leaves_a_hole_later_blocks_do_not_read():
  got = _layers("mrla_base", 4, np.random.default_rng(1), skip=(3,), skip_append=False)
  assert got[2]["buf"]["k"][2] is None and got[2]["buf"]["v"][2] is None
  w4 = got[3]["w"]  # (B, N, T): block 4 reads slots 1, 2, 4
  np.testing.assert_array_equal(w4[..., 3], 0.0)
  np.testing.assert_allclose(w4.sum(-1), 1.0, rtol=1e-6)
  assert (w4[..., [1, 2, 4]] > 0).all()


def test_skip_errors_are_clear():
  rng = np.random.default_rng(2)
  with pytest.raises(ConfigError, match="block 1 of a stage cannot be skipped"):
    _layers("aila2", 1, rng, skip=(1,))
  with pytest.raises(ConfigError, match="skip_append.*only 'mrla_base'"):
    _layers("aila1", 2, rng, skip=(2,), skip_append=False)
  with pytest.raises(ConfigError, match=r"no block\(s\) \['stage_1/block_2'\].*'stage_0/block_1'"):
    check_skip_layers(("stage_1/block_2",), mixer="aila2", blocks_per_stage=(3,))
  with pytest.raises(ConfigError, match=r"mixer 'residual' has no distribution.*\['aila1', 'aila2', 'mrla_base'\]"):
    check_skip_layers(("stage_0/block_2",), mixer="residual", blocks_per_stage=(3,))
  with pytest.raises(ConfigError, match="block 1 of a stage has no earlier retrieval"):
    check_skip_layers(("stage_0/block_1",), mixer="mrla_base", blocks_per_stage=(3,))
  with pytest.raises(ConfigError, match="config.model.skip_layers: expected a tuple"):
    check_skip_layers("stage_0/block_2", mixer="mrla_base", blocks_per_stage=(3,))
  x = jnp.ones((2, 5))
  with pytest.raises(ConfigError, match=r"config.ela.enabled.*'dense'.*\['aila1', 'aila2', 'mrla_base'\]"):
    DepthMLP(num_classes=2, width=8, depth=3, mixer="dense", ela_stats=True).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ConfigError, match=r"no block\(s\) \['stage_0/block_9'\]"):
    DepthMLP(num_classes=2, width=8, depth=3, mixer="aila1", skip_layers=("stage_0/block_9",)).init(
        jax.random.PRNGKey(0), x)


def _compiled(mixer, skip, grad):
  """The compiled forward (or gradient) of a 3-block DepthMLP on vectors: (number of exp ops, flops)."""
  kw = {"num_heads": 2} if mixer == "aila2" else None
  model = DepthMLP(num_classes=3, width=16, depth=3, mixer=mixer, skip_layers=skip, mixer_kwargs=kw)
  x = jnp.ones((8, 12))
  params = DepthMLP(num_classes=3, width=16, depth=3, mixer=mixer, mixer_kwargs=kw).init(
      jax.random.PRNGKey(0), x)["params"]
  f = lambda p: jnp.sum(model.apply({"params": p}, x)[0])
  compiled = jax.jit(jax.grad(f) if grad else f).lower(params).compile()
  cost = compiled.cost_analysis()
  return compiled.as_text().count(" exponential("), (cost[0] if isinstance(cost, list) else cost)["flops"]


@pytest.mark.parametrize("mixer,grad", [("aila1", False), ("aila2", False), ("mrla_base", True)])
def test_skips_remove_work_from_the_compiled_step(mixer, grad):
  """Skipping block 3 removes its softmax (AILA-2, MRLA-base) and flops (all), forward and backward."""
  exp_full, flops_full = _compiled(mixer, (), grad)
  exp_skip, flops_skip = _compiled(mixer, ("stage_0/block_3",), grad)
  assert flops_skip < flops_full, (flops_skip, flops_full)
  if mixer != "aila1":  # AILA-1's weights are a softmax of parameters, computed either way
    assert exp_skip < exp_full, (exp_skip, exp_full)


def test_backbone_kl_stats_match_scipy_on_the_returned_distributions():
  import scipy.stats  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 12))  # batch 1: depth_heads holds the per-sample distributions
  uniform = DepthMLP(num_classes=3, width=16, depth=4, mixer="aila1", ela_stats=True)
  _, inter = jax.jit(lambda: uniform.apply(uniform.init(jax.random.PRNGKey(0), x), x))()  # one compile, not op by op
  for t in (2, 3, 4):  # AILA-1 starts uniform over slots 0..t-1: KL(U_{t-1} + 0 || U_t) = log(t / (t - 1))
    np.testing.assert_allclose(float(inter["ela_kl"][f"stage_0/block_{t}"]), np.log(t / (t - 1)), rtol=1e-5)
  for mixer, first in (("aila2", 0), ("mrla_base", 1)):  # slots 0..t-1 (AILA-2) or 1..t (MRLA-base)
    model = DepthMLP(num_classes=3, width=16, depth=4, mixer=mixer, ela_stats=True,
                     mixer_kwargs={"num_heads": 2} if mixer == "aila2" else {"dim_per_head": 4})
    _, inter = jax.jit(lambda m=model: m.apply(m.init(jax.random.PRNGKey(0), x), x))()
    heads = np.asarray(inter["depth_heads"]["stage_0"])  # (layers, N, T)
    for t in (2, 3, 4):
      p = heads[t - 2][:, first:first + t]  # block t-1's distribution, zero on block t's new slot
      q = heads[t - 1][:, first:first + t]
      want = np.mean([scipy.stats.entropy(p[n], q[n]) for n in range(p.shape[0])])
      np.testing.assert_allclose(float(inter["ela_kl"][f"stage_0/block_{t}"]), want, rtol=1e-4, atol=1e-7)
