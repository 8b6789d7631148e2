"""RAM / WS-RAM trajectories against numpy: the recurrence h_t = f_h(h_{t-1}, f_g(rho(x, clip(a_t)), clip(a_t))),
h_0 = 0, and the sampling distributions a_t ~ N(mu_p, sigma_p^2) / N(mu_q, sigma_q^2) with independent steps."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from aila_jax import models
from aila_jax.nn import ram as ram_nn

TINY = dict(glimpse_size=2, num_scales=2, glimpse_hidden=5, location_hidden=5, glimpse_features=6, hidden=4,
            inference_hidden=4)


def _random_params(model, *args, seed, scale=1.0):
  """N(0, scale^2) parameters, their structure from ``eval_shape`` (running the initialisers costs seconds)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, {"params": jax.random.PRNGKey(0), "glimpse": jax.random.PRNGKey(1)}, *args)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), jnp.float32),
                      flax.core.unfreeze(shapes))


def _apply(model, *args, sample, **kw):
  return jax.jit(functools.partial(model.apply, sample=sample))(*args, **kw)  # one compilation: faster than eager


def test_rollout_matches_the_recurrence():
  # Replays the trajectory with the documented recurrence: prior and baseline read h_{t-1} (h_0 = 0), the
  # glimpse is taken at (and the "where" network reads) clip(a_t, -1, 1), log p is the density of the
  # unclipped draw, the classifier reads h_T. std = 3 so that draws leave [-1, 1]; B = 5 != T = 3.
  model = models.get_model("ram", num_classes=3, std=3.0, num_glimpses=3, **TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 8, 8, 1))
  v = _random_params(model, x, seed=0)
  logits, inter = _apply(model, v, x, sample="prior", rngs={"glimpse": jax.random.PRNGKey(3)})
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"]["trajectory"])
  f64 = lambda a: np.asarray(a, np.float64)
  samples = f64(inter["samples"])  # (B, T, 2)
  assert samples.shape == (5, 3, 2) and (np.abs(samples) > 1).any()
  glimpse = jax.jit(ram_nn.GlimpseNetwork(2, 2, 5, 5, 6).apply)
  h = np.zeros((5, 4))
  for t in range(3):
    mu = np.tanh(h @ p["location"]["mean"]["kernel"] + p["location"]["mean"]["bias"])
    np.testing.assert_allclose(inter["prior_mean"][:, t], mu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inter["baseline"][:, t], h @ p["baseline"]["baseline"]["kernel"][:, 0]
                               + p["baseline"]["baseline"]["bias"][0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(inter["log_prior"][:, t], stats.norm.logpdf(samples[:, t], mu, 3.0).sum(-1),
                               rtol=1e-4, atol=1e-4)
    loc = np.clip(samples[:, t], -1.0, 1.0)
    np.testing.assert_allclose(inter["locations"][:, t], loc, atol=1e-6)
    g = f64(glimpse({"params": v["params"]["trajectory"]["glimpse"]}, x, jnp.asarray(loc, jnp.float32)))
    h = np.maximum(h @ p["core"]["h2h"]["kernel"] + p["core"]["h2h"]["bias"] + g @ p["core"]["i2h"]["kernel"], 0)
  np.testing.assert_allclose(logits, h @ p["classifier"]["logits"]["kernel"] + p["classifier"]["logits"]["bias"],
                             rtol=1e-4, atol=1e-4)
  # sample='mean': every location is the prior mean; the first one tanh(b) for every image (h_0 = 0)
  _, mean = _apply(model, v, x, sample="mean")
  np.testing.assert_allclose(mean["samples"], mean["prior_mean"], atol=1e-7)
  np.testing.assert_allclose(mean["prior_mean"][:, 0], np.tanh(np.broadcast_to(p["location"]["mean"]["bias"], (5, 2))),
                             rtol=1e-5, atol=1e-6)


def test_prior_draws_are_independent_standard_gaussians():
  # a_t = mu_t + sigma eps_t with eps_t ~ N(0, I) fresh at every step: (a - mu) / sigma has mean 0, std 1
  # and no correlation between steps or coordinates (2 x 512 x 2 draws; the bounds are > 4 standard errors).
  model = models.get_model("ram", num_classes=3, std=0.2, num_glimpses=2, baseline=False, **TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (512, 4, 4, 1))
  v = _random_params(model, x, seed=1, scale=0.3)
  _, inter = _apply(model, v, x, sample="prior", rngs={"glimpse": jax.random.PRNGKey(3)})
  eps = (np.asarray(inter["samples"], np.float64) - np.asarray(inter["prior_mean"], np.float64)) / 0.2  # (B, T, 2)
  assert abs(eps.mean()) < 0.1 and abs(eps.std() - 1.0) < 0.07
  corr = np.corrcoef(eps.reshape(512, 4), rowvar=False)  # (step, coord) pairs
  assert np.abs(corr - np.eye(4)).max() < 0.2


def test_proposal_draws_and_both_log_densities():
  # WS-RAM with q shifted off the prior (b_mu = [0.8, -0.8]) and twice as wide: a ~ N(mu_q, (2 sigma)^2),
  # mu_q = tanh(z_p + b_mu); log_proposal is log q at the draw, log_prior log p at the same draw.
  model = models.get_model("wsram", num_classes=3, std=0.2, num_glimpses=2, **TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (512, 4, 4, 1))
  y = jnp.arange(512) % 3
  v = _random_params(model, x, y, seed=2, scale=0.3)
  q = v["params"]["trajectory"]["inference"]  # q = p, then shifted: zero output kernels, log_std bias log 2
  q["mean"] = {"kernel": jnp.zeros((4, 2)), "bias": jnp.array([0.8, -0.8])}
  q["log_std"] = {"kernel": jnp.zeros((4, 2)), "bias": jnp.full(2, np.log(2.0), jnp.float32)}
  _, inter = _apply(model, v, x, y, sample="proposal", rngs={"glimpse": jax.random.PRNGKey(3)})
  f64 = lambda a: np.asarray(a, np.float64)
  a, mp, mq = f64(inter["samples"]), f64(inter["prior_mean"]), f64(inter["proposal_mean"])
  np.testing.assert_allclose(mq, np.tanh(np.arctanh(mp) + [0.8, -0.8]), rtol=1e-4, atol=1e-5)
  eps = (a - mq) / 0.4
  assert abs(eps.mean()) < 0.1 and abs(eps.std() - 1.0) < 0.07
  np.testing.assert_allclose(inter["log_proposal"], stats.norm.logpdf(a, mq, 0.4).sum(-1), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(inter["log_prior"], stats.norm.logpdf(a, mp, 0.2).sum(-1), rtol=1e-4, atol=1e-4)


def test_init_without_labels_builds_the_inference_network():
  # plain model.init(x) (no labels) must build q's parameters too: the same tree as an init with labels
  model = models.get_model("wsram", num_classes=3, num_glimpses=2, **TINY)
  x = jnp.zeros((2, 4, 4, 1))
  rngs = {"params": jax.random.PRNGKey(1), "glimpse": jax.random.PRNGKey(2)}
  unlabelled = jax.eval_shape(model.init, rngs, x)
  labelled = jax.eval_shape(model.init, rngs, x, jnp.array([0, 1]))
  assert "inference" in unlabelled["params"]["trajectory"]
  assert jax.tree.structure(unlabelled) == jax.tree.structure(labelled)
