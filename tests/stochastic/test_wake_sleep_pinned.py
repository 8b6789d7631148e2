"""Per-sample learning signals of rws_wake_losses against numpy formulas.

Added by mutation testing. The gradient of each surrogate loss with respect to
its log-probability input is minus the signal over the batch size,
d L_prior / d log p(a_k) = -(w_k - c^p_k) / B, so these tests pin every
control variate (and the metrics) value by value, not only in expectation.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from aila_jax.stochastic import wake_sleep

K, B = 4, 3


def _inputs():
  rng = np.random.default_rng(0)
  lp = rng.normal(-1.0, 0.7, (K, B))
  ll = rng.normal(-1.5, 1.0, (K, B))
  lq = rng.normal(-1.2, 0.5, (K, B))
  return lp, ll, lq


def _np_signals(lp, ll, lq, prior_cv, gram=None):
  log_w_tilde = lp + ll - lq
  w = np.exp(log_w_tilde - logsumexp(log_w_tilde, axis=0))
  r = np.exp(lp - lq)
  if prior_cv == "none":
    return w, w
  if prior_cv == "self_normalized":
    return w, w - r / r.sum(0)
  if prior_cv == "unnormalized":
    return w, w - r / K
  c = r / K  # "optimal"
  if gram is None:
    gram = np.broadcast_to(np.eye(K)[:, :, None], (K, K, B))
  elif gram.ndim == 2:
    gram = np.einsum("kb,kj->kjb", gram, np.eye(K))
  num = np.einsum("kb,kjb,jb->b", w, gram, c)
  den = np.einsum("kb,kjb,jb->b", c, gram, c)
  alpha = (num.sum() - num) / (den.sum() - den)
  return w, w - alpha * c


def _grads(lp, ll, lq, gram=None, **kwargs):
  f32 = lambda x: jnp.asarray(x, jnp.float32)

  def losses(a, b, c):
    out = wake_sleep.rws_wake_losses(
        a, b, c, prior_score_gram=None if gram is None else f32(gram), **kwargs)
    return out.predictor_loss, out.prior_loss, out.proposal_loss

  g_pred = jax.grad(lambda b: losses(f32(lp), b, f32(lq))[0])(f32(ll))
  g_prior = jax.grad(lambda a: losses(a, f32(ll), f32(lq))[1])(f32(lp))
  g_prop = jax.grad(lambda c: losses(f32(lp), f32(ll), c)[2])(f32(lq))
  return g_pred, g_prior, g_prop


@pytest.mark.parametrize("prior_cv,gram_kind", [
    ("none", None), ("self_normalized", None), ("unnormalized", None),
    ("optimal", None), ("optimal", "diag"), ("optimal", "full")])
def test_prior_signal_matches_formula(prior_cv, gram_kind):
  lp, ll, lq = _inputs()
  rng = np.random.default_rng(1)
  gram = None
  if gram_kind == "diag":
    gram = rng.uniform(0.2, 3.0, (K, B))
  elif gram_kind == "full":
    a = rng.standard_normal((K, 3, B))
    gram = np.einsum("kvb,jvb->kjb", a, a)
  w, signal = _np_signals(lp, ll, lq, prior_cv, gram)
  g_pred, g_prior, g_prop = _grads(lp, ll, lq, gram,
                                   prior_control_variate=prior_cv)
  np.testing.assert_allclose(-B * np.asarray(g_prior), signal, rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(-B * np.asarray(g_pred), w, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(-B * np.asarray(g_prop), w, rtol=1e-4, atol=1e-6)


def test_uniform_proposal_signal_matches_formula():
  lp, ll, lq = _inputs()
  w, _ = _np_signals(lp, ll, lq, "none")
  _, _, g_prop = _grads(lp, ll, lq, proposal_control_variate="uniform")
  np.testing.assert_allclose(-B * np.asarray(g_prop), w - 1.0 / K, rtol=1e-4,
                             atol=1e-6)


def test_metrics_match_formula():
  lp, ll, lq = _inputs()
  out = wake_sleep.rws_wake_losses(*(jnp.asarray(x, jnp.float32)
                                     for x in (lp, ll, lq)))
  log_w_tilde = lp + ll - lq
  log_w = log_w_tilde - logsumexp(log_w_tilde, axis=0)
  np.testing.assert_allclose(out.log_marginal,
                             logsumexp(log_w_tilde, axis=0) - math.log(K), rtol=1e-5)
  np.testing.assert_allclose(out.normalized_log_weights, log_w, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(out.effective_sample_size,
                             1.0 / np.sum(np.exp(2 * log_w), 0), rtol=1e-5)
