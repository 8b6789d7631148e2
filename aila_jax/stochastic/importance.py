r"""Importance weights over K samples, in log space.

For a latent-variable model
:math:`p(y, a \mid x) = p(a \mid x)\, p(y \mid a, x)` and a proposal
:math:`q(a \mid y, x)`, K samples :math:`a_k \sim q` give the importance
weights

.. math::

  \tilde w_k = \frac{p(a_k \mid x)\, p(y \mid a_k, x)}{q(a_k \mid y, x)},
  \qquad
  w_k = \frac{\tilde w_k}{\sum_{j=1}^K \tilde w_j},
  \qquad
  \hat p(y \mid x) = \frac{1}{K} \sum_{k=1}^K \tilde w_k,

as used by reweighted wake-sleep (Bornschein and Bengio, ICLR 2015,
arXiv 1406.2751) and WS-RAM (Ba, Grosse, Salakhutdinov and Frey, NIPS 2015,
arXiv 1509.06812, section 3). Everything is computed in log space with
``logsumexp``, so weights of :math:`e^{-1000}` neither underflow nor give NaN.

Layout: **samples first**. Every array is ``[K, ...]`` (typically ``[K, B]``):
axis 0 indexes the K samples, the remaining axes are batch axes. This is the
layout ``jax.vmap`` over sample keys produces. Per-step log-probabilities of a
sequence of glimpse locations must be summed over time before they are passed
here: :math:`\log p(a \mid x) = \sum_t \log p(a_t \mid a_{<t}, x)`.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "check_sample_arrays",
    "effective_sample_size",
    "importance_log_weights",
    "log_marginal_estimate",
    "normalized_log_weights",
]


def check_sample_arrays(names: Sequence[str], arrays: Sequence[jax.Array],
                        *, min_samples: int = 1) -> tuple[int, ...]:
  """Checks that ``[K, ...]`` arrays agree in shape and have K >= min_samples.

  Args:
    names: argument names, used in the error messages.
    arrays: the arrays, each ``[K, ...]``.
    min_samples: the smallest admissible K.

  Returns:
    The common shape.

  Raises:
    ValueError: an array of rank 0, shapes that differ, K < ``min_samples``,
      or a non-floating dtype.
  """
  shapes = [tuple(jnp.shape(a)) for a in arrays]
  for name, shape, array in zip(names, shapes, arrays):
    if len(shape) == 0:
      raise ValueError(
          f"{name} must have shape [K, ...] (samples first, e.g. [K, batch]), "
          "got a scalar.")
    dtype = jnp.result_type(array)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(f"{name} must be a floating array of log-probabilities,"
                       f" got dtype {dtype}.")
  if len(set(shapes)) > 1:
    listing = ", ".join(f"{n}={s}" for n, s in zip(names, shapes))
    raise ValueError(
        "log-probability arrays must all have the same shape [K, ...] "
        f"(samples first); got {listing}.")
  num_samples = shapes[0][0]
  if num_samples < min_samples:
    raise ValueError(
        f"the number of samples K (axis 0 of {names[0]}) must be >= "
        f"{min_samples}, got K={num_samples} (shape {shapes[0]}).")
  return shapes[0]


def importance_log_weights(log_prior: jax.Array, log_likelihood: jax.Array,
                           log_proposal: jax.Array) -> jax.Array:
  r"""Log unnormalised importance weights :math:`\log \tilde w_k`.

  .. math::

    \log \tilde w_k = \log p(a_k \mid x) + \log p(y \mid a_k, x)
                      - \log q(a_k \mid y, x)

  Args:
    log_prior: ``[K, ...]`` :math:`\log p(a_k \mid x)`.
    log_likelihood: ``[K, ...]`` :math:`\log p(y \mid a_k, x)`.
    log_proposal: ``[K, ...]`` :math:`\log q(a_k \mid y, x)`.

  Returns:
    ``[K, ...]`` log weights (gradients flow through all three inputs).

  Raises:
    ValueError: shapes that differ, or K < 1.
  """
  check_sample_arrays(("log_prior", "log_likelihood", "log_proposal"),
                      (log_prior, log_likelihood, log_proposal))
  return log_prior + log_likelihood - log_proposal


def normalized_log_weights(log_weights: jax.Array) -> jax.Array:
  r"""Self-normalised log weights :math:`\log w_k`, over axis 0.

  .. math::

    \log w_k = \log \tilde w_k - \operatorname{logsumexp}_j \log \tilde w_j,
    \qquad \sum_k w_k = 1.

  Args:
    log_weights: ``[K, ...]`` log unnormalised weights.

  Returns:
    ``[K, ...]`` normalised log weights.

  Raises:
    ValueError: K < 1.
  """
  check_sample_arrays(("log_weights",), (log_weights,))
  return jax.nn.log_softmax(log_weights, axis=0)


def log_marginal_estimate(log_weights: jax.Array) -> jax.Array:
  r"""Importance-sampling estimate of :math:`\log p(y \mid x)`, over axis 0.

  .. math::

    \log \hat p(y \mid x) = \log \frac{1}{K} \sum_{k=1}^K \tilde w_k
      = \operatorname{logsumexp}_k \log \tilde w_k - \log K.

  :math:`\hat p` is unbiased for :math:`p(y \mid x)`; its log is a stochastic
  lower bound whose expectation increases with K to :math:`\log p(y \mid x)`
  (Burda et al., arXiv 1509.00519, theorem 1).

  Args:
    log_weights: ``[K, ...]`` log unnormalised weights.

  Returns:
    ``[...]`` estimates (axis 0 reduced).

  Raises:
    ValueError: K < 1.
  """
  (num_samples, *_) = check_sample_arrays(("log_weights",), (log_weights,))
  return jax.nn.logsumexp(log_weights, axis=0) - math.log(num_samples)


def effective_sample_size(log_weights: jax.Array) -> jax.Array:
  r"""Kish's effective sample size of the weights, over axis 0.

  .. math::

    \mathrm{ESS} = \frac{\left(\sum_k \tilde w_k\right)^2}{\sum_k \tilde w_k^2}
                 = \frac{1}{\sum_k w_k^2} \in [1, K],

  K for equal weights and 1 when one weight dominates; computed as
  :math:`\exp(-\operatorname{logsumexp}_k 2 \log w_k)`.

  Args:
    log_weights: ``[K, ...]`` log weights, normalised or not.

  Returns:
    ``[...]`` effective sample sizes.

  Raises:
    ValueError: K < 1.
  """
  log_w = normalized_log_weights(log_weights)
  return jnp.exp(-jax.nn.logsumexp(2.0 * log_w, axis=0))
