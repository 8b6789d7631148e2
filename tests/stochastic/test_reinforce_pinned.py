"""Discounted returns in ram_hybrid_loss, hand-computed (added by mutation testing)."""

import jax.numpy as jnp
import numpy as np

from aila_jax.stochastic import reinforce


def test_mean_return_is_the_discounted_return_from_the_first_step():
  log_probs = jnp.zeros((2, 3))
  baseline = jnp.zeros((2, 3))
  log_lik = jnp.zeros(2)
  # One terminal reward per episode: R_0 = gamma^(T-1) r = 0.25 r.
  out = reinforce.ram_hybrid_loss(log_lik, log_probs, jnp.array([1.0, 0.5]),
                                  baseline, discount=0.5)
  np.testing.assert_allclose(out.mean_return, 0.25 * 0.75, rtol=1e-6)
  # Per-step rewards: R_0 = r0 + 0.5 r1 + 0.25 r2 = 2.75 and 0.5.
  rewards = jnp.array([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
  out = reinforce.ram_hybrid_loss(log_lik, log_probs, rewards, baseline,
                                  discount=0.5)
  np.testing.assert_allclose(out.mean_return, (2.75 + 0.5) / 2, rtol=1e-6)
  # Baseline MSE against the discounted returns-to-go R_t.
  returns = np.array([[2.75, 3.5, 3.0], [0.5, 1.0, 4.0]])
  np.testing.assert_allclose(out.baseline, np.mean(returns**2), rtol=1e-6)
