"""Tests for aila_jax.stochastic.wake_sleep (reweighted wake-sleep, WS-RAM)."""

import itertools
import math

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.stochastic import importance
from aila_jax.stochastic import wake_sleep


def norm_logpdf(x, mean, std):
  return (-0.5 * jnp.square((x - mean) / std) - jnp.log(std) -
          0.5 * math.log(2 * math.pi))


# Gaussian model: a ~ N(mu, 1) (prior), y | a ~ N(a + c, SIGMA^2) (predictor),
# q(a | y) = N(m + 0.5 y, Q_STD^2) (inference network). Exact:
# p(y) = N(y; mu + c, 1 + SIGMA^2), posterior N(post_mean, post_var).
SIGMA, Q_STD = 0.8, 0.9
YS = jnp.array([-1.0, 0.2, 1.5])
PARAMS = {"mu": jnp.array(0.3), "c": jnp.array(-0.2), "m": jnp.array(0.1)}


def gaussian_log_probs(params, key, num_samples):
  """[K, B] log prior, log likelihood and log proposal at samples from q."""
  q_mean = params["m"] + 0.5 * YS
  eps = jax.random.normal(key, (num_samples,) + YS.shape)
  a = jax.lax.stop_gradient(q_mean + Q_STD * eps)  # (K, B)
  return (norm_logpdf(a, params["mu"], 1.0),
          norm_logpdf(YS, a + params["c"], SIGMA),
          norm_logpdf(a, q_mean, Q_STD))


def posterior(params):
  var = 1.0 / (1.0 + 1.0 / SIGMA**2)
  mean = var * (params["mu"] + (YS - params["c"]) / SIGMA**2)
  return mean, var


class WakeLossesTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_output_shapes_and_weights(self):
    lp, ll, lq = gaussian_log_probs(PARAMS, jax.random.key(0), 6)
    out = self.variant(wake_sleep.rws_wake_losses)(lp, ll, lq)
    chex.assert_shape((out.predictor_loss, out.prior_loss, out.proposal_loss,
                       out.total), ())
    chex.assert_shape((out.log_marginal, out.effective_sample_size), (3,))
    chex.assert_shape(out.normalized_log_weights, (6, 3))
    np.testing.assert_allclose(jnp.exp(out.normalized_log_weights).sum(0), 1.0,
                               rtol=1e-5)
    self.assertTrue(bool(jnp.all((out.effective_sample_size >= 1.0) &
                                 (out.effective_sample_size <= 6.0))))
    np.testing.assert_allclose(
        out.total, out.predictor_loss + out.prior_loss + out.proposal_loss,
        rtol=1e-6)

  def test_model_gradient_is_gradient_of_log_marginal_estimate(self):
    # With the samples fixed, grad_theta (L_pred + L_prior) equals
    # -grad_theta mean_b log p_hat(y_b | x) (the RWS wake-theta identity).
    key = jax.random.key(1)

    def surrogate(params):
      out = wake_sleep.rws_wake_losses(*gaussian_log_probs(params, key, 7))
      return out.predictor_loss + out.prior_loss

    def neg_log_marginal(params):
      lp, ll, lq = gaussian_log_probs(params, key, 7)
      lq = jax.lax.stop_gradient(lq)
      return -jnp.mean(importance.log_marginal_estimate(
          importance.importance_log_weights(lp, ll, lq)))

    g_s = jax.jit(jax.grad(surrogate))(PARAMS)
    g_e = jax.jit(jax.grad(neg_log_marginal))(PARAMS)
    for name in ("mu", "c"):
      np.testing.assert_allclose(g_s[name], g_e[name], rtol=1e-5, atol=1e-6)
    # The generative losses give the inference network no gradient.
    np.testing.assert_allclose(g_s["m"], 0.0, atol=1e-7)

  def test_gradients_converge_to_exact_with_many_samples(self):
    def losses(params):
      lp, ll, lq = gaussian_log_probs(params, jax.random.key(2), 20000)
      out = wake_sleep.rws_wake_losses(lp, ll, lq)
      return out.predictor_loss + out.prior_loss, out.proposal_loss

    g_model = jax.jit(jax.grad(lambda p: losses(p)[0]))(PARAMS)
    g_q = jax.jit(jax.grad(lambda p: losses(p)[1]))(PARAMS)
    # d/dmu log p(y) = d/dc log p(y) = (y - mu - c) / (1 + SIGMA^2).
    exact = jnp.mean((YS - PARAMS["mu"] - PARAMS["c"]) / (1 + SIGMA**2))
    np.testing.assert_allclose(-g_model["mu"], exact, atol=0.01)
    np.testing.assert_allclose(-g_model["c"], exact, atol=0.01)
    # Wake-q: E_post[d/dm log q(a)] = mean_b (post_mean - q_mean) / Q_STD^2.
    post_mean, _ = posterior(PARAMS)
    exact_q = jnp.mean((post_mean - PARAMS["m"] - 0.5 * YS) / Q_STD**2)
    np.testing.assert_allclose(-g_q["m"], exact_q, atol=0.02)

  def test_exact_posterior_proposal_with_uniform_cv_gives_zero_q_gradient(
      self):
    # q = p(a | y) exactly: equal weights, so sum_k (w_k - 1/K) grad log q = 0
    # for every draw, while the plain wake-q estimate is noise.
    def q_grad(q_shift, cv):
      def loss(shift):
        mean, var = posterior(PARAMS)
        eps = jax.random.normal(jax.random.key(3), (5, 3))
        a = jax.lax.stop_gradient(mean + math.sqrt(var) * eps)
        lq = norm_logpdf(a, mean + shift, math.sqrt(var))
        out = wake_sleep.rws_wake_losses(
            norm_logpdf(a, PARAMS["mu"], 1.0),
            norm_logpdf(YS, a + PARAMS["c"], SIGMA), lq,
            proposal_control_variate=cv)
        return out.proposal_loss
      return jax.jit(jax.grad(loss))(q_shift)

    self.assertLess(abs(float(q_grad(0.0, "uniform"))), 1e-5)
    self.assertGreater(abs(float(q_grad(0.0, "none"))), 1e-2)

  def test_self_normalized_prior_cv_zero_when_likelihood_ignores_a(self):
    # Posterior = prior: the prior needs no update; the control variate
    # removes the noise exactly.
    a = PARAMS["m"] + Q_STD * jax.random.normal(jax.random.key(4), (5, 3))
    lq = norm_logpdf(a, PARAMS["m"], Q_STD)
    flat = jnp.full_like(a, -1.3)  # log p(y | a) does not depend on a

    def prior_loss(mu, cv):
      return wake_sleep.rws_wake_losses(
          norm_logpdf(a, mu, 1.0), flat, lq,
          prior_control_variate=cv).prior_loss

    g_cv = jax.grad(prior_loss)(PARAMS["mu"], "self_normalized")
    g_plain = jax.grad(prior_loss)(PARAMS["mu"], "none")
    self.assertLess(abs(float(g_cv)), 1e-6)
    self.assertGreater(abs(float(g_plain)), 1e-3)


# Discrete model for exact expectations over all K-tuples of samples.
NUM_VALUES, K = 3, 2
TUPLES = jnp.array(list(itertools.product(range(NUM_VALUES), repeat=K)))


def discrete_logits():
  return {
      "prior": jnp.array([0.4, -0.3, 0.1]),
      "lik": jnp.array([-0.5, -2.0, -1.0]),  # log p(y | a) for the given y
      "q": jnp.array([0.0, 0.5, -0.7]),
  }


def expected_wake_gradient(params, prior_cv, proposal_cv):
  """E_{a_1..a_K ~ q}[grad of the wake losses], exactly, by enumeration."""
  log_q = jax.nn.log_softmax(params["q"])
  probs = jnp.exp(log_q[TUPLES].sum(1))  # (K^K... tuples,)

  def loss(p, tup):  # tup: (K,)
    lp = jax.nn.log_softmax(p["prior"])[tup][:, None]  # (K, 1)
    ll = p["lik"][tup][:, None]
    lq = jax.nn.log_softmax(p["q"])[tup][:, None]
    out = wake_sleep.rws_wake_losses(lp, ll, lq,
                                     prior_control_variate=prior_cv,
                                     proposal_control_variate=proposal_cv)
    return out.prior_loss + out.proposal_loss

  grads = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, TUPLES)
  return jax.tree.map(lambda g: jnp.tensordot(probs, g, axes=1), grads)


class ControlVariateExpectationTest(parameterized.TestCase):

  def test_unbiased_control_variates_keep_the_expectation(self):
    params = discrete_logits()
    plain = expected_wake_gradient(params, "none", "none")
    with_cv = expected_wake_gradient(params, "unnormalized", "uniform")
    chex.assert_trees_all_close(plain["prior"], with_cv["prior"], atol=1e-6)
    chex.assert_trees_all_close(plain["q"], with_cv["q"], atol=1e-6)
    # The test is sensitive: the control variates do change each draw.
    self.assertGreater(
        float(jnp.abs(plain["prior"]).sum()), 1e-3)

  def test_self_normalized_prior_cv_has_small_bias(self):
    params = discrete_logits()
    plain = expected_wake_gradient(params, "none", "none")
    self_norm = expected_wake_gradient(params, "self_normalized", "none")
    diff = float(jnp.abs(plain["prior"] - self_norm["prior"]).max())
    self.assertGreater(diff, 1e-4)  # biased at finite K, as documented
    self.assertLess(diff, 0.25)


class SleepLossTest(parameterized.TestCase):

  def test_dreamed_labels_is_mean_negative_log_q(self):
    lq = jnp.array([[-1.0, -2.0], [-3.0, -4.0]])
    np.testing.assert_allclose(wake_sleep.rws_sleep_loss(lq), 2.5)

  def test_true_label_sleep_estimates_posterior_expectation(self):
    # a_s ~ prior, weights p(y | a_s): -grad_m L ~ E_post[d/dm log q(a | y)].
    def loss(m):
      a = PARAMS["mu"] + jax.random.normal(jax.random.key(5), (20000, 3))
      q_mean = m + 0.5 * YS
      return wake_sleep.rws_sleep_loss(
          norm_logpdf(a, q_mean, Q_STD),
          norm_logpdf(YS, a + PARAMS["c"], SIGMA))

    g = jax.jit(jax.grad(loss))(PARAMS["m"])
    post_mean, _ = posterior(PARAMS)
    exact = jnp.mean((post_mean - PARAMS["m"] - 0.5 * YS) / Q_STD**2)
    np.testing.assert_allclose(-g, exact, atol=0.03)

  def test_sleep_likelihood_gets_no_gradient(self):
    g = jax.grad(lambda ll: wake_sleep.rws_sleep_loss(jnp.ones((3, 2)), ll))(
        jnp.zeros((3, 2)))
    np.testing.assert_allclose(g, 0.0)


class WakeSleepErrorTest(parameterized.TestCase):

  def test_zero_samples(self):
    z = jnp.zeros((0, 4))
    with pytest.raises(ValueError, match="must be >= 1, got K=0"):
      wake_sleep.rws_wake_losses(z, z, z)
    with pytest.raises(ValueError, match="must be >= 1, got K=0"):
      wake_sleep.rws_sleep_loss(z)

  def test_mismatched_shapes(self):
    with pytest.raises(ValueError, match=r"log_proposal=\(4, 2\)"):
      wake_sleep.rws_wake_losses(jnp.zeros((2, 4)), jnp.zeros((2, 4)),
                                 jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="same shape"):
      wake_sleep.rws_sleep_loss(jnp.zeros((3, 2)), jnp.zeros((3, 1)))

  @parameterized.parameters(
      dict(prior_control_variate="baseline"),
      dict(proposal_control_variate="self_normalized"))
  def test_unknown_control_variate(self, **kwargs):
    z = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="must be one of"):
      wake_sleep.rws_wake_losses(z, z, z, **kwargs)
