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
  :func:`optimal_coefficient` and :func:`apply_control_variate`;
* for a score-function estimator :math:`\hat g = \sum_k s_k \nabla \log
  p(a_k)` and a zero-mean control variate :math:`\hat h = \sum_k c_k \nabla
  \log p(a_k)` built on the same scores, the optimal scale
  :math:`\alpha^* = \mathrm{Cov}(\hat g, \hat h) / \mathrm{Var}(\hat h)`
  estimated over a batch, leaving each example out of its own coefficient,
  :func:`leave_one_out_optimal_scale` (Paisley, Blei and Jordan 2012).

The control variates specific to reweighted wake-sleep (WS-RAM) are options of
:func:`aila_jax.stochastic.wake_sleep.rws_wake_losses`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "apply_control_variate",
    "baseline_loss",
    "leave_one_out_baseline",
    "leave_one_out_optimal_scale",
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


def leave_one_out_optimal_scale(signal: jax.Array, control: jax.Array,
                                score_gram: jax.Array | None = None,
                                eps: float = 1e-12) -> jax.Array:
  r"""Optimal coefficient of a score-function control variate, per batch.

  Per example :math:`b` (the batch axes), K samples :math:`a_{b,k}` with scores
  :math:`g_{b,k} = \nabla \log p(a_{b,k})` give the estimator and the control
  variate

  .. math::

    \hat g_b = \sum_k s_{b,k}\, g_{b,k},
    \qquad
    \hat h_b = \sum_k c_{b,k}\, g_{b,k},
    \qquad \mathbb{E}[\hat h_b] = 0,

  and the corrected estimator
  :math:`\frac1B \sum_b (\hat g_b - \alpha \hat h_b) = \frac1B \sum_b
  \sum_k (s_{b,k} - \alpha c_{b,k})\, g_{b,k}`. Its variance (the trace of
  its covariance) is smallest at (Paisley, Blei and Jordan, "Variational
  Bayesian Inference with Stochastic Search", ICML 2012, section 3.1)

  .. math::

    \alpha^* = \frac{\sum_b \mathrm{Cov}(\hat g_b, \hat h_b)}
                     {\sum_b \mathrm{Var}(\hat h_b)}
              = \frac{\sum_b \mathbb{E}[\hat g_b^\top \hat h_b]}
                     {\sum_b \mathbb{E}[\hat h_b^\top \hat h_b]},
    \qquad
    \hat g_b^\top \hat h_b = s_b^\top G_b\, c_b,
    \quad
    \hat h_b^\top \hat h_b = c_b^\top G_b\, c_b,

  with :math:`G_b[k, j] = g_{b,k}^\top g_{b,j}` the Gram matrix of the scores
  (the known zero mean of :math:`\hat h_b` replaces its sample mean).
  Estimated from the batch itself, :math:`\alpha` would depend on the sample
  it scales (a bias of order :math:`1/B`); here example :math:`b` gets the
  estimate from the *other* examples,

  .. math::

    \alpha_b = \frac{\sum_{b' \ne b} s_{b'}^\top G_{b'} c_{b'}}
                     {\sum_{b' \ne b} c_{b'}^\top G_{b'} c_{b'}},

  which is independent of example :math:`b`'s samples when the examples are
  independent, so :math:`\mathbb{E}[\alpha_b \hat h_b] =
  \mathbb{E}[\alpha_b]\, \mathbb{E}[\hat h_b] = 0` and the expectation of
  the gradient is exactly unchanged. The result is wrapped in
  ``stop_gradient`` (a coefficient, not a path for gradients).

  The ratio needs a batch: with few examples it is heavy-tailed (a sum of
  small :math:`c^\top G c` in the denominator). In the discrete case of
  ``tests/stochastic/test_optimal_control_variate.py`` (population
  :math:`\alpha^* \approx 0.4`), computed exactly by enumeration, the
  estimator's variance with B = 2 or 3 identical examples is 12x and 9x that
  of :math:`\alpha = 1`; with B = 64 it is below half of the variance of
  both :math:`\alpha = 1` and no control variate.

  Args:
    signal: ``[K, ...]`` :math:`s_{b,k}` (samples first, then batch axes).
    control: ``[K, ...]`` :math:`c_{b,k}`, such that :math:`\sum_k c_{b,k}
      g_{b,k}` has zero mean.
    score_gram: ``[K, K, ...]`` :math:`G_b`, or ``[K, ...]`` for a diagonal
      Gram matrix (scores of different samples orthogonal, e.g. the scores
      with respect to each sample's own distribution parameters), or None for
      the identity (every score of unit norm, orthogonal).
    eps: added to the denominator.

  Returns:
    ``[...]`` :math:`\alpha_b`, one per example (batch axes of ``signal``).

  Raises:
    ValueError: shapes that differ, or fewer than 2 examples (the leave-one-out
      estimate needs another example).
  """
  signal = jnp.asarray(signal)
  control = jnp.asarray(control)
  if signal.shape != control.shape or signal.ndim < 2:
    raise ValueError(
        "signal and control must have the same shape [K, batch...], got "
        f"{signal.shape} and {control.shape}.")
  batch_shape = signal.shape[1:]
  if math.prod(batch_shape) < 2:
    raise ValueError(
        "the leave-one-out optimal scale needs >= 2 examples in the batch "
        f"axes, got shape {signal.shape}.")
  if score_gram is None:
    num = jnp.sum(signal * control, axis=0)  # (...)
    den = jnp.sum(control * control, axis=0)
  elif jnp.shape(score_gram) == signal.shape:
    num = jnp.sum(signal * score_gram * control, axis=0)
    den = jnp.sum(control * score_gram * control, axis=0)
  elif jnp.shape(score_gram) == signal.shape[:1] + signal.shape:
    num = jnp.einsum("k...,kj...,j...->...", signal, score_gram, control)
    den = jnp.einsum("k...,kj...,j...->...", control, score_gram, control)
  else:
    raise ValueError(
        f"score_gram must have shape [K, K, ...] = {signal.shape[:1] + signal.shape} "
        f"or [K, ...] = {signal.shape}, got {jnp.shape(score_gram)}.")
  num_loo = jnp.sum(num) - num  # (...)
  den_loo = jnp.sum(den) - den
  return jax.lax.stop_gradient(num_loo / (den_loo + eps))
