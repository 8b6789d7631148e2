r"""Control variates for score-function (REINFORCE) gradient estimators.

A score-function estimator of :math:`\nabla_\theta \mathbb{E}_{a \sim
\pi_\theta}[f(a)]` is :math:`f(a) \nabla_\theta \log \pi_\theta(a)`. Because
:math:`\mathbb{E}_{\pi_\theta}[\nabla_\theta \log \pi_\theta(a)] = 0`, any
:math:`b` that does not depend on the sampled :math:`a` may be subtracted,

.. math::

  \hat g = \bigl(f(a) - b\bigr) \nabla_\theta \log \pi_\theta(a),

without changing the expectation (Williams 1992). Choosing :math:`b` close to
:math:`\mathbb{E}[f \mid x]` lowers the variance. This module holds the
generic pieces:

* a learned, input-dependent baseline :math:`b_\psi(x)` (RAM's baseline
  :math:`b_t = b_\psi(h_t)`, Mnih et al. 2014; NVIL, Mnih and Gregor 2014) is
  trained by regression onto the signal, :func:`baseline_loss`;
* with K samples per input, the mean of the *other* samples is a baseline
  with no parameters that never depends on the sample it is subtracted from,
  :func:`leave_one_out_baseline` (as in VIMCO, Mnih and Rezende 2016);
* a general control variate :math:`h` with known mean is used as
  :math:`f - c\,(h - \mathbb{E}h)`, with the variance-minimising coefficient
  :math:`c^* = \mathrm{Cov}(f, h) / \mathrm{Var}(h)`,
  :func:`optimal_coefficient` and :func:`apply_control_variate`.

The control variates specific to reweighted wake-sleep (WS-RAM) are options of
:func:`aila_jax.stochastic.wake_sleep.rws_wake_losses`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "apply_control_variate",
    "baseline_loss",
    "leave_one_out_baseline",
    "optimal_coefficient",
]


def baseline_loss(baseline: jax.Array, target: jax.Array) -> jax.Array:
  r"""Regression loss of a learned baseline, the target held constant.

  .. math::

    \mathcal{L}_b(\psi) = \operatorname{mean}
        \bigl(b_\psi(x) - \operatorname{sg}[f]\bigr)^2

  Minimising it makes :math:`b_\psi(x) \approx \mathbb{E}[f \mid x]`, the
  baseline that (to first order) minimises the estimator's variance. Only
  the baseline's parameters receive a gradient.

  Args:
    baseline: predicted baseline, any shape.
    target: the learning signal it should predict (e.g. the reward), of a
      shape that broadcasts with ``baseline``.

  Returns:
    Scalar mean squared error.

  Raises:
    ValueError: shapes that do not broadcast.
  """
  try:
    jnp.broadcast_shapes(jnp.shape(baseline), jnp.shape(target))
  except ValueError as e:
    raise ValueError(
        f"baseline of shape {jnp.shape(baseline)} and target of shape "
        f"{jnp.shape(target)} do not broadcast.") from e
  return jnp.mean(jnp.square(baseline - jax.lax.stop_gradient(target)))


def leave_one_out_baseline(signals: jax.Array, axis: int = 0) -> jax.Array:
  r"""Mean of the other samples' signals, a parameter-free baseline.

  .. math::

    b_k = \frac{1}{K - 1} \sum_{j \ne k} f_j

  :math:`b_k` is independent of sample :math:`k` (the samples are
  independent), so :math:`(f_k - b_k) \nabla \log \pi(a_k)` stays unbiased.
  The result is wrapped in ``stop_gradient``.

  Args:
    signals: array with K >= 2 samples along ``axis``.
    axis: the sample axis.

  Returns:
    Array of the shape of ``signals``.

  Raises:
    ValueError: fewer than 2 samples along ``axis``.
  """
  signals = jnp.asarray(signals)
  num = signals.shape[axis] if signals.ndim else 0
  if num < 2:
    raise ValueError(
        "leave_one_out_baseline needs K >= 2 samples along axis "
        f"{axis}, got shape {signals.shape}.")
  total = jnp.sum(signals, axis=axis, keepdims=True)
  return jax.lax.stop_gradient((total - signals) / (num - 1))


def optimal_coefficient(f: jax.Array, h: jax.Array, axis: int = 0,
                        eps: float = 1e-12) -> jax.Array:
  r"""Variance-minimising coefficient of a control variate, from samples.

  For the estimator :math:`f - c\,(h - \mathbb{E}h)`,

  .. math::

    c^* = \frac{\mathrm{Cov}(f, h)}{\mathrm{Var}(h)},
    \qquad
    \mathrm{Var}\bigl(f - c^*(h - \mathbb{E}h)\bigr)
      = (1 - \rho_{fh}^2)\, \mathrm{Var}(f),

  estimated elementwise over the sample ``axis``. Estimating :math:`c^*` from
  the same samples it is applied to introduces an :math:`O(1/N)` bias; use
  separate samples (or a running estimate) where that matters.

  Args:
    f: samples of the estimator, N along ``axis``.
    h: samples of the control variate, same shape as ``f``.
    axis: the sample axis.
    eps: added to the variance of ``h``.

  Returns:
    ``c*`` with ``axis`` reduced.

  Raises:
    ValueError: shapes that differ.
  """
  if jnp.shape(f) != jnp.shape(h):
    raise ValueError(f"f and h must have the same shape, got {jnp.shape(f)} "
                     f"and {jnp.shape(h)}.")
  fc = f - jnp.mean(f, axis=axis, keepdims=True)
  hc = h - jnp.mean(h, axis=axis, keepdims=True)
  return jnp.mean(fc * hc, axis=axis) / (jnp.mean(hc * hc, axis=axis) + eps)


def apply_control_variate(f: jax.Array, h: jax.Array, coefficient: jax.Array,
                          h_mean: jax.Array | float = 0.0) -> jax.Array:
  r"""Returns :math:`f - c\,(h - \mathbb{E}h)`, unbiased if ``h_mean`` is exact.

  Args:
    f: estimator samples.
    h: control-variate samples, broadcasting with ``f``.
    coefficient: :math:`c`, broadcasting with ``f`` (held constant: wrapped
      in ``stop_gradient``).
    h_mean: the known mean :math:`\mathbb{E}h` (0 for a score function).

  Returns:
    The corrected samples.
  """
  c = jax.lax.stop_gradient(coefficient)
  return f - c * (h - h_mean)
