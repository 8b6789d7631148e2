"""Tests for aila_jax.stochastic.variance.gradient_variance."""

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.stochastic import variance


def noisy_grad(params, key):
  """Gradient = params + noise with std 2 on 'a' (3 elements), 0.5 on 'b'."""
  ka, kb = jax.random.split(key)
  return {"a": params["a"] + 2.0 * jax.random.normal(ka, (3,)),
          "b": params["b"] + 0.5 * jax.random.normal(kb, (2, 2))}


PARAMS = {"a": jnp.array([1.0, -1.0, 0.5]), "b": jnp.ones((2, 2))}


class GradientVarianceTest(parameterized.TestCase):

  def test_known_variances_and_numpy_reference(self):
    key = jax.random.key(0)
    stats = variance.gradient_variance(noisy_grad, PARAMS, key, 4000)
    chex.assert_trees_all_close(stats.mean, PARAMS, atol=0.15)
    chex.assert_shape(stats.elementwise_variance["b"], (2, 2))
    # Trace of the covariance: 3 elements of variance 4, 4 of variance 1/4.
    np.testing.assert_allclose(stats.variance["a"], 3 * 4.0, rtol=0.08)
    np.testing.assert_allclose(stats.variance["b"], 4 * 0.25, rtol=0.08)
    np.testing.assert_allclose(stats.total_variance,
                               stats.variance["a"] + stats.variance["b"],
                               rtol=1e-6)
    np.testing.assert_allclose(stats.mean_squared_norm, 2.25 + 4.0, rtol=0.1)
    # Exactly the unbiased (ddof=1) sample variance of the same draws.
    draws = jax.jit(jax.vmap(lambda k: noisy_grad(PARAMS, k)))(
        jax.random.split(key, 4000))
    for name in ("a", "b"):
      expected = np.var(np.asarray(draws[name], np.float64), axis=0,
                        ddof=1).sum()
      np.testing.assert_allclose(stats.variance[name], expected, rtol=1e-4)
      np.testing.assert_allclose(
          stats.elementwise_variance[name],
          np.var(np.asarray(draws[name], np.float64), axis=0, ddof=1),
          rtol=1e-4)

  def test_chunked_equals_vectorised(self):
    key = jax.random.key(0)
    full = variance.gradient_variance(noisy_grad, PARAMS, key, 4000)
    chunked = variance.gradient_variance(noisy_grad, PARAMS, key, 4000,
                                         batch_size=1000)
    chex.assert_trees_all_close(full, chunked, rtol=1e-4)

  def test_deterministic_gradient_has_zero_variance(self):
    stats = variance.gradient_variance(lambda p, k: jax.tree.map(jnp.sin, p),
                                       PARAMS, jax.random.key(3), 5)
    np.testing.assert_allclose(stats.total_variance, 0.0, atol=1e-12)

  @parameterized.parameters(
      dict(num_samples=1, batch_size=None, match="num_samples must be >= 2"),
      dict(num_samples=3.0, batch_size=None, match="Python int"),
      dict(num_samples=4, batch_size=0, match="batch_size must be"),
  )
  def test_bad_arguments(self, num_samples, batch_size, match):
    with pytest.raises(ValueError, match=match):
      variance.gradient_variance(noisy_grad, PARAMS, jax.random.key(0),
                                 num_samples, batch_size=batch_size)
