r"""Redundancy of layer attention: adjacent-layer KL divergence and Enhanced Beta Quantile Mapping (EBQM).

Pure functions for ELA (Li & Huang et al., "Enhancing Layer Attention
Efficiency through Pruning Redundant Retrievals", arXiv 2503.06473). Only the
paper's abstract is public: it measures the redundancy of layer attention by
the KL divergence between *adjacent* layers' attention distributions over
depth, and an "Enhanced Beta Quantile Mapping" (EBQM) marks the redundant
retrievals, which are then skipped. Everything below beyond that sentence is
our reconstruction (``../shared/specs/ela.md``); each choice is an argument
with the default named there.

**Adjacent distributions.** Within a stage, block :math:`t` attends over
:math:`t` slots (MRLA-base: slots :math:`1..t`, its own key included; AILA:
slots :math:`0..t-1`), block :math:`t-1` over the first :math:`t-1` of them:
:math:`P_{t-1} \in \Delta^{t-2}`, :math:`P_t \in \Delta^{t-1}`. Their supports
differ by the new slot, so a KL needs a convention (:func:`adjacent_kl`):

* ``support='pad'`` (default): pad the shorter one with a zero and put it
  first,

  .. math::

     D_t = \mathrm{KL}(P_{t-1} \oplus 0 \,\|\, P_t)
         = \mathrm{KL}(P_{t-1} \,\|\, \tilde P_t) - \log\big(1 - P_t(\text{new})\big),
     \qquad \tilde P_t = \frac{P_t(1..t-1)}{1 - P_t(\text{new})} .

  It is finite whenever :math:`P_t > 0` (a softmax), and small only when the
  old weights agree *and* little mass goes to the new slot, i.e. when block
  :math:`t`'s retrieval is close to block :math:`t-1`'s.
* ``support='renormalize'``: drop :math:`P_t`'s new slot and renormalise,
  :math:`\mathrm{KL}(P_{t-1} \| \tilde P_t)` (or, ``reverse=True``,
  :math:`\mathrm{KL}(\tilde P_t \| P_{t-1})`).
* ``support='pad', reverse=True`` is :math:`\mathrm{KL}(P_t \| P_{t-1} \oplus 0)`,
  infinite whenever :math:`P_t(\text{new}) > 0`: refused unless an explicit
  ``eps`` smooths the second argument, :math:`q \mapsto (q + \epsilon) / (1 + n\epsilon)`.

**EBQM** (:func:`ebqm`), per evaluation, over the :math:`L` layers' (smoothed)
KLs :math:`D_1, \dots, D_L`:

.. math::

   s_l = \mathrm{clip}\big(g(D_l), \epsilon, 1 - \epsilon\big), \quad
   g(D) = \frac{D}{1 + D}\ (\texttt{ratio}) \;|\; 1 - e^{-D}\ (\texttt{exp}) \;|\;
          \frac{D - \min D}{\max D - \min D}\ (\texttt{minmax}),

   m = \frac1L \sum_l s_l, \quad v = \frac1L \sum_l (s_l - m)^2, \quad
   c = \frac{m(1-m)}{v} - 1, \quad \alpha = m c, \quad \beta = (1 - m) c,

   u_l = I_{s_l}(\alpha, \beta) \quad (\text{the regularised incomplete beta function, the Beta CDF}),
   \qquad \text{redundant}_l = u_l < \tau .

The method-of-moments Beta exists only when :math:`0 < v < m(1-m)`; otherwise
the fit is ``valid=False`` and nothing is redundant that round. Layers whose KL
is unusually small *relative to the other layers of the same network* get a
small quantile: the mapping is scale-free, as the abstract's "quantile mapping"
suggests.

**EMA** (:func:`ema`): :math:`\bar D \leftarrow \gamma \bar D + (1 - \gamma) D`
(the first value starts the average).

References:
  Li, Huang et al., "Enhancing Layer Attention Efficiency through Pruning Redundant Retrievals",
  arXiv 2503.06473 (abstract only). Method of moments for the Beta: e.g. Johnson, Kotz & Balakrishnan,
  "Continuous Univariate Distributions", vol. 2, ch. 25.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["SUPPORTS", "SQUASHES", "adjacent_kl", "squash_kl", "EBQMResult", "ebqm", "ema"]

SUPPORTS = ("pad", "renormalize")
SQUASHES = ("ratio", "minmax", "exp")


def _kl(p: jax.Array, q: jax.Array) -> jax.Array:
  r""":math:`\sum_i p_i \log(p_i / q_i)` over the last axis, with :math:`0 \log(0/q) = 0` (scipy's ``rel_entr``)."""
  return jnp.sum(jax.scipy.special.rel_entr(p, q), axis=-1)


def _smooth(q: jax.Array, eps: float) -> jax.Array:
  return (q + eps) / (1.0 + q.shape[-1] * eps)


def adjacent_kl(p_prev: jax.Array, p_next: jax.Array, *, support: str = "pad", reverse: bool = False,
                eps: float | None = None) -> jax.Array:
  r"""KL divergence between adjacent layers' distributions over depth, whose supports differ by one slot.

  ``support='pad'`` (default):

  .. math:: \mathrm{KL}(P_{t-1} \oplus 0 \,\|\, P_t)
     = \sum_{i < t} P_{t-1}(i) \log \frac{P_{t-1}(i)}{P_t(i)} ,

  ``support='renormalize'``: :math:`\mathrm{KL}(P_{t-1} \| \tilde P_t)` with
  :math:`\tilde P_t` = :math:`P_t` without its last (new) slot, renormalised;
  ``reverse=True`` swaps the arguments. ``support='pad', reverse=True``
  (:math:`\mathrm{KL}(P_t \| P_{t-1} \oplus 0)`) is infinite unless ``eps``
  is given; then the second argument is smoothed,
  :math:`q \mapsto (q + \epsilon)/(1 + n \epsilon)` (``eps`` smooths the second
  argument in the other modes too).

  Args:
    p_prev: :math:`P_{t-1}`, ``[..., t-1]`` (non-negative, sums to one).
    p_next: :math:`P_t`, ``[..., t]``; its last slot is the one block :math:`t` added.
    support: ``'pad'`` or ``'renormalize'``.
    reverse: the other direction (see above).
    eps: optional smoothing of the second argument (required for ``'pad'`` with ``reverse``).

  Returns:
    ``[...]``: the KL per leading index (float32 or wider).

  >>> float(adjacent_kl(jnp.array([1.0]), jnp.array([0.5, 0.5])))  # log 2
  0.6931...
  >>> float(adjacent_kl(jnp.array([1.0]), jnp.array([0.5, 0.5]), support="renormalize"))
  0.0
  """
  if support not in SUPPORTS:
    raise ValueError(f"adjacent_kl: support must be one of {SUPPORTS}, got {support!r}")
  p_prev, p_next = jnp.asarray(p_prev), jnp.asarray(p_next)
  if p_prev.ndim < 1 or p_next.shape[:-1] != p_prev.shape[:-1] or p_next.shape[-1] != p_prev.shape[-1] + 1:
    raise ValueError(f"adjacent_kl: expected p_prev [..., t-1] and p_next [..., t] with the same leading axes; "
                     f"got p_prev {p_prev.shape}, p_next {p_next.shape}")
  if eps is not None and not (isinstance(eps, numbers.Real) and eps > 0):
    raise ValueError(f"adjacent_kl: eps must be a number > 0 or None, got {eps!r}")
  dtype = jnp.promote_types(jnp.result_type(p_prev, p_next), jnp.float32)
  p_prev, p_next = p_prev.astype(dtype), p_next.astype(dtype)
  if support == "pad":
    padded = jnp.concatenate([p_prev, jnp.zeros(p_prev.shape[:-1] + (1,), dtype)], axis=-1)  # (..., t)
    p, q = (p_next, padded) if reverse else (padded, p_next)
    if reverse and eps is None:
      raise ValueError("adjacent_kl: support='pad' with reverse=True is KL(P_t || P_{t-1} + 0), infinite "
                       "whenever P_t puts mass on the new slot; pass an explicit eps > 0 to smooth P_{t-1} + 0, "
                       "or use support='renormalize'")
  else:
    old = p_next[..., :-1]
    renorm = old / jnp.sum(old, axis=-1, keepdims=True)  # (..., t-1)
    p, q = (renorm, p_prev) if reverse else (p_prev, renorm)
  if eps is not None:
    q = _smooth(q, float(eps))
  return _kl(p, q)


def squash_kl(kl: jax.Array, squash: str = "ratio") -> jax.Array:
  r"""Maps non-negative KLs into :math:`[0, 1)`: ``ratio`` :math:`D/(1+D)`, ``exp`` :math:`1 - e^{-D}`,
  ``minmax`` :math:`(D - \min D)/(\max D - \min D)` (0 where all are equal).

  >>> [round(float(x), 4) for x in squash_kl(jnp.array([0.0, 1.0, 3.0]))]
  [0.0, 0.5, 0.75]
  """
  if squash not in SQUASHES:
    raise ValueError(f"ebqm: squash must be one of {SQUASHES}, got {squash!r}")
  kl = jnp.asarray(kl, jnp.float32)
  if squash == "ratio":
    return kl / (1.0 + kl)
  if squash == "exp":
    return -jnp.expm1(-kl)
  lo, hi = jnp.min(kl), jnp.max(kl)
  span = hi - lo
  return jnp.where(span > 0, (kl - lo) / jnp.where(span > 0, span, 1.0), 0.0)


class EBQMResult(NamedTuple):
  """What :func:`ebqm` returns (each ``[L]`` unless said otherwise)."""
  quantiles: jax.Array   # u_l = I_{s_l}(alpha, beta); NaN when the fit is invalid
  redundant: jax.Array   # bool: u_l < tau (all False when the fit is invalid)
  alpha: jax.Array       # scalar; NaN when invalid
  beta: jax.Array        # scalar; NaN when invalid
  valid: jax.Array       # bool scalar: 0 < v < m (1 - m)


def ebqm(kl: jax.Array, *, tau: float = 0.2, squash: str = "ratio", eps: float = 1e-6) -> EBQMResult:
  r"""Enhanced Beta Quantile Mapping: which layers' KLs are unusually small among all layers'.

  .. math::

     s = \mathrm{clip}(g(D), \epsilon, 1 - \epsilon), \quad
     m = \overline{s}, \quad v = \overline{(s - m)^2}, \quad
     \alpha = m c, \ \beta = (1 - m) c, \ c = \frac{m(1-m)}{v} - 1, \quad
     u = I_s(\alpha, \beta), \quad \text{redundant} = u < \tau

  with :math:`g` = :func:`squash_kl` and the population variance :math:`v`.
  When :math:`v = 0` or :math:`v \ge m(1-m)` no Beta has these moments:
  ``valid`` is False, nothing is redundant, and ``quantiles``, ``alpha``,
  ``beta`` are NaN. Jit-compatible (``tau``, ``squash``, ``eps`` static).

  Args:
    kl: ``[L]`` non-negative per-layer KLs (e.g. EMA-smoothed :func:`adjacent_kl` means).
    tau: quantile threshold in (0, 1).
    squash: ``'ratio'`` (default), ``'minmax'`` or ``'exp'``.
    eps: clip margin in (0, 0.5).

  >>> r = ebqm(jnp.array([0.01, 0.5, 0.6, 0.7, 0.8]))
  >>> r.redundant.tolist(), bool(r.valid)
  ([True, False, False, False, False], True)
  """
  if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0.0 < float(tau) < 1.0:
    raise ValueError(f"ebqm: tau must be a number in (0, 1) (config.ela.tau), got {tau!r}")
  if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 < float(eps) < 0.5:
    raise ValueError(f"ebqm: eps must be a number in (0, 0.5) (config.ela.eps), got {eps!r}")
  kl = jnp.asarray(kl, jnp.float32)
  if kl.ndim != 1 or kl.shape[0] < 1:
    raise ValueError(f"ebqm: expected per-layer KLs [L] with L >= 1, got shape {kl.shape}")
  s = jnp.clip(squash_kl(kl, squash), eps, 1.0 - eps)  # (L,)
  d = s - s[0]  # shifted moments: equal values give exactly v = 0 (float32 rounding in a plain mean does not)
  md = jnp.mean(d)
  m = s[0] + md
  v = jnp.mean(jnp.square(d - md))  # population variance
  valid = (v > 0) & (v < m * (1.0 - m))
  c = m * (1.0 - m) / jnp.where(valid, v, 1.0) - 1.0
  alpha = jnp.where(valid, m * c, jnp.nan)
  beta = jnp.where(valid, (1.0 - m) * c, jnp.nan)
  safe_a, safe_b = jnp.where(valid, alpha, 1.0), jnp.where(valid, beta, 1.0)
  quantiles = jnp.where(valid, jax.scipy.special.betainc(safe_a, safe_b, s), jnp.nan)
  redundant = valid & (quantiles < tau)
  return EBQMResult(quantiles=quantiles, redundant=redundant, alpha=alpha, beta=beta, valid=valid)


def ema(average, value, *, decay: float):
  r"""Exponential moving average: :math:`\bar x \leftarrow \gamma \bar x + (1 - \gamma) x`.

  ``average=None`` (no value yet) returns ``value``. Works on numbers, numpy and jax arrays.

  >>> ema(None, 2.0, decay=0.9), round(ema(2.0, 4.0, decay=0.75), 6)
  (2.0, 2.5)
  """
  if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 <= float(decay) < 1.0:
    raise ValueError(f"ema: decay must be a number in [0, 1) (config.ela.ema_decay), got {decay!r}")
  if average is None:
    return value
  return decay * average + (1.0 - decay) * value
