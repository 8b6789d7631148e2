"""Depth mixers (aila_jax.nn.depth): the one interface, each mixer's formula, causality, errors."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.attention import depth as da
from aila_jax.errors import ConfigError
from aila_jax.nn import depth as dn

B, T, P, D = 2, 4, 3, 8  # batch, buffer slots, positions, width


def _buffer(name, rng, layer):
  """A buffer as the backbone holds it before ``layer`` (slots 0..layer-1 written)."""
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  buf = dn.mixer_class(name).init_buffer(normal(B, P, D), T)
  if "x" in buf:
    buf["x"] = buf["x"] + tuple(normal(B, P, D) for _ in range(1, layer))
  if "k" in buf:  # MRLA-base's cache of slots 1 .. layer-1
    buf["k"] = tuple(normal(B, D) for _ in range(1, layer))
    buf["v"] = tuple(normal(B, P, D) for _ in range(1, layer))
  return buf


def _stacked(buf):
  """The history slots of a buffer stacked into ``[B, slots, P, D]`` (for reference formulas)."""
  return jnp.stack(buf["x"], axis=1)


def _run(name, layer, h, buf, train=False, perturb=False, **kw):
  """``perturb``: every parameter moved off its initial value by N(0, 0.3^2) noise (LayerNorm scales and biases
  included), so that formulas are checked away from the identity scales and zero biases."""
  mixer = dn.make_mixer(name, layer=layer, depth=T, activation="none", norm="layer", **kw)
  rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
  variables = mixer.init(rngs, h, buf, train=False)
  if perturb:
    leaves, tree = jax.tree_util.tree_flatten(variables["params"])
    keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
    variables = {**variables, "params": jax.tree_util.tree_unflatten(
        tree, [a + 0.3 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)])}
  (x, new_buf, w), state = mixer.apply(variables, h, buf, train=train, rngs={"dropout": jax.random.PRNGKey(2)},
                                       mutable=["intermediates"])
  return x, new_buf, w, state.get("intermediates", {}), variables


@pytest.mark.parametrize("name", sorted(dn.MIXERS))
def test_interface_shapes_and_buffer_write(name):
  rng = np.random.default_rng(0)
  buf = _buffer(name, rng, 3)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  x, new_buf, w, _, _ = _run(name, 3, h, buf)
  chex.assert_shape(x, (B, P, D))
  chex.assert_tree_all_finite(x)
  # + what an ELA-skipped next block reuses, and AILA-2's standardised key inputs (keys='folded', the default)
  assert set(new_buf) - {"retrieval", "weights"} == set(buf) | ({"k_in"} if name == "aila2" else set())
  for key in set(buf) - {"prev"}:  # the per-slot tuples grow by the slot this layer writes
    assert isinstance(new_buf[key], tuple) and len(new_buf[key]) == len(buf[key]) + 1, key
    for old, new in zip(buf[key], new_buf[key]):
      assert new is old
  if "x" in new_buf:
    np.testing.assert_allclose(new_buf["x"][3], x, rtol=1e-6)
  else:
    np.testing.assert_allclose(new_buf["prev"], x, rtol=1e-6)
  if "k" in new_buf:
    chex.assert_shape(new_buf["k"][-1], (B, D))
    chex.assert_shape(new_buf["v"][-1], (B, P, D))
  if name in ("none", "residual", "mrla_light", "dla"):
    assert w is None
  else:
    w = np.asarray(w)
    assert w.shape[-1] == T
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)  # a distribution over depth
    if name == "mrla_base":  # layer 3 reads its cache, slots 1 .. 3: never the input slot 0
      np.testing.assert_array_equal(w[..., 0], 0.0)
      assert (w[..., 1:4] > 0).all()
    else:  # layer 3 reads slots 0 .. 2: causal, no slot of its own or later
      np.testing.assert_array_equal(w[..., 3:], 0.0)
      assert (w[..., :3] > 0).all()


@pytest.mark.parametrize("name", ["dense", "aila1", "aila2", "mrla_base"])
def test_buffer_must_hold_exactly_the_earlier_slots(name):
  """Layer t reads a tuple of exactly t slots (t - 1 cached keys/values for MRLA-base); else a clear error."""
  rng = np.random.default_rng(1)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  kw = {"dim_per_head": 4} if name == "mrla_base" else {}
  _run(name, 2, h, _buffer(name, rng, 2), **kw)  # the right count
  key, want = ("k", 1) if name == "mrla_base" else ("x", 2)
  for layer in (1, 3):  # one slot too few, one too many
    buf = _buffer(name, rng, layer)
    with pytest.raises(ValueError, match=rf"depth mixer '{name}' at layer 2: buffer\['{key}'\] holds "
                                         rf"{layer - (name == 'mrla_base')} slot\(s\) but layer 2 expects "
                                         rf"exactly {want}"):
      _run(name, 2, h, buf, **kw)
  buf = _buffer(name, rng, 2)
  buf[key] = jnp.stack(buf[key], axis=1)  # the old stacked layout
  with pytest.raises(ValueError, match=rf"buffer\['{key}'\] must be a tuple of per-slot arrays"):
    _run(name, 2, h, buf, **kw)


@pytest.mark.parametrize("name", ["dense", "aila1", "aila2"])
def test_layer_reads_only_its_readable_slots(name):
  """include_input=False: slot 0 (x_0) does not change the output of layer t > 1."""
  rng = np.random.default_rng(11)
  buf = _buffer(name, rng, 3)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  x1 = _run(name, 3, h, buf, include_input=False)[0]
  buf2 = dict(buf, x=(buf["x"][0] + 123.0,) + buf["x"][1:])
  x2 = _run(name, 3, h, buf2, include_input=False)[0]
  np.testing.assert_allclose(x1, x2, rtol=1e-6)


def test_residual_none_dense_formulas():
  rng = np.random.default_rng(2)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("residual", rng, 1)
  np.testing.assert_allclose(_run("residual", 1, h, buf)[0], h + buf["prev"], rtol=1e-6)
  np.testing.assert_allclose(_run("none", 1, h, buf)[0], h, rtol=1e-6)
  dbuf = _buffer("dense", rng, 3)
  np.testing.assert_allclose(_run("dense", 3, h, dbuf)[0], h + _stacked(dbuf)[:, :3].mean(1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(_run("dense", 3, h, dbuf, include_input=False)[0], h + _stacked(dbuf)[:, 1:3].mean(1),
                             rtol=1e-5, atol=1e-6)


def test_aila1_initialisations():
  rng = np.random.default_rng(3)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("aila1", rng, 3)
  # softmax with zero logits: the mean of the readable layers
  np.testing.assert_allclose(_run("aila1", 3, h, buf)[0], h + _stacked(buf).mean(1), rtol=1e-5, atol=1e-6)
  # raw weights start one-hot on the previous layer: exactly the residual network
  np.testing.assert_allclose(_run("aila1", 3, h, buf, normalization="none")[0], h + buf["x"][2],
                             rtol=1e-6)
  # residual=True adds the plain skip beside the mix
  np.testing.assert_allclose(_run("aila1", 3, h, buf, residual=True)[0],
                             h + buf["x"][2] + _stacked(buf).mean(1), rtol=1e-5, atol=1e-6)


def test_aila1_weights_are_learned():
  rng = np.random.default_rng(4)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("aila1", rng, 3)
  mixer = dn.make_mixer("aila1", layer=3, depth=T, activation="none")
  variables = mixer.init(jax.random.PRNGKey(0), h, buf)
  g = jax.grad(lambda v: mixer.apply(v, h, buf)[0].sum())(variables)
  logits_grad = np.asarray(g["params"]["depth_logits"])
  assert np.abs(logits_grad[:3]).sum() > 0 and np.all(logits_grad[3:] == 0)


@pytest.mark.parametrize("pooling", ["per_token", "pooled"])
@pytest.mark.parametrize("query", ["block", "previous"])
def test_aila2_options(pooling, query):
  rng = np.random.default_rng(5)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("aila2", rng, 3)
  x, _, w, inter, _ = _run("aila2", 3, h, buf, pooling=pooling, query=query, num_heads=2)
  chex.assert_shape(w, (B, 2, T))
  # the output is h plus a per-head convex combination of the readable layers
  mix = np.asarray(x - h).reshape(B, P, 2, 4)
  lo = np.asarray(_stacked(buf)).reshape(B, 3, P, 2, 4).min(1)
  hi = np.asarray(_stacked(buf)).reshape(B, 3, P, 2, 4).max(1)
  assert np.all(mix >= lo - 1e-5) and np.all(mix <= hi + 1e-5)
  assert "depth_weights" in inter


def test_aila2_folded_keys_pooled_formula_and_same_parameters():
  # keys='folded' computes q . (W_k k_i) as (W_k folded into q) . k_i: the pooled formula in numpy, the same
  # parameters (names, shapes and initial values) as keys='slots', and the same gradients
  rng = np.random.default_rng(14)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("aila2", rng, 3)
  heads, d = 2, D // 2
  _, _, _, _, folded_init = _run("aila2", 3, h, buf, num_heads=heads, pooling="pooled", keys="folded")
  _, _, _, _, slot_init = _run("aila2", 3, h, buf, num_heads=heads, pooling="pooled", keys="slots")
  chex.assert_trees_all_equal(folded_init, slot_init)
  # away from the initial LayerNorm scales (1) and biases (0), whose folding the formula checks
  x, _, w, _, variables = _run("aila2", 3, h, buf, num_heads=heads, pooling="pooled", keys="folded", perturb=True)
  assert np.abs(np.asarray(variables["params"]["k_norm"]["bias"])).min() > 0
  prm = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])

  def ln(a, p):
    mu, var = a.mean(-1, keepdims=True), a.var(-1, keepdims=True)
    return (a - mu) / np.sqrt(var + 1e-6) * p["scale"] + p["bias"]

  slots = np.stack([np.asarray(s, np.float64) for s in buf["x"]])  # (3, B, P, D)
  q = (ln(np.asarray(h, np.float64).mean(1), prm["q_norm"]) @ prm["query"]["kernel"]).reshape(B, heads, d)
  k = (ln(slots.mean(2), prm["k_norm"]) @ prm["key"]["kernel"]).reshape(3, B, heads, d)
  logits = np.einsum("bnd,ibnd->ibn", q, k) / np.sqrt(d)
  alpha = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)  # (3, B, N)
  mix = np.einsum("ibn,ibpnd->bpnd", alpha, slots.reshape(3, B, P, heads, d)).reshape(B, P, D)
  np.testing.assert_allclose(np.asarray(x), np.asarray(h) + mix, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(w)[..., :3], alpha.transpose(1, 2, 0), rtol=1e-4, atol=1e-6)
  for pooling in ("pooled", "per_token"):
    grads = []
    for keys in ("folded", "slots"):
      mixer = dn.make_mixer("aila2", layer=3, depth=T, activation="none", norm="layer", num_heads=heads,
                            pooling=pooling, keys=keys)
      grads.append(jax.grad(lambda v, hh: jnp.sum(jnp.sin(mixer.apply(v, hh, buf)[0])), argnums=(0, 1))(
          variables, h))
    for a, b in zip(jax.tree_util.tree_leaves(grads[0]), jax.tree_util.tree_leaves(grads[1])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("keys", ["slots", "folded"])
def test_aila2_projections_reduce_same_parameters_gradients_and_no_dot(keys):
  # projections='reduce': the parameters of nn.Dense (names, shapes, initial values), the gradients of the
  # matrix products ('dot'), and a compiled gradient without any dot (the point of the option)
  rng = np.random.default_rng(15)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("aila2", rng, 3)
  inits = [_run("aila2", 3, h, buf, num_heads=2, keys=keys, projections=pr)[-1] for pr in ("reduce", "dot")]
  chex.assert_trees_all_equal(*inits)
  variables = _run("aila2", 3, h, buf, num_heads=2, keys=keys, perturb=True)[-1]
  grads, hlo = [], []
  for pr in ("reduce", "dot"):
    mixer = dn.make_mixer("aila2", layer=3, depth=T, activation="none", norm="layer", num_heads=2, keys=keys,
                          projections=pr)
    g = jax.jit(jax.grad(lambda v, hh: jnp.sum(jnp.sin(mixer.apply(v, hh, buf)[0])), argnums=(0, 1)))
    grads.append(g(variables, h))
    hlo.append(g.lower(variables, h).as_text())
  for a, b in zip(jax.tree_util.tree_leaves(grads[0]), jax.tree_util.tree_leaves(grads[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert "dot_general" not in hlo[0] and "dot_general" in hlo[1]
  with pytest.raises(ConfigError, match=r"config.model.mixer_kwargs.projections: expected one of \('dot', "
                                         r"'reduce'\), got 'einsum'"):
    _run("aila2", 3, h, buf, num_heads=2, projections="einsum")


def test_project_reduce_equals_the_product():
  # depth_attn.project / fold_key_projection with projection='reduce' against numpy products
  rng = np.random.default_rng(17)
  x, w = rng.normal(size=(3, 5, 6)), rng.normal(size=(6, 4))
  for pr in ("dot", "reduce"):
    np.testing.assert_allclose(da.project(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), projection=pr),
                               x @ w, rtol=1e-5, atol=1e-5)
    q, kern = rng.normal(size=(3, 8)), rng.normal(size=(6, 8))  # 2 heads of 4; kernel [C, D]
    want = np.einsum("bnd,cnd->bnc", q.reshape(3, 2, 4), kern.reshape(6, 2, 4))
    np.testing.assert_allclose(da.fold_key_projection(jnp.asarray(q, jnp.float32), jnp.asarray(kern, jnp.float32),
                                                      2, projection=pr), want, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="projection: expected one of"):
    da.project(jnp.ones((2, 3)), jnp.ones((3, 3)), projection="matmul")


@pytest.mark.parametrize("pooling,skip,keys", [("per_token", None, "folded"), ("pooled", 2, "folded"),
                                               ("per_token", 2, "folded_stacked")])
def test_aila2_folded_keys_across_a_stage_equal_slots(pooling, skip, keys):
  # keys='folded' standardises each slot once (the first layer that reads it) and later layers reuse it from
  # buffer["k_in"]: a stage of three layers (block `skip` reusing its predecessor's retrieval, as ELA does)
  # gives the values and gradients that keys='slots' gives with the same parameters
  rng = np.random.default_rng(16)
  hs = [jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32) for _ in range(3)]
  x0 = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  params = []
  for layer in (1, 2, 3):  # each layer's own parameters, moved off their initial values
    _, _, _, _, v = _run("aila2", layer, hs[layer - 1], _buffer("aila2", rng, layer), num_heads=2, pooling=pooling,
                         perturb=True)
    params.append(v)

  def stage(variables, x0, hs, keys):
    buf = dn.mixer_class("aila2").init_buffer(x0, T)
    for layer, (v, h) in enumerate(zip(variables, hs), start=1):
      mixer = dn.make_mixer("aila2", layer=layer, depth=T, activation="none", norm="layer", num_heads=2,
                            pooling=pooling, keys=keys, skip=layer == skip)
      x, buf, _ = mixer.apply(v, h, buf)
    return x, buf

  (x_f, buf_f), (x_s, _) = stage(params, x0, hs, keys), stage(params, x0, hs, "slots")
  assert len(buf_f["k_in"]) == 3  # slots 0, 1, 2 standardised once each
  np.testing.assert_allclose(np.asarray(x_f), np.asarray(x_s), rtol=1e-4, atol=1e-5)
  loss = lambda keys: lambda v, x0, hs: jnp.sum(jnp.sin(stage(v, x0, hs, keys)[0]))
  g_f = jax.jit(jax.grad(loss(keys), argnums=(0, 1, 2)))(params, x0, hs)
  g_s = jax.jit(jax.grad(loss("slots"), argnums=(0, 1, 2)))(params, x0, hs)
  for a, b in zip(jax.tree_util.tree_leaves(g_f), jax.tree_util.tree_leaves(g_s)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mrla_base", "mrla_light"])
def test_mrla_norm_init_zero_starts_the_branch_silent(name):
  # norm_init='zero': the branch's norm starts with scale 0, so at init x = o = relu(h + x_{t-1}) exactly;
  # the official 'one' adds the branch; same parameter tree
  rng = np.random.default_rng(15)
  h = jnp.asarray(rng.normal(size=(B, 4, 5, D)), jnp.float32)
  buf = _buffer(name, rng, 2)
  buf = {k: (tuple(jnp.asarray(rng.normal(size=(B, 4, 5, D) if k != "k" else (B, D)), jnp.float32) for _ in v)
             if isinstance(v, tuple) else jnp.asarray(rng.normal(size=(B, 4, 5, D)), jnp.float32))
         for k, v in buf.items()}
  o = np.maximum(np.asarray(h) + np.asarray(buf["prev"]), 0.0)
  trees = []
  for init, silent in (("zero", True), ("one", False)):
    mixer = dn.make_mixer(name, layer=2, depth=T, dim_per_head=4, norm="batch", activation="relu", norm_init=init)
    variables = mixer.init(jax.random.PRNGKey(0), h, buf)
    trees.append(jax.tree_util.tree_map(jnp.shape, variables))
    (x, _, _), _ = mixer.apply(variables, h, buf, train=True, mutable=["batch_stats"])
    assert np.allclose(np.asarray(x), o, atol=1e-6) == silent
  assert trees[0] == trees[1]
  with pytest.raises(ConfigError, match=r"config.model.mixer_kwargs.norm_init: expected one of \('one', 'zero'\), "
                                        r"got 'half'"):
    mixer = dn.make_mixer(name, layer=2, depth=T, dim_per_head=4, norm="batch", norm_init="half")
    mixer.init(jax.random.PRNGKey(0), h, buf)


def test_mrla_base_cache_and_first_block():
  rng = np.random.default_rng(6)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("mrla_base", rng, 1)
  x, new_buf, w, _, _ = _run("mrla_base", 1, h, buf, dim_per_head=4)
  # the first block of a stage attends to itself only (the official init_cell)
  np.testing.assert_allclose(np.asarray(w)[..., 1], 1.0, rtol=1e-6)
  assert len(new_buf["k"]) == len(new_buf["v"]) == 1 and np.abs(np.asarray(new_buf["k"][0])).sum() > 0
  _, _, w2, _, _ = _run("mrla_base", 2, h, new_buf, dim_per_head=4)
  chex.assert_shape(w2, (B, 2, T))
  assert np.all(np.asarray(w2)[..., 1:3] > 0)


def test_mrla_light_sows_gates_and_lambda():
  rng = np.random.default_rng(7)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("mrla_light", rng, 1)
  _, _, _, inter, variables = _run("mrla_light", 1, h, buf, dim_per_head=4)
  chex.assert_shape(inter["gates"][0], (B, 2))
  chex.assert_shape(variables["params"]["lambda"], (D,))


def test_drop_path_drops_whole_examples():
  h = jnp.ones((64, 3, 4))
  buf = {"prev": jnp.zeros((64, 3, 4))}
  x = _run("residual", 1, h, buf, train=True, drop_path=0.5)[0]
  per_example = np.asarray(x).reshape(64, -1)
  assert set(np.unique(per_example)) <= {0.0, 2.0}
  assert np.all(per_example.min(1) == per_example.max(1))
  assert 5 < (per_example[:, 0] == 0).sum() < 59
  np.testing.assert_allclose(_run("residual", 1, h, buf, train=False, drop_path=0.5)[0], h)


def test_errors():
  with pytest.raises(ConfigError, match=r"config.model.mixer: unknown depth mixer 'aila3'; expected one of"):
    dn.make_mixer("aila3", layer=1, depth=3)
  with pytest.raises(ConfigError, match=r"config.model.mixer_kwargs: mixer 'aila1' takes no option\(s\) "
                                        r"\['num_heads'\]"):
    dn.check_mixer_kwargs("aila1", {"num_heads": 2})
  rng = np.random.default_rng(8)
  buf = _buffer("aila1", rng, 2)
  with pytest.raises(ConfigError, match=r"block output of shape \(2, 3, 6\) but the depth buffer has shape "
                                        r"\(2, 3, 8\)"):
    _run("aila1", 2, jnp.ones((B, P, 6)), buf)
  with pytest.raises(ConfigError, match="layers run from 1 to 3"):
    _run("aila1", 4, jnp.ones((B, P, D)), buf)
  with pytest.raises(ConfigError, match="config.model.mixer_kwargs.num_heads: aila2 needs the width 8 to be "
                                        "divisible by num_heads=3"):
    _run("aila2", 2, jnp.ones((B, P, D)), _buffer("aila2", rng, 2), num_heads=3)
  with pytest.raises(ConfigError, match="config.model.mixer_kwargs.dim_per_head: mixer 'mrla_light' needs the "
                                        "width 8 to be a multiple of dim_per_head=3"):
    _run("mrla_light", 1, jnp.ones((B, P, D)), _buffer("mrla_light", rng, 1), dim_per_head=3)
  with pytest.raises(ConfigError, match="config.model.mixer_kwargs.normalization"):
    _run("aila1", 2, jnp.ones((B, P, D)), buf, normalization="max")
  with pytest.raises(ConfigError, match="config.model.mixer_kwargs.pooling"):
    _run("aila2", 2, jnp.ones((B, P, D)), _buffer("aila2", rng, 2), pooling="max")
  with pytest.raises(ConfigError, match="config.model.mixer_kwargs.value_conv: expected 'shifted', 'conv' or 'shifted_wgrad'"):
    _run("mrla_light", 1, jnp.ones((B, P, D)), _buffer("mrla_light", rng, 1), dim_per_head=4, value_conv="fft")
  with pytest.raises(ConfigError, match="config.model.mixer_kwargs.eca_conv: expected 'shifted', 'conv' or 'shifted_wgrad'"):
    _run("mrla_base", 1, jnp.ones((B, P, D)), _buffer("mrla_base", rng, 1), dim_per_head=4, eca_conv="fft")


@pytest.mark.parametrize("spatial,k", [((5, 6), (3, 3)), ((7,), (3,)), ((4, 5), (5, 3))])
def test_depthwise_conv_same_equals_grouped_conv(spatial, k):
  rng = np.random.default_rng(9)
  c = 6
  x = jnp.asarray(rng.normal(size=(2,) + spatial + (c,)), jnp.float32)
  conv = nn.Conv(c, k, padding="SAME", feature_group_count=c, use_bias=False)
  variables = conv.init(jax.random.PRNGKey(0), x)
  want = conv.apply(variables, x)
  got = dn.depthwise_conv_same(x, variables["params"]["kernel"])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"expected x \[B, \*spatial, C\] and a kernel \[\*k, 1, C\]"):
    dn.depthwise_conv_same(x, jnp.ones((2,) * len(spatial) + (1, c)))


@pytest.mark.parametrize("spatial,k", [((5, 6), (3, 3)), ((7,), (3,)), ((4, 5), (5, 3))])
def test_depthwise_conv_wgrad_values_and_gradients_equal_the_grouped_conv(spatial, k):
  # the reference is XLA's grouped convolution and its autodiff (an independent implementation): the custom VJP's
  # flipped-kernel input gradient and convolution kernel gradient must equal it
  rng = np.random.default_rng(11)
  c = 5
  x = jnp.asarray(rng.normal(size=(2,) + spatial + (c,)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=k + (1, c)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(2,) + spatial + (c,)), jnp.float32)
  conv = nn.Conv(c, k, padding="SAME", feature_group_count=c, use_bias=False)
  want, want_vjp = jax.vjp(lambda a, w: conv.apply({"params": {"kernel": w}}, a), x, kernel)
  got, got_vjp = jax.vjp(dn.depthwise_conv_same_wgrad, x, kernel)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for a, b in zip(got_vjp(g), want_vjp(g)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mrla_base", "mrla_light"])
@pytest.mark.parametrize("switch", ["value_conv", "eca_conv"])
def test_mrla_conv_implementations_agree(name, switch):
  """'shifted' and 'conv' compute the same projections from the same parameter tree (images)."""
  rng = np.random.default_rng(10)
  x0 = jnp.asarray(rng.normal(size=(B, 4, 5, D)), jnp.float32)
  h = jnp.asarray(rng.normal(size=(B, 4, 5, D)), jnp.float32)
  buf = dn.mixer_class(name).init_buffer(x0, T)
  outs, trees = [], []
  grads = []
  for impl in ("shifted", "conv", "shifted_wgrad"):
    mixer = dn.make_mixer(name, layer=1, depth=T, dim_per_head=4, **{switch: impl})
    variables = mixer.init(jax.random.PRNGKey(0), h, buf)
    trees.append(jax.tree_util.tree_map(jnp.shape, variables))
    outs.append(mixer.apply(variables, h, buf, mutable=["batch_stats"])[0][0])
    loss = lambda p, hh: jnp.sum(jnp.sin(mixer.apply({**variables, "params": p}, hh, buf, train=True,
                                                     mutable=["batch_stats"])[0][0]))
    grads.append(jax.grad(loss, argnums=(0, 1))(variables["params"], h))
  assert trees[0] == trees[1] == trees[2]
  for other in (0, 2):  # 'shifted' and 'shifted_wgrad' against XLA's convolution ('conv') and its autodiff
    np.testing.assert_allclose(outs[other], outs[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(grads[other]), jax.tree_util.tree_leaves(grads[1])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("keys,projections", [("slots", "dot"), ("stacked", "dot"), ("folded", "dot"),
                                              ("slots", "reduce"), ("folded", "reduce"), ("folded_stacked", "dot")])
def test_aila2_per_token_equals_the_formula(keys, projections):
  # x = h + sum_i alpha_i x_i, alpha = softmax_i over the readable slots of (W_q LN_q(h)) . (W_k LN_k(x_i)) / sqrt(d)
  # per head and token, from the module's own parameters, in numpy (projections='reduce': the same Dense
  # kernels applied without a matrix product)
  rng = np.random.default_rng(12)
  h = jnp.asarray(rng.normal(size=(B, P, D)), jnp.float32)
  buf = _buffer("aila2", rng, 3)
  heads, d = 2, D // 2
  x, _, w, _, variables = _run("aila2", 3, h, buf, num_heads=heads, keys=keys, projections=projections,
                               perturb=True)
  prm = jax.tree_util.tree_map(np.asarray, variables["params"])

  def ln(a, p):
    a = np.asarray(a, np.float64)
    mu, var = a.mean(-1, keepdims=True), a.var(-1, keepdims=True)
    return (a - mu) / np.sqrt(var + 1e-6) * p["scale"] + p["bias"]

  q = (ln(h, prm["q_norm"]) @ prm["query"]["kernel"]).reshape(B, P, heads, d)
  slots = [np.asarray(s, np.float64) for s in buf["x"]]  # slots 0, 1, 2
  k = np.stack([(ln(s, prm["k_norm"]) @ prm["key"]["kernel"]).reshape(B, P, heads, d) for s in slots])
  logits = np.einsum("bpnd,ibpnd->ibpn", q, k) / np.sqrt(d)
  alpha = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
  mix = np.einsum("ibpn,ibpnd->bpnd", alpha, np.stack(slots).reshape(3, B, P, heads, d)).reshape(B, P, D)
  np.testing.assert_allclose(np.asarray(x), np.asarray(h) + mix, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(w)[..., :3], alpha.mean(2).transpose(1, 2, 0), rtol=1e-4, atol=1e-6)
  with pytest.raises(ConfigError, match=r"config.model.mixer_kwargs.keys: expected one of \('slots', 'stacked', "
                                         r"'folded', 'folded_stacked'\), got 'fused'"):
    _run("aila2", 3, h, buf, num_heads=heads, keys="fused")
