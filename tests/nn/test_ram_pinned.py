"""RAM / WS-RAM building blocks (aila_jax.nn.ram) against numpy: every module's formula with random
(non-initial) parameters, the ReLUs / tanh / clip actually engaged, and the stop_gradients on h."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from aila_jax.attention.glimpse import extract_glimpses
from aila_jax.nn import ram as ram_nn


def _random_params(module, *args, seed, scale=1.0):
  """N(0, scale^2) parameters of ``module`` (initial values hide dropped terms: zero kernels...); the
  structure comes from ``eval_shape`` (no initialiser runs: that would cost most of the test's time)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), jnp.float32),
                      flax.core.unfreeze(shapes))


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _relu(x):
  return np.maximum(x, 0.0)


def test_gaussian_log_prob_matches_scipy():
  # the existing check uses stds 0.5 and 2, whose log-stds cancel in the sum: a flipped sign of log(sigma)
  # went unseen. Here the stds do not cancel, log_std broadcasts, and the last axis is summed.
  rng = np.random.default_rng(0)
  x, m = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
  s = np.array([0.3, 1.7])
  want = stats.norm.logpdf(x, m, s).sum(-1)
  got = ram_nn.gaussian_log_prob(jnp.asarray(x), jnp.asarray(m), jnp.log(jnp.asarray(s)))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  got = ram_nn.gaussian_log_prob(jnp.asarray(x), jnp.asarray(m), jnp.log(0.25))  # scalar log_std
  np.testing.assert_allclose(got, stats.norm.logpdf(x, m, 0.25).sum(-1), rtol=1e-5)


def test_glimpse_network_formula():
  # g = ReLU(W3 ReLU(W1 rho + b1) + W4 ReLU(W2 l + b2) + b): all three ReLUs engaged (random weights give
  # negative pre-activations in each layer), so dropping any of them changes the output.
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.normal(size=(4, 6, 6, 1)), jnp.float32)
  loc = jnp.asarray(rng.uniform(-1, 1, size=(4, 2)), jnp.float32)
  net = ram_nn.GlimpseNetwork(size=2, num_scales=2, glimpse_hidden=5, location_hidden=5, features=6)
  v = _random_params(net, images, loc, seed=1)
  p = _np(v["params"])
  rho = np.asarray(extract_glimpses(images, loc, size=2, num_scales=2), np.float64).reshape(4, -1)
  pre_g = rho @ p["what"]["kernel"] + p["what"]["bias"]
  pre_l = np.asarray(loc, np.float64) @ p["where"]["kernel"] + p["where"]["bias"]
  pre = _relu(pre_g) @ p["what_out"]["kernel"] + p["what_out"]["bias"] + _relu(pre_l) @ p["where_out"]["kernel"]
  assert (pre_g < 0).any() and (pre_l < 0).any() and (pre < 0).any()
  np.testing.assert_allclose(net.apply(v, images, loc), _relu(pre), rtol=1e-5, atol=1e-5)


def test_core_rnn_relu_step_and_initial_carry():
  # h_t = ReLU(W_h h_{t-1} + W_g g_t + b): the recurrence reads the carry (not g twice), the ReLU is
  # engaged, and both cores start from zeros.
  rng = np.random.default_rng(2)
  h = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)  # same width as h, so swapped inputs would run
  core = ram_nn.CoreRNN(hidden=4)
  v = _random_params(core, h, g, seed=2)
  p = _np(v["params"])
  pre = (np.asarray(h, np.float64) @ p["h2h"]["kernel"] + p["h2h"]["bias"]
         + np.asarray(g, np.float64) @ p["i2h"]["kernel"])
  assert (pre < 0).any() and (pre > 0).any()
  carry, out = core.apply(v, h, g)
  np.testing.assert_allclose(out, _relu(pre), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(carry, _relu(pre), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(core.initial_carry(3), np.zeros((3, 4)))
  c, hl = ram_nn.CoreRNN(hidden=4, cell="lstm").initial_carry(3)
  np.testing.assert_array_equal(c, np.zeros((3, 4)))
  np.testing.assert_array_equal(hl, np.zeros((3, 4)))


def test_location_network_tanh_mean_std_and_stop_gradient():
  # mu = tanh(W sg(h) + b) (pre-activations of size ~2, where tanh(z) != z), sigma = std fixed, or a
  # learned log-std initialised at log(std); no gradient reaches h.
  rng = np.random.default_rng(3)
  h = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  net = ram_nn.LocationNetwork(std=0.3)
  v = _random_params(net, h, seed=3)
  p = _np(v["params"])
  z = np.asarray(h, np.float64) @ p["mean"]["kernel"] + p["mean"]["bias"]
  assert np.abs(z).max() > 1.0
  out = net.apply(v, h)
  np.testing.assert_allclose(out.preactivation, z, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.mean, np.tanh(z), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.log_std, np.full((3, 2), np.log(0.3)), rtol=1e-6)
  dh = jax.grad(lambda x: jnp.sum(net.apply(v, x).mean))(h)
  np.testing.assert_array_equal(dh, np.zeros((3, 4)))
  learned = ram_nn.LocationNetwork(std=0.3, learn_std=True)
  lv = learned.init(jax.random.PRNGKey(0), h)  # a real init: log_std starts at log(std)
  np.testing.assert_allclose(lv["params"]["log_std"], np.full(2, np.log(0.3)), rtol=1e-6)
  lv = flax.core.unfreeze(lv)
  lv["params"]["log_std"] = jnp.log(jnp.array([0.5, 2.0]))
  np.testing.assert_allclose(learned.apply(lv, h).log_std, np.log([[0.5, 2.0]] * 3), rtol=1e-6)


def _block_means(x, f):
  b, hh, ww, c = x.shape
  return x.reshape(b, hh // f, f, ww // f, f, c).mean((2, 4))


def test_image_code_average_pools_then_relu():
  # c = ReLU(W pool(x) + b), pool = mean of f x f blocks, f = ceil(max(H, W) / side): on 28x28, f = 2
  # (14x14 means, flattened row-major); on 100x100, f = ceil(100 / 14) = 8 -> 13x13 blocks, the missing
  # 4 rows / columns read as zeros (so the block sums add up to the image's sum).
  rng = np.random.default_rng(4)
  x = rng.uniform(size=(2, 28, 28, 1))
  code = ram_nn.ImageCode(features=5, side=14)
  v = _random_params(code, jnp.zeros((2, 28, 28, 1)), seed=4, scale=0.2)
  p = _np(v["params"])
  pre = _block_means(x, 2).reshape(2, -1) @ p["code"]["kernel"] + p["code"]["bias"]
  assert (pre < 0).any() and (pre > 0).any()
  np.testing.assert_allclose(code.apply(v, jnp.asarray(x, jnp.float32)), _relu(pre), rtol=1e-4, atol=1e-5)
  # 100x100: 13x13 blocks of 8x8, zero padded; read the pooled pixels through an identity layer
  big = rng.uniform(size=(1, 100, 100, 1))
  ident = ram_nn.ImageCode(features=169, side=14)
  iv = {"params": {"code": {"kernel": jnp.eye(169), "bias": jnp.zeros(169)}}}
  shapes = jax.eval_shape(ident.init, jax.random.PRNGKey(0), jnp.zeros((1, 100, 100, 1)))
  assert shapes["params"]["code"]["kernel"].shape == (169, 169)
  pooled = np.asarray(ident.apply(iv, jnp.asarray(big, jnp.float32)), np.float64)
  np.testing.assert_allclose(pooled.sum() * 64, big.sum(), rtol=1e-5)  # every pixel once, divided by 8 * 8


def test_inference_network_formula_clip_and_stop_gradients():
  # u = ReLU(W_u sg(h) + E_y + W_c c + b_u), mu_q = tanh(sg(z_p) + W_mu u + b_mu),
  # log sigma_q = clip(sg(log sigma_p) + W_s u + b_s, log min_std, log max_std), with random (non-zero)
  # output layers so that u and the prior's pre-activation matter, and bounds set between the raw log-stds
  # so that both clips and the unclipped range are all used.
  rng = np.random.default_rng(5)
  h = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  labels = jnp.array([0, 2, 1, 2])
  zp = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
  lsp = jnp.asarray(np.log(rng.uniform(0.1, 0.3, size=(4, 2))), jnp.float32)
  prior = ram_nn.Gaussian(jnp.tanh(zp), lsp, zp)
  img = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
  v = _random_params(ram_nn.InferenceNetwork(num_classes=3, hidden=6), h, labels, prior, img, seed=5)
  p = _np(v["params"])
  pre = (np.asarray(h, np.float64) @ p["hidden"]["kernel"] + p["hidden"]["bias"]
         + p["label_embed"]["embedding"][np.asarray(labels)] + np.asarray(img, np.float64) @ p["image"]["kernel"])
  u = _relu(pre)
  z = np.asarray(zp, np.float64) + u @ p["mean"]["kernel"] + p["mean"]["bias"]
  raw = np.asarray(lsp, np.float64) + u @ p["log_std"]["kernel"] + p["log_std"]["bias"]
  lo, hi = np.quantile(raw, [0.25, 0.75])
  assert (pre < 0).any() and hi - lo > 0.5
  net = ram_nn.InferenceNetwork(num_classes=3, hidden=6, min_std=float(np.exp(lo)), max_std=float(np.exp(hi)))
  out = net.apply(v, h, labels, prior, img)
  np.testing.assert_allclose(out.preactivation, z, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.mean, np.tanh(z), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.log_std, np.clip(raw, lo, hi), rtol=1e-5, atol=1e-5)

  # the core state and the prior's outputs are held constant: q's losses train q's parameters alone
  def f(h_, zp_, lsp_):
    q = net.apply(v, h_, labels, ram_nn.Gaussian(jnp.tanh(zp_), lsp_, zp_), img)
    return jnp.sum(q.mean) + jnp.sum(q.log_std)
  for g in jax.grad(f, argnums=(0, 1, 2))(h, zp, lsp):
    np.testing.assert_array_equal(g, np.zeros(g.shape))


def test_classifier_and_baseline_heads():
  # logits = W h + b; b_t = w . sg(h) + c, with no gradient to h
  rng = np.random.default_rng(6)
  h = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  base = ram_nn.BaselineNetwork()
  v = _random_params(base, h, seed=6)
  p = _np(v["params"])
  np.testing.assert_allclose(base.apply(v, h), np.asarray(h, np.float64) @ p["baseline"]["kernel"][:, 0]
                             + p["baseline"]["bias"][0], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(base.apply(v, x)))(h), np.zeros((3, 4)))
  head = ram_nn.ClassifierHead(num_classes=5)
  cv = _random_params(head, h, seed=7)
  c = _np(cv["params"])
  np.testing.assert_allclose(head.apply(cv, h), np.asarray(h, np.float64) @ c["logits"]["kernel"]
                             + c["logits"]["bias"], rtol=1e-5, atol=1e-6)
