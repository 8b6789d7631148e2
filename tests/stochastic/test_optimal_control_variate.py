"""The optimal-coefficient control variate (Paisley et al. 2012) of WS-RAM's prior: exact checks.

A discrete latent a in {0, 1, 2} with a shared prior p(a) = softmax(theta), so the score of a
sample is onehot(a) - softmax(theta) and the Gram matrix of the scores is known exactly.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.stochastic import control_variates as cv
from aila_jax.stochastic import variance
from aila_jax.stochastic import wake_sleep

V, K = 3, 2
PRIOR = jnp.array([-0.8, -0.3, -1.0])            # prior logits theta
LIK = jnp.array([[-0.1, -2.3, -2.2],             # log p(y_b | a), one row per example
                 [-1.5, -0.2, -2.0]])
Q = jnp.array([[2.2, -0.1, -0.1],                # proposal logits, one row per example
               [0.3, 1.0, -0.5]])


def prior_loss(theta, tup, lik, log_q, control_variate, gram="full"):
  """The prior's wake loss at the samples ``tup`` [K, B] (values in 0..V-1)."""
  log_p = jax.nn.log_softmax(theta)
  lik_k = jnp.take_along_axis(lik.T, tup, axis=0)  # (K, B)
  lq_k = jnp.take_along_axis(log_q.T, tup, axis=0)  # (K, B)
  score = jax.nn.one_hot(tup, V) - jnp.exp(log_p)  # (K, B, V): d/dtheta log p(a_k)
  if gram == "full":
    g = jnp.einsum("kbv,jbv->kjb", score, score)  # (K, K, B)
  elif gram == "diag":
    g = jnp.sum(score * score, -1)  # (K, B)
  else:
    g = None
  return wake_sleep.rws_wake_losses(log_p[tup], lik_k, lq_k, prior_control_variate=control_variate,
                                    prior_score_gram=g).prior_loss


VARIANTS = (("none", None), ("unnormalized", None), ("optimal", "full"), ("optimal", "diag"),
            ("optimal", None))


def enumerate_gradients(lik, q, variants=VARIANTS):
  """All K x B sample tuples with their probabilities under q; the prior gradient of every variant at each."""
  b = lik.shape[0]
  tuples = jnp.array(list(itertools.product(range(V), repeat=K * b))).reshape(-1, K, b)
  log_q = jax.nn.log_softmax(q, -1)  # (B, V)
  probs = np.exp(np.asarray(jnp.take_along_axis(log_q.T[None], tuples, axis=1).sum((1, 2)), np.float64))

  def all_variants(tup):
    return [jax.grad(prior_loss)(PRIOR, tup, lik, log_q, c, g) for c, g in variants]

  grads = jax.jit(jax.vmap(all_variants))(tuples)
  return probs, {k: np.asarray(v, np.float64) for k, v in zip(variants, grads)}  # (N,), {variant: (N, V)}


def test_expected_gradient_is_unchanged_exactly():
  probs, grads = enumerate_gradients(LIK, Q)
  assert abs(probs.sum() - 1.0) < 1e-6
  plain = grads[("none", None)]
  mean_plain = probs @ plain
  assert np.abs(mean_plain).max() > 0.05  # a gradient worth matching
  for gram in ("full", "diag", None):
    opt = grads[("optimal", gram)]
    np.testing.assert_allclose(probs @ opt, mean_plain, atol=2e-6, err_msg=str(gram))
    assert np.abs(opt - plain).max() > 1e-2  # the control variate does change the draws


def test_population_coefficient_minimises_exact_variance_and_batch_estimate_finds_it():
  # One example (row 0): enumerate its K samples, g = plain estimator, h = the control variate.
  lik, q = LIK[:1], Q[:1]
  probs, grads = enumerate_gradients(lik, q, VARIANTS[:2])
  g, g_unnorm = grads[("none", None)], grads[("unnormalized", None)]
  h = g - g_unnorm  # sum_k (r_k / K) score_k, the a = 1 control variate
  np.testing.assert_allclose(probs @ h, 0.0, atol=1e-6)  # zero mean
  mean = probs @ g
  alpha = (probs @ np.sum(g * h, -1)) / (probs @ np.sum(h * h, -1))  # Cov(g, h) / Var(h), E h = 0

  def exact_variance(a):
    return probs @ np.sum((g - a * h - mean) ** 2, -1)

  v_none, v_one, v_opt = exact_variance(0.0), exact_variance(1.0), exact_variance(alpha)
  assert 0.2 < alpha < 0.6, alpha  # far from both 0 (none) and 1 (unnormalized)
  assert v_opt < 0.5 * min(v_none, v_one), (v_opt, v_none, v_one)
  # The library's per-batch (leave-one-out) coefficient converges to alpha on a large batch.
  batch = 4000
  tup = jax.random.categorical(jax.random.key(0), jax.nn.log_softmax(q[0]), shape=(K, batch))
  log_p = jax.nn.log_softmax(PRIOR)
  log_w = log_p[tup] + lik[0][tup] - jax.nn.log_softmax(q[0])[tup]  # (K, B)
  w = jax.nn.softmax(log_w, axis=0)
  control = jnp.exp(log_p[tup] - jax.nn.log_softmax(q[0])[tup]) / K
  score = jax.nn.one_hot(tup, V) - jnp.exp(log_p)
  est = cv.leave_one_out_optimal_scale(w, control, jnp.einsum("kbv,jbv->kjb", score, score))
  assert est.shape == (batch,)
  np.testing.assert_allclose(np.asarray(est), alpha, atol=0.04)


def test_variance_on_a_batch_of_64_is_below_plain_and_unnormalized():
  log_q = jax.nn.log_softmax(Q[0])
  lik, log_qs = jnp.tile(LIK[:1], (64, 1)), jnp.tile(log_q[None], (64, 1))

  def grad_fn(theta, key):  # the three estimators on the same draws
    tup = jax.random.categorical(key, log_q, shape=(K, 64))
    return {name: jax.grad(prior_loss)(theta, tup, lik, log_qs, name)
            for name in ("none", "unnormalized", "optimal")}

  stats = variance.gradient_variance(grad_fn, PRIOR, jax.random.key(1), 400).variance
  stats = {k: float(v) for k, v in stats.items()}
  assert stats["optimal"] < 0.5 * min(stats["none"], stats["unnormalized"]), stats


def test_scale_is_a_constant_and_leaves_each_example_out():
  signal = jnp.array([[0.2, 0.7, 0.5], [0.8, 0.3, 0.5]])
  control = jnp.array([[0.1, 0.6, 0.4], [0.5, 0.2, 0.3]])
  num = (signal * control).sum(0)
  den = (control * control).sum(0)
  expected = [(num.sum() - num[b]) / (den.sum() - den[b]) for b in range(3)]
  np.testing.assert_allclose(cv.leave_one_out_optimal_scale(signal, control), expected, rtol=1e-5)
  grads = jax.grad(lambda s, c: cv.leave_one_out_optimal_scale(s, c).sum(), argnums=(0, 1))(signal, control)
  np.testing.assert_allclose(grads[0], 0.0)
  np.testing.assert_allclose(grads[1], 0.0)


@pytest.mark.parametrize("args,match", [
    ((jnp.zeros((2, 3)), jnp.zeros((2, 4))), "same shape"),
    ((jnp.zeros((2, 1)), jnp.zeros((2, 1))), ">= 2 examples"),
    ((jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((3, 3))), "score_gram must have shape"),
])
def test_bad_shapes(args, match):
  with pytest.raises(ValueError, match=match):
    cv.leave_one_out_optimal_scale(*args)
