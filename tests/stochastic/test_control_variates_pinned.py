"""Pinned values of aila_jax.stochastic.control_variates against numpy formulas.

Added by mutation testing: the existing tests use a control variate of (near)
zero mean, h_mean = 0, and no score Gram matrix in the leave-one-out optimal
scale, so centring of h, the known mean E[h] and the Gram matrix were unpinned.
"""

import jax
import jax.numpy as jnp
import numpy as np

from aila_jax.stochastic import control_variates as cv


def test_optimal_coefficient_is_cov_over_var_for_a_shifted_control():
  # h with a large mean: c* = Cov(f, h) / Var(h) uses the *centred* h.
  rng = np.random.default_rng(0)
  h = (5.0 + rng.standard_normal((40, 3))).astype(np.float32)
  f = (np.array([1.5, -0.7, 0.2]) * h + rng.standard_normal((40, 3))
       ).astype(np.float32)
  f64, h64 = f.astype(np.float64), h.astype(np.float64)
  expected = [np.cov(f64[:, i], h64[:, i], bias=True)[0, 1] / np.var(h64[:, i])
              for i in range(3)]
  np.testing.assert_allclose(cv.optimal_coefficient(f, h), expected, rtol=1e-4)
  # The same along axis 1.
  np.testing.assert_allclose(cv.optimal_coefficient(f.T, h.T, axis=1), expected,
                             rtol=1e-4)


def test_apply_control_variate_subtracts_the_known_mean():
  f = jnp.array([1.0, 2.0, 3.0])
  h = jnp.array([2.0, 0.0, 1.0])
  # f - 0.5 (h - 1) by hand.
  np.testing.assert_allclose(cv.apply_control_variate(f, h, 0.5, h_mean=1.0),
                             [0.5, 2.5, 3.0])
  g_c = jax.grad(lambda c: cv.apply_control_variate(f, h, c, 1.0).sum())(0.5)
  np.testing.assert_allclose(g_c, 0.0)  # the coefficient is held constant


def _np_loo_scale(signal, control, gram):
  """alpha_b = sum_{b' != b} s^T G c / sum_{b' != b} c^T G c, by loops."""
  k, batch = signal.shape
  num, den = np.zeros(batch), np.zeros(batch)
  for b in range(batch):
    g = gram[:, :, b]
    num[b] = signal[:, b] @ g @ control[:, b]
    den[b] = control[:, b] @ g @ control[:, b]
  return np.array([(num.sum() - num[b]) / (den.sum() - den[b])
                   for b in range(batch)])


def test_leave_one_out_scale_uses_the_full_and_diagonal_gram():
  rng = np.random.default_rng(1)
  k, batch = 3, 4
  signal = rng.uniform(0.0, 1.0, (k, batch))
  control = rng.uniform(0.1, 1.0, (k, batch))
  a = rng.standard_normal((k, 5, batch))
  full = np.einsum("kvb,jvb->kjb", a, a)  # a Gram matrix per example
  diag = rng.uniform(0.2, 3.0, (k, batch))
  diag_full = np.einsum("kb,kj->kjb", diag, np.eye(k))
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  np.testing.assert_allclose(
      cv.leave_one_out_optimal_scale(f32(signal), f32(control), f32(full)),
      _np_loo_scale(signal, control, full), rtol=1e-4)
  np.testing.assert_allclose(
      cv.leave_one_out_optimal_scale(f32(signal), f32(control), f32(diag)),
      _np_loo_scale(signal, control, diag_full), rtol=1e-4)
  np.testing.assert_allclose(
      cv.leave_one_out_optimal_scale(f32(signal), f32(control)),
      _np_loo_scale(signal, control,
                    np.broadcast_to(np.eye(k)[:, :, None], (k, k, batch))),
      rtol=1e-4)
