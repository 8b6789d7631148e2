"""The weighted sums over depth: every impl (stacked einsum, per-slot sums, float32 reduce) equals a numpy
reference of the formula, and the three give the same network outputs and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.attention import depth as da

KEY = jax.random.PRNGKey(0)


def _slots(t, shape):
  return [jax.random.normal(jax.random.fold_in(KEY, i), shape) for i in range(t)]


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("impl", da.SUM_IMPLS)
def test_each_impl_equals_the_formula(impl):
  xs, w = _slots(3, (2, 4, 5)), jax.nn.softmax(jax.random.normal(KEY, (2, 3)))
  x, wn = np.stack([np.asarray(a, np.float64) for a in xs]), np.asarray(w, np.float64)  # (T, B, 4, 5), (B, T)
  np.testing.assert_allclose(da.mix_depth(w, xs, impl=impl), np.einsum("bt,tbij->bij", wn, x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(da.mix_depth(w[1], xs, impl=impl), np.einsum("t,tbij->bij", wn[1], x), rtol=1e-5,
                             atol=1e-6)
  # per-token attention, 2 heads of width 4: softmax_i(q . k_i / 2) per position and head, then sum_i a_i v_i
  q, ks, vs = jax.random.normal(KEY, (2, 4, 8)), _slots(3, (2, 4, 8)), [2 * x + 1 for x in _slots(3, (2, 4, 8))[::-1]]
  qn, kn, vn = (np.asarray(a, np.float64) for a in (q, jnp.stack(ks), jnp.stack(vs)))
  qh, kh, vh = qn.reshape(2, 4, 2, 4), kn.reshape(3, 2, 4, 2, 4), vn.reshape(3, 2, 4, 2, 4)
  a = _softmax(np.einsum("bpnd,tbpnd->bpnt", qh, kh) / 2.0)
  out, weights = da.per_token_depth_attention(q, ks, vs, num_heads=2, impl=impl)
  np.testing.assert_allclose(weights, a, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out, np.einsum("bpnt,tbpnd->bpnd", a, vh).reshape(2, 4, 8), rtol=1e-5, atol=1e-5)
  # pooled attention: one distribution per example and head over values with positions (B, 4, C=8)
  qp, kp = jax.random.normal(KEY, (2, 8)), _slots(3, (2, 8))
  ap = _softmax(np.einsum("bnd,tbnd->bnt", np.asarray(qp, np.float64).reshape(2, 2, 4),
                          np.asarray(jnp.stack(kp), np.float64).reshape(3, 2, 2, 4)) / 2.0)
  out, weights = da.pooled_depth_attention(qp, kp, vs, num_heads=2, impl=impl)
  np.testing.assert_allclose(weights, ap, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out, np.einsum("bnt,tbpnd->bpnd", ap, vh).reshape(2, 4, 8), rtol=1e-5, atol=1e-5)


def test_reduce_keeps_the_dtype_and_multiplies_in_float32():
  xs = [jnp.full((2, 3), 1 + i / 8, jnp.bfloat16) for i in range(4)]
  out = da.mix_depth(jnp.array([0.1, 0.2, 0.3, 0.4]), xs, impl="reduce")
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), 0.1 * 1 + 0.2 * 1.125 + 0.3 * 1.25 + 0.4 * 1.375,
                             rtol=2 ** -8)
  # float32 weights meet bfloat16 slots in float32: (1 + 2**-9) * 1 - 1 * 1 = 2**-9, which bfloat16 holds;
  # a weight cast to bfloat16 first rounds to 1 and the sum cancels to 0 ('stacked' does that)
  xs, w = [jnp.ones((2, 3), jnp.bfloat16)] * 2, jnp.array([1 + 2 ** -9, -1.0])
  assert float(da.mix_depth(w, xs, impl="reduce")[0, 0]) == 2 ** -9
  assert float(da.mix_depth(w, xs, impl="stacked")[0, 0]) == 0.0


def test_reduce_has_no_dot_in_its_program():
  xs, w = _slots(5, (2, 4, 8)), jax.nn.softmax(jax.random.normal(KEY, (2, 5)))
  hlo = {impl: jax.jit(lambda w, xs, impl=impl: da.mix_depth(w, xs, impl=impl)).lower(w, xs).as_text()
         for impl in ("stacked", "reduce")}
  assert "dot_general" in hlo["stacked"]  # what the check looks for is there when a dot is
  assert "dot_general" not in hlo["reduce"]


def test_pure_functions_agree():
  xs, w = _slots(3, (2, 4, 5)), jax.nn.softmax(jax.random.normal(KEY, (2, 3)))
  for weights in (w, w[0]):
    np.testing.assert_allclose(da.mix_depth(weights, xs, impl="stacked"), da.mix_depth(weights, xs, impl="slots"),
                               rtol=1e-6, atol=1e-6)
  q, ks, vs = jax.random.normal(KEY, (2, 4, 8)), _slots(3, (2, 4, 8)), _slots(3, (2, 4, 8))
  a = da.per_token_depth_attention(q, ks, vs, num_heads=2, impl="stacked")
  b = da.per_token_depth_attention(q, ks, vs, num_heads=2, impl="slots")
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-6)
  q, ks = jax.random.normal(KEY, (2, 8)), _slots(3, (2, 8))
  a = da.pooled_depth_attention(q, ks, vs, num_heads=2, impl="stacked")
  b = da.pooled_depth_attention(q, ks, vs, num_heads=2, impl="slots")
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="impl"):
    da.mix_depth(w, xs, impl="loop")


@pytest.mark.parametrize("mixer", ["aila1", "mrla_base"])  # mix_depth and pooled attention in a network
def test_resnet_outputs_and_gradients_agree(mixer, monkeypatch):
  model = models.get_model("cifar_resnet", num_classes=3, depth=14, widths=(4,), mixer=mixer)  # one stage, 3 slots
  x = jax.random.normal(KEY, (2, 8, 8, 3))
  v = model.init(jax.random.PRNGKey(1), x)
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(KEY, p.shape), v["params"])  # no special values
  results = {}
  for impl in da.SUM_IMPLS:
    monkeypatch.setattr(da, "DEFAULT_SUM_IMPL", impl)

    def loss(p):  # a new function per impl: traced again, never a cached trace of the other impl
      out, _ = model.apply({"params": p, "batch_stats": v["batch_stats"]}, x, train=True, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(out[0]))

    results[impl] = jax.jit(jax.value_and_grad(loss))(params)
  l1, g1 = results["stacked"]
  for impl in ("slots", "reduce"):
    l2, g2 = results[impl]
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("barrier", [True, False])
def test_slot_barrier_keeps_the_formulas_value_and_gradients(barrier):
  xs, w = tuple(_slots(3, (2, 4))), jax.random.normal(KEY, (3,))
  c = jax.random.normal(jax.random.fold_in(KEY, 7), (2, 4))
  out, (gw, gx) = jax.jit(jax.value_and_grad(
      lambda w, xs: jnp.sum(c * da.mix_depth(w, xs, barrier=barrier)), argnums=(0, 1)))(w, xs)
  x, wn, cn = np.stack([np.asarray(a, np.float64) for a in xs]), np.asarray(w, np.float64), np.asarray(c, np.float64)
  np.testing.assert_allclose(out, np.sum(cn * np.einsum("t,tbi->bi", wn, x)), rtol=1e-5)
  np.testing.assert_allclose(gw, np.einsum("bi,tbi->t", cn, x), rtol=1e-5, atol=1e-5)
  for i, g in enumerate(gx):
    np.testing.assert_allclose(g, wn[i] * cn, rtol=1e-5, atol=1e-6)


def test_slot_barrier_is_in_the_program_by_default_and_the_mixers_switch_turns_it_off():
  xs, w = _slots(3, (2, 4)), jax.random.normal(KEY, (3,))
  lowered = {b: jax.jit(lambda w, xs, b=b: da.mix_depth(w, xs, barrier=b)).lower(w, xs).as_text()
             for b in (None, False)}
  assert "optimization_barrier" in lowered[None]
  assert "optimization_barrier" not in lowered[False]
  x = jax.random.normal(KEY, (2, 8, 8, 3))
  for mixer in ("aila1", "dense"):
    text = {}
    for flag in (None, False):
      model = models.get_model("cifar_resnet", num_classes=3, depth=14, widths=(4,), mixer=mixer,
                               mixer_kwargs={} if flag is None else {"slot_barrier": flag})
      v = model.init(jax.random.PRNGKey(1), x)
      text[flag] = jax.jit(lambda v, model=model: model.apply(v, x)[0]).lower(v).as_text()
    assert "optimization_barrier" in text[None], mixer
    assert "optimization_barrier" not in text[False], mixer


def test_a_slot_barrier_that_is_not_a_bool_is_refused_naming_the_key():
  from aila_jax.errors import ConfigError
  model = models.get_model("cifar_resnet", num_classes=3, depth=14, widths=(4,), mixer="aila1",
                           mixer_kwargs={"slot_barrier": "yes"})
  with pytest.raises(ConfigError, match=r"mixer_kwargs.slot_barrier: expected True, False or None.*'yes'"):
    model.init(jax.random.PRNGKey(1), jnp.zeros((2, 8, 8, 3)))
