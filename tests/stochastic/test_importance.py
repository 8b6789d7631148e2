"""Tests for aila_jax.stochastic.importance (weights, log-marginal, ESS)."""

import math

from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.stochastic import importance


def norm_logpdf(x, mean, std):
  return (-0.5 * jnp.square((x - mean) / std) - jnp.log(std) -
          0.5 * math.log(2 * math.pi))


def np_logsumexp(x, axis=0):
  m = np.max(x, axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


class ImportanceWeightsTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @hypothesis.settings(max_examples=6, deadline=None, derandomize=True)
  @hypothesis.given(k=st.integers(1, 8), b=st.integers(1, 4),
                    spread=st.sampled_from([0.1, 10.0, 1000.0]),
                    seed=st.integers(0, 2**16))
  def test_normalisation_ess_and_log_marginal(self, k, b, spread, seed):
    rng = np.random.default_rng(seed)
    log_w = (rng.standard_normal((k, b)) * spread - 500.0).astype(np.float32)

    @self.variant
    def stats(lw):
      return (importance.normalized_log_weights(lw),
              importance.effective_sample_size(lw),
              importance.log_marginal_estimate(lw))

    log_norm, ess, log_marginal = stats(log_w)
    chex.assert_shape(log_norm, (k, b))
    chex.assert_shape((ess, log_marginal), (b,))
    np.testing.assert_allclose(jnp.exp(log_norm).sum(0), 1.0, rtol=1e-5)
    self.assertTrue(bool(jnp.all(ess >= 1.0 - 1e-4)))
    self.assertTrue(bool(jnp.all(ess <= k + 1e-3)))
    lw64 = log_w.astype(np.float64)
    np.testing.assert_allclose(log_marginal, np_logsumexp(lw64) - np.log(k),
                               rtol=1e-5, atol=1e-3)
    w64 = np.exp(lw64 - np_logsumexp(lw64))
    np.testing.assert_allclose(ess, 1.0 / np.sum(w64**2, 0), rtol=1e-4)

  def test_ess_extremes(self):
    equal = jnp.full((5, 2), -3.0)
    np.testing.assert_allclose(importance.effective_sample_size(equal), 5.0,
                               rtol=1e-6)
    dominant = jnp.array([[0.0], [-1e4], [-1e4]])
    np.testing.assert_allclose(importance.effective_sample_size(dominant), 1.0,
                               rtol=1e-6)
    # Two equal dominant weights: ESS 2.
    two = jnp.array([[5.0], [5.0], [-1e4]])
    np.testing.assert_allclose(importance.effective_sample_size(two), 2.0,
                               rtol=1e-6)

  def test_importance_log_weights(self):
    lp, ll, lq = jnp.array([[1.0]]), jnp.array([[2.0]]), jnp.array([[0.5]])
    np.testing.assert_allclose(importance.importance_log_weights(lp, ll, lq),
                               [[2.5]])

  def test_extreme_log_weights_stay_finite(self):
    log_w = jnp.array([[-1e30], [-1e30]], jnp.float32)
    for out in (importance.normalized_log_weights(log_w),
                importance.effective_sample_size(log_w),
                importance.log_marginal_estimate(log_w)):
      self.assertFalse(bool(jnp.any(jnp.isnan(out))))


class LogMarginalGaussianTest(parameterized.TestCase):
  """a ~ N(mu0, 1), y | a ~ N(a, s^2): p(y) = N(y; mu0, 1 + s^2)."""

  mu0, s = 0.3, 0.8
  ys = jnp.array([-1.5, 0.0, 0.7, 2.5])

  def exact(self):
    return norm_logpdf(self.ys, self.mu0, math.sqrt(1 + self.s**2))

  def estimate(self, key, num_samples, q_mean, q_std):
    a = q_mean + q_std * jax.random.normal(key, (num_samples,) + self.ys.shape)
    log_w = importance.importance_log_weights(
        norm_logpdf(a, self.mu0, 1.0), norm_logpdf(self.ys, a, self.s),
        norm_logpdf(a, q_mean, q_std))
    return importance.log_marginal_estimate(log_w)

  def test_exact_posterior_proposal_gives_exact_value(self):
    post_var = 1.0 / (1.0 + 1.0 / self.s**2)
    post_mean = post_var * (self.mu0 + self.ys / self.s**2)
    est = self.estimate(jax.random.key(0), 3, post_mean, math.sqrt(post_var))
    np.testing.assert_allclose(est, self.exact(), atol=1e-5)

  def test_converges_with_many_samples(self):
    est = jax.jit(self.estimate, static_argnums=1)(
        jax.random.key(1), 20000, 0.6 * self.ys, 1.2)
    np.testing.assert_allclose(est, self.exact(), atol=0.02)

  def test_bias_shrinks_with_k(self):
    # E[log p_hat_K] increases with K towards log p(y) (Burda et al.).
    keys = jax.random.split(jax.random.key(2), 400)
    run = jax.jit(jax.vmap(self.estimate, in_axes=(0, None, None, None)),
                  static_argnums=1)
    gap_1 = self.exact() - run(keys, 1, 0.0, 2.0).mean(0)
    gap_50 = self.exact() - run(keys, 50, 0.0, 2.0).mean(0)
    self.assertTrue(bool(jnp.all(gap_1 > 0.2)), gap_1)
    self.assertTrue(bool(jnp.all(gap_50 < 0.5 * gap_1)), (gap_1, gap_50))


class ImportanceErrorTest(parameterized.TestCase):

  def test_zero_samples(self):
    with pytest.raises(
        ValueError,
        match=r"samples K \(axis 0 of log_weights\) must be >= 1, got K=0"):
      importance.log_marginal_estimate(jnp.zeros((0, 3)))
    with pytest.raises(ValueError, match="must be >= 1, got K=0"):
      importance.effective_sample_size(jnp.zeros((0,)))

  def test_mismatched_shapes(self):
    with pytest.raises(ValueError, match="same shape"):
      importance.importance_log_weights(jnp.zeros((4, 2)), jnp.zeros((4, 3)),
                                        jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"log_likelihood=\(2, 4\)"):
      importance.importance_log_weights(jnp.zeros((4, 2)), jnp.zeros((2, 4)),
                                        jnp.zeros((4, 2)))

  def test_scalar_and_integer_inputs(self):
    with pytest.raises(ValueError, match="got a scalar"):
      importance.normalized_log_weights(jnp.float32(0.0))
    with pytest.raises(ValueError, match="floating"):
      importance.normalized_log_weights(jnp.zeros((3, 2), jnp.int32))
