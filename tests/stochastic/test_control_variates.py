"""Tests for aila_jax.stochastic.control_variates: variance goes down."""

import math

from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.stochastic import control_variates as cv
from aila_jax.stochastic import reinforce
from aila_jax.stochastic import variance
from aila_jax.stochastic import wake_sleep


def norm_logpdf(x, mean, std):
  return (-0.5 * jnp.square((x - mean) / std) - jnp.log(std) -
          0.5 * math.log(2 * math.pi))


class GenericControlVariateTest(parameterized.TestCase):

  def test_leave_one_out_baseline(self):
    signals = jnp.array([[1.0, 0.0], [2.0, 4.0], [6.0, 2.0]])
    np.testing.assert_allclose(cv.leave_one_out_baseline(signals),
                               [[4.0, 3.0], [3.5, 1.0], [1.5, 2.0]])
    np.testing.assert_allclose(cv.leave_one_out_baseline(signals, axis=1),
                               [[0.0, 1.0], [4.0, 2.0], [2.0, 6.0]])
    g = jax.grad(lambda s: cv.leave_one_out_baseline(s).sum())(signals)
    np.testing.assert_allclose(g, 0.0)

  def test_leave_one_out_needs_two_samples(self):
    with pytest.raises(ValueError, match="K >= 2"):
      cv.leave_one_out_baseline(jnp.zeros((1, 3)))

  def test_baseline_loss_trains_only_the_baseline(self):
    g_b, g_t = jax.grad(cv.baseline_loss, argnums=(0, 1))(
        jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0]))
    np.testing.assert_allclose(g_b, [1.0, -2.0])
    np.testing.assert_allclose(g_t, [0.0, 0.0])
    with pytest.raises(ValueError, match="do not broadcast"):
      cv.baseline_loss(jnp.zeros(3), jnp.zeros(4))

  def test_optimal_coefficient_removes_correlated_noise(self):
    rng = np.random.default_rng(0)
    h = rng.standard_normal((20000, 2)).astype(np.float32)
    f = (np.array([2.0, -0.5]) * h +
         0.1 * rng.standard_normal((20000, 2))).astype(np.float32)
    c = cv.optimal_coefficient(f, h)
    np.testing.assert_allclose(c, [2.0, -0.5], atol=0.01)
    corrected = cv.apply_control_variate(f, h, c)
    np.testing.assert_allclose(corrected.var(0), [0.01, 0.01], rtol=0.05)
    with pytest.raises(ValueError, match="same shape"):
      cv.optimal_coefficient(f, h[:, :1])


class VarianceReductionTest(parameterized.TestCase):
  """Measured with aila_jax.stochastic.variance.gradient_variance."""

  def test_reinforce_baseline_reduces_variance_without_bias(self):
    # Location a ~ N(mu, 0.5^2), reward -(a - c)^2 + 5 (a large offset, the
    # case a baseline fixes); the baseline is E[R], as a learned b(x) gives.
    mu, c, sigma, batch = 0.4, -0.3, 0.5, 8
    mean_reward = 5.0 - ((mu - c)**2 + sigma**2)

    def make(use_baseline):
      def grad_fn(params, key):
        def loss(p):
          a = jax.lax.stop_gradient(
              p + sigma * jax.random.normal(key, (batch, 1)))
          log_prob = norm_logpdf(a, p, sigma)
          reward = 5.0 - jnp.square(a[:, 0] - c)
          base = jnp.full((batch, 1), mean_reward) if use_baseline else None
          return reinforce.reinforce_loss(log_prob, reward, base)
        return jax.grad(loss)(params)
      return grad_fn

    key = jax.random.key(0)
    plain = variance.gradient_variance(make(False), jnp.array(mu), key, 4000)
    based = variance.gradient_variance(make(True), jnp.array(mu), key, 4000)
    self.assertLess(float(based.total_variance),
                    0.2 * float(plain.total_variance))
    exact = 2 * (mu - c)  # d(-E[R])/dmu
    for stats in (plain, based):
      stderr = math.sqrt(float(stats.total_variance) / 4000)
      self.assertLess(abs(float(stats.mean) - exact), 4 * stderr + 1e-3)

  def test_ws_ram_control_variates_reduce_variance(self):
    # A weakly informative predictor (sigma = 3) and a proposal of the
    # posterior's width: the regime of early WS-RAM training.
    ys = jnp.array([0.3, -1.0, 2.0, 0.5])
    sigma, k = 3.0, 5
    post_std = math.sqrt(1.0 / (1.0 + 1.0 / sigma**2))

    def make(p_cv, q_cv):
      def grad_fn(params, key):
        def loss(p):
          eps = jax.random.normal(key, (k,) + ys.shape)
          a = jax.lax.stop_gradient(p["m"] + post_std * eps)
          out = wake_sleep.rws_wake_losses(
              norm_logpdf(a, p["mu"], 1.0), norm_logpdf(ys, a, sigma),
              norm_logpdf(a, p["m"], post_std),
              prior_control_variate=p_cv, proposal_control_variate=q_cv)
          return out.prior_loss + out.proposal_loss
        return jax.grad(loss)(params)
      return grad_fn

    params = {"mu": jnp.array(0.2), "m": jnp.array(0.0)}
    key = jax.random.key(1)
    plain = variance.gradient_variance(make("none", "none"), params, key, 2000)
    reduced = variance.gradient_variance(
        make("self_normalized", "uniform"), params, key, 2000)
    # The prior's and the inference network's gradients both get quieter.
    for leaf in ("mu", "m"):
      self.assertLess(float(reduced.variance[leaf]),
                      0.5 * float(plain.variance[leaf]), leaf)
