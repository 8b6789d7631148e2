r"""Empirical variance of a stochastic gradient estimator.

WS-RAM's claim (Ba et al., NIPS 2015, arXiv 1509.06812) is that its
estimators have much lower variance than REINFORCE; this module measures it.
For an estimator :math:`\hat g(\theta; \xi)` drawn with random key :math:`\xi`,
N independent draws give, per parameter leaf :math:`\ell`,

.. math::

  \bar g_\ell = \frac{1}{N}\sum_{n=1}^N \hat g_\ell^{(n)},
  \qquad
  V_\ell = \operatorname{tr}\widehat{\mathrm{Cov}}(\hat g_\ell)
         = \frac{1}{N-1}\sum_{n=1}^N \bigl\|\hat g_\ell^{(n)}
           - \bar g_\ell\bigr\|_2^2,

and the total :math:`V = \sum_\ell V_\ell`, the expected squared distance of
one estimate from the mean (the quantity that enters SGD's convergence
bounds). The draws run under ``jax.vmap`` (or ``jax.lax.map`` in chunks of
``batch_size`` to bound memory), inside one ``jax.jit``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["GradientVariance", "gradient_variance"]

PyTree = Any


class GradientVariance(NamedTuple):
  """Statistics of N draws of a gradient estimator.

  Attributes:
    mean: pytree like the gradients, the elementwise sample mean.
    elementwise_variance: pytree like the gradients, the unbiased (N - 1)
      elementwise sample variance.
    variance: pytree of scalars, the trace of each leaf's sample covariance
      (the sum of its elementwise variances).
    total_variance: scalar, the sum of ``variance`` over leaves.
    mean_squared_norm: scalar, :math:`\\|\\bar g\\|_2^2` over all leaves; with
      ``total_variance`` it gives a signal-to-noise ratio.
  """
  mean: PyTree
  elementwise_variance: PyTree
  variance: PyTree
  total_variance: jax.Array
  mean_squared_norm: jax.Array


@functools.partial(jax.jit,
                   static_argnames=("grad_fn", "num_samples", "batch_size"))
def _gradient_variance(grad_fn, params, rng, num_samples, batch_size):
  keys = jax.random.split(rng, num_samples)  # (N, ...)
  draw = lambda key: grad_fn(params, key)
  if batch_size is None:
    grads = jax.vmap(draw)(keys)  # leaves (N, ...)
  else:
    grads = jax.lax.map(draw, keys, batch_size=batch_size)
  grads = jax.tree.map(lambda g: jnp.asarray(g, jnp.result_type(g, float)),
                       grads)
  mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
  elementwise = jax.tree.map(
      lambda g, m: jnp.sum(jnp.square(g - m), axis=0) / (num_samples - 1),
      grads, mean)
  variance = jax.tree.map(jnp.sum, elementwise)
  total = sum(jax.tree.leaves(variance), jnp.zeros(()))
  mean_sq = sum((jnp.sum(jnp.square(m)) for m in jax.tree.leaves(mean)),
                jnp.zeros(()))
  return GradientVariance(mean=mean, elementwise_variance=elementwise,
                          variance=variance, total_variance=total,
                          mean_squared_norm=mean_sq)


def gradient_variance(grad_fn: Callable[[PyTree, jax.Array], PyTree],
                      params: PyTree, rng: jax.Array, num_samples: int, *,
                      batch_size: int | None = None) -> GradientVariance:
  r"""Measures the mean and variance of a gradient estimator over N draws.

  Args:
    grad_fn: ``(params, rng) -> grads``, one draw of the estimator (e.g.
      ``lambda p, k: jax.grad(loss)(p, k)``), a pure JAX function. It is a
      static argument of a ``jax.jit``: pass the same function object to
      reuse the compilation.
    params: the parameters at which the estimator is evaluated.
    rng: a PRNG key, split into ``num_samples`` keys.
    num_samples: N >= 2, a Python int.
    batch_size: if given, draws are computed ``batch_size`` at a time with
      ``jax.lax.map`` instead of all at once with ``jax.vmap``.

  Returns:
    A :class:`GradientVariance`; ``variance`` per leaf and
    ``total_variance`` are the traces of the sample covariances,
    :math:`\frac{1}{N-1}\sum_n \|\hat g^{(n)} - \bar g\|^2`.

  Raises:
    ValueError: ``num_samples`` < 2 or not an int, or a non-positive
      ``batch_size``.

  Example:

    >>> import jax, jax.numpy as jnp
    >>> def grad_fn(params, key):  # a noisy gradient: params + N(0, 4)
    ...   return {"w": params["w"] + 2.0 * jax.random.normal(key, (3,))}
    >>> stats = gradient_variance(grad_fn, {"w": jnp.zeros(3)},
    ...                           jax.random.key(0), 4000)
    >>> bool(abs(stats.total_variance - 12.0) < 1.0)  # 3 elements x 4
    True
  """
  if isinstance(num_samples, bool) or not isinstance(num_samples, int):
    raise ValueError(f"num_samples must be a Python int >= 2, got "
                     f"{num_samples!r}.")
  if num_samples < 2:
    raise ValueError("num_samples must be >= 2 to estimate a variance, got "
                     f"{num_samples}.")
  if batch_size is not None and (isinstance(batch_size, bool) or
                                 not isinstance(batch_size, int) or
                                 batch_size <= 0):
    raise ValueError(f"batch_size must be a positive int or None, got "
                     f"{batch_size!r}.")
  return _gradient_variance(grad_fn, params, rng, num_samples, batch_size)
