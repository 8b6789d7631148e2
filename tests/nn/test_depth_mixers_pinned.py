"""Pinned behaviour of the depth mixers (aila_jax.nn.depth) that the other mixer tests leave free: the drop-path
rate and where drop-path acts, MRLA-light's lambda init, the official value init on sequences, AILA-1 at layer 1
with include_input=False, AILA-2's folded keys over a slice that starts after slot 0, AILA-2's residual term.
References are numpy formulas from the docstrings, or values/statistics computed by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.nn import depth as dn

KEY = jax.random.PRNGKey(0)
RNGS = {"params": KEY, "dropout": jax.random.PRNGKey(1)}


def _apply(mixer, h, buf, train, variables=None):
  variables = variables or mixer.init(RNGS, h, buf, train=False)
  return mixer.apply(variables, h, buf, train=train, rngs={"dropout": jax.random.PRNGKey(2)}), variables


def test_drop_path_rate_is_the_drop_probability():
  # DP(x)_b = x_b xi_b / (1 - p), xi_b ~ Bernoulli(1 - p): with p = 0.25 a quarter of the examples are zeroed
  # and the rest scaled by 4/3 (a test at p = 0.5 cannot tell p from 1 - p)
  n = 4000
  h, buf = jnp.ones((n, 2)), {"prev": jnp.zeros((n, 2))}
  (x, _, _), _ = _apply(dn.make_mixer("residual", layer=1, depth=2, activation="none", drop_path=0.25), h, buf, True)
  x = np.asarray(x)
  dropped = np.all(x == 0.0, axis=1)
  assert abs(dropped.mean() - 0.25) < 0.03  # s.e. of the fraction ~0.007
  np.testing.assert_allclose(x[~dropped], 4.0 / 3.0, rtol=1e-6)


def _per_example_is_one_of(x, a, b):
  """Each example of ``x`` equals the same example of ``a`` or of ``b``; both cases occur."""
  x, a, b = (np.asarray(v, np.float64).reshape(v.shape[0], -1) for v in (x, a, b))
  is_a = np.all(np.abs(x - a) < 1e-5, axis=1)
  is_b = np.all(np.abs(x - b) < 1e-5, axis=1)
  assert np.all(is_a | is_b), (is_a, is_b)
  assert is_a.any() and is_b.any()


def test_residual_and_aila1_drop_path_acts_on_the_block_output_only():
  # x_t = phi(DP(h_t) + skip): a dropped example keeps its skip (x_{t-1}, or AILA-1's mix), a kept one gets 2 h_t
  rng = np.random.default_rng(0)
  b, p, d = 16, 3, 4
  h, x0, x1 = (jnp.asarray(rng.normal(size=(b, p, d)), jnp.float32) for _ in range(3))
  (x, _, _), _ = _apply(dn.make_mixer("residual", layer=1, depth=2, activation="none", drop_path=0.5),
                        h, {"prev": x0}, True)
  _per_example_is_one_of(x, x0, 2 * h + x0)
  (x, _, _), _ = _apply(dn.make_mixer("aila1", layer=2, depth=3, activation="none", drop_path=0.5),
                        h, {"x": (x0, x1)}, True)
  mix = 0.5 * (np.asarray(x0) + np.asarray(x1))  # softmax of zero logits over slots 0, 1
  _per_example_is_one_of(x, mix, 2 * np.asarray(h) + mix)


def test_mrla_base_drop_path_acts_on_the_attention_branch_only():
  # x_t = o_t + DP(phi(N(att))), o_t = phi(h_t + x_{t-1}): a dropped example is exactly o_t (norm='none', phi = id)
  rng = np.random.default_rng(1)
  b, p, c = 16, 3, 8
  h, prev = (jnp.asarray(rng.normal(size=(b, p, c)), jnp.float32) for _ in range(2))
  buf = dn.MRLABaseMixer.init_buffer(prev, 3)
  mixer = dn.make_mixer("mrla_base", layer=1, depth=3, activation="none", norm="none", dim_per_head=4,
                        drop_path=0.5)
  (x_eval, _, _), variables = _apply(mixer, h, buf, False)
  (x, _, _), _ = _apply(mixer, h, buf, True, variables)
  o = np.asarray(h, np.float64) + np.asarray(prev, np.float64)
  att = np.asarray(x_eval, np.float64) - o  # the branch without drop-path (norm 'none': train = eval)
  assert np.abs(att).max() > 1e-2
  _per_example_is_one_of(x, o, o + 2 * att)


def test_mrla_light_lambda_starts_standard_normal():
  # "MRLA-light's lambda_t in R^C is initialised from a standard normal" (module docstring; torch.randn)
  c = 4096
  x = jnp.zeros((2, c))
  lam = np.asarray(dn.make_mixer("mrla_light", layer=1, depth=2, norm="none").init(KEY, x, {"prev": x})
                   ["params"]["lambda"])
  assert lam.shape == (c,)
  assert abs(lam.std() - 1.0) < 0.05 and abs(lam.mean()) < 0.06  # s.e. ~0.011 and ~0.016
  assert np.abs(lam).max() > 3.0  # not truncated


def test_official_value_init_on_sequences_is_he_fan_out_of_a_1d_kernel():
  # on sequences the value conv is 1-D (kernel 3): Conv1d(C, C, 3, groups=C) fan-out = 3C, std sqrt(2 / (3C))
  c = 2048
  mod = dn._MRLAProjections(mrla_init="official")  # pylint: disable=protected-access
  wv = np.asarray(mod.init(KEY, jnp.zeros((1, 5, c)))["params"]["wv"]["kernel"])
  assert wv.shape == (3, 1, c)
  want = math.sqrt(2.0 / (3 * c))
  assert abs(wv.std() / want - 1) < 0.03  # 6144 draws: relative s.e. of the std ~0.9%


@pytest.mark.parametrize("name,kw", [("aila1", {"connection": "scalar"}), ("aila1", {"connection": "linear"}),
                                     ("dense", {})])
def test_without_input_layer_one_reads_the_input(name, kw):
  # include_input=False still lets layer 1 read x_0 (its only earlier layer): softmax over one slot = weight 1,
  # so x_1 = h_1 + x_0 (the linear connection starts at 1 * I on that slot); layer 2 then reads x_1 alone
  # (dense crashed at layer 1 before 2026-12-07: its mask had no slot)
  rng = np.random.default_rng(2)
  h, x0, x1 = (jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32) for _ in range(3))
  mixer = dn.make_mixer(name, layer=1, depth=3, activation="none", include_input=False, **kw)
  (x, _, w), _ = _apply(mixer, h, {"x": (x0,)}, False)
  np.testing.assert_allclose(np.asarray(x), np.asarray(h) + np.asarray(x0), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(w), [1.0, 0.0, 0.0], atol=1e-7)
  mixer = dn.make_mixer(name, layer=2, depth=3, activation="none", include_input=False, **kw)
  (x, _, w), _ = _apply(mixer, h, {"x": (x0, x1)}, False)
  np.testing.assert_allclose(np.asarray(x), np.asarray(h) + np.asarray(x1), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(w), [0.0, 1.0, 0.0], atol=1e-7)


def _ln(a, p):
  mu, var = a.mean(-1, keepdims=True), a.var(-1, keepdims=True)
  return (a - mu) / np.sqrt(var + 1e-6) * p["scale"] + p["bias"]


def _perturbed(mixer, h, buf):
  variables = mixer.init(KEY, h, buf)
  leaves, tree = jax.tree_util.tree_flatten(variables["params"])
  keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
  return {**variables, "params": jax.tree_util.tree_unflatten(
      tree, [a + 0.3 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)])}


@pytest.mark.parametrize("keys", ["folded", "slots"])
@pytest.mark.parametrize("residual", [False, True])
def test_aila2_without_input_per_token_formula(keys, residual):
  # layer 3 with include_input=False reads slots 1, 2 only: x = h + [x_2] + sum_i alpha_i x_i, alpha from
  # (W_q LN_q(h)) . (W_k LN_k(x_i)) / sqrt(d) per head and token (numpy, the module's perturbed parameters)
  rng = np.random.default_rng(3)
  b, p, d_model, heads = 2, 3, 8, 2
  d = d_model // heads
  h, *xs = (jnp.asarray(rng.normal(size=(b, p, d_model)), jnp.float32) for _ in range(4))
  buf = {"x": tuple(xs)}
  mixer = dn.make_mixer("aila2", layer=3, depth=4, activation="none", num_heads=heads, keys=keys,
                        include_input=False, residual=residual)
  variables = _perturbed(mixer, h, buf)
  x, _, w = mixer.apply(variables, h, buf)
  prm = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])
  hn, slots = np.asarray(h, np.float64), [np.asarray(s, np.float64) for s in xs[1:]]  # slots 1, 2
  q = (_ln(hn, prm["q_norm"]) @ prm["query"]["kernel"]).reshape(b, p, heads, d)
  k = np.stack([(_ln(s, prm["k_norm"]) @ prm["key"]["kernel"]).reshape(b, p, heads, d) for s in slots])
  logits = np.einsum("bpnd,ibpnd->ibpn", q, k) / np.sqrt(d)
  alpha = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
  mix = np.einsum("ibpn,ibpnd->bpnd", alpha, np.stack(slots).reshape(2, b, p, heads, d)).reshape(b, p, d_model)
  want = hn + mix + (slots[-1] if residual else 0.0)
  np.testing.assert_allclose(np.asarray(x), want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(w)[..., 1:3], alpha.mean(2).transpose(1, 2, 0), rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(w)[..., [0, 3]], 0.0)


@pytest.mark.parametrize("normalization", ["softmax", "sum", "l1"])
def test_aila1_starts_uniform_for_every_normalization(normalization):
  # logits start so that the weights are uniform over the readable slots (softmax: zeros; sum, l1: equal ones)
  rng = np.random.default_rng(4)
  h, *xs = (jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32) for _ in range(4))
  mixer = dn.make_mixer("aila1", layer=3, depth=5, activation="none", normalization=normalization)
  (x, _, w), _ = _apply(mixer, h, {"x": tuple(xs)}, False)
  np.testing.assert_allclose(np.asarray(w), [1 / 3, 1 / 3, 1 / 3, 0.0, 0.0], rtol=1e-5, atol=1e-7)
  want = np.asarray(h, np.float64) + sum(np.asarray(a, np.float64) for a in xs) / 3
  np.testing.assert_allclose(np.asarray(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("keys", ["stacked", "slots"])
def test_aila2_pooled_formula_for_stacked_and_slot_keys(keys):
  # pooling='pooled': alpha_i = softmax_i((W_q LN_q(mean_p h)) . (W_k LN_k(mean_p x_i)) / sqrt(d)) per head,
  # x = h + sum_i alpha_i x_i, in numpy from the module's perturbed parameters (slot order pinned by x_i)
  rng = np.random.default_rng(5)
  b, p, d_model, heads = 2, 3, 8, 2
  d = d_model // heads
  h, *xs = (jnp.asarray(rng.normal(size=(b, p, d_model)), jnp.float32) for _ in range(4))
  buf = {"x": tuple(xs)}
  mixer = dn.make_mixer("aila2", layer=3, depth=4, activation="none", num_heads=heads, keys=keys, pooling="pooled")
  variables = _perturbed(mixer, h, buf)
  x, _, w = mixer.apply(variables, h, buf)
  prm = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])
  hn, slots = np.asarray(h, np.float64), np.stack([np.asarray(s, np.float64) for s in xs])  # (3, B, P, D)
  q = (_ln(hn.mean(1), prm["q_norm"]) @ prm["query"]["kernel"]).reshape(b, heads, d)
  k = (_ln(slots.mean(2), prm["k_norm"]) @ prm["key"]["kernel"]).reshape(3, b, heads, d)
  logits = np.einsum("bnd,ibnd->ibn", q, k) / np.sqrt(d)
  alpha = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)  # (3, B, N)
  assert np.abs(alpha - 1 / 3).max() > 0.05  # far from uniform: the slots' order matters
  mix = np.einsum("ibn,ibpnd->bpnd", alpha, slots.reshape(3, b, p, heads, d)).reshape(b, p, d_model)
  np.testing.assert_allclose(np.asarray(x), hn + mix, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(w)[..., :3], alpha.transpose(1, 2, 0), rtol=1e-4, atol=1e-6)


def test_mrla_default_heads_are_16_channels_for_base_and_32_for_light():
  # "heads of dim_per_head channels (16 for base, 32 for light)": at C = 64, 4 and 2 heads
  rng = np.random.default_rng(6)
  h, x0 = (jnp.asarray(rng.normal(size=(2, 3, 64)), jnp.float32) for _ in range(2))
  (_, _, w), _ = _apply(dn.make_mixer("mrla_base", layer=1, depth=3, norm="none"), h,
                        dn.MRLABaseMixer.init_buffer(x0, 3), False)
  assert w.shape == (2, 4, 3)
  light = dn.make_mixer("mrla_light", layer=1, depth=3, norm="none")
  _, state = light.apply(light.init(KEY, h, {"prev": x0}), h, {"prev": x0}, mutable=["intermediates"])
  assert state["intermediates"]["gates"][0].shape == (2, 2)


def test_mrla_branch_batch_norm_running_statistics_use_momentum_0_9():
  # the branch BN is torch's BatchNorm2d (momentum 0.1): running = 0.9 running + 0.1 batch (flax momentum 0.9);
  # with MRLA-light at layer 1 and lambda = 0, gates from q . k, the branch input is the gated value
  rng = np.random.default_rng(7)
  h, x0 = (jnp.asarray(rng.normal(size=(4, 3, 3, 8)), jnp.float32) for _ in range(2))
  mixer = dn.make_mixer("mrla_light", layer=1, depth=3, dim_per_head=4)
  variables = mixer.init(KEY, h, {"prev": x0})
  stats = jax.tree_util.tree_map(lambda a: a + 0.5, variables["batch_stats"])  # running mean 0.5, var 1.5
  params = dict(variables["params"], **{"lambda": jnp.zeros(8)})
  _, new = mixer.apply({"params": params, "batch_stats": stats}, h, {"prev": x0}, train=True,
                       mutable=["batch_stats", "intermediates"])
  gates = np.asarray(new["intermediates"]["gates"][0], np.float64)  # (B, 2 heads)
  o = np.maximum(np.asarray(h, np.float64) + np.asarray(x0, np.float64), 0.0)
  wv = np.asarray(params["mrla"]["wv"]["kernel"], np.float64)  # (3, 3, 1, C)
  op = np.pad(o, ((0, 0), (1, 1), (1, 1), (0, 0)))
  v = sum(op[:, i:i + 3, j:j + 3] * wv[i, j, 0] for i in range(3) for j in range(3))
  branch = v * np.repeat(gates, 4, axis=1)[:, None, None, :]
  batch_mean = branch.mean((0, 1, 2))
  batch_var = branch.var((0, 1, 2))  # flax keeps the biased batch variance
  got = new["batch_stats"]["norm"]
  np.testing.assert_allclose(np.asarray(got["mean"]), 0.9 * 0.5 + 0.1 * batch_mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got["var"]), 0.9 * 1.5 + 0.1 * batch_var, rtol=1e-4, atol=1e-5)
