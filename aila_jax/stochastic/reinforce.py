r"""REINFORCE with a learned baseline: the hybrid loss of RAM.

"Recurrent Models of Visual Attention" (Mnih, Heess, Graves and Kavukcuoglu,
NIPS 2014, arXiv 1406.6247), section 3.2: the location policy
:math:`\pi_\theta(l_t \mid s_{1:t})` is trained with the score-function
(REINFORCE, Williams 1992) estimator

.. math::

  \nabla_\theta J \approx \frac{1}{M} \sum_{i=1}^M \sum_{t=1}^T
      \nabla_\theta \log \pi_\theta(u^i_t \mid s^i_{1:t})
      \bigl(R^i_t - b_t\bigr),

with :math:`R_t` the return from step :math:`t` and :math:`b_t = b_\psi(h_t)` a
learned baseline trained by :math:`\min_\psi (R_t - b_t)^2`, while the
classifier is trained by supervised cross-entropy ("hybrid" loss, section 4).

The functions here return *surrogate losses*: scalars whose ``jax.grad`` is
minus that estimator. Their value is not the objective. The learning signal
:math:`R_t - b_t` is wrapped in ``stop_gradient``, so a baseline computed by a
network (even one that shares parameters with the policy) adds no gradient
through the policy term; it is trained only by :func:`reinforce_baseline_loss`.

Conventions: ``log_probs[b, t]`` is :math:`\log \pi_\theta(u_t \mid
s_{1:t})` of the action actually taken, evaluated at
``jax.lax.stop_gradient(action)`` (for a reparameterised Gaussian sample
:math:`l = \mu + \sigma\epsilon` the sample itself must not carry a pathwise
gradient, or the estimator is no longer REINFORCE). Losses are summed over
time and averaged over the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from aila_jax.stochastic import control_variates

__all__ = [
    "RAMLoss",
    "reinforce_baseline_loss",
    "ram_hybrid_loss",
    "reinforce_loss",
    "returns_to_go",
]


class RAMLoss(NamedTuple):
  """Parts of :func:`ram_hybrid_loss`, all scalars."""
  total: jax.Array
  classification: jax.Array
  reinforce: jax.Array
  baseline: jax.Array
  mean_return: jax.Array


def _check_log_probs(log_probs) -> tuple[int, int]:
  shape = tuple(jnp.shape(log_probs))
  if len(shape) != 2:
    raise ValueError(
        "log_probs must have shape [batch, T] (log-probability of the action "
        f"taken at each of T steps), got shape {shape}.")
  return shape


def _check_discount(discount) -> None:
  if isinstance(discount, (int, float)) and not 0.0 <= discount <= 1.0:
    raise ValueError(f"discount must lie in [0, 1], got {discount}.")


def returns_to_go(rewards: jax.Array, discount: float = 1.0) -> jax.Array:
  r"""Discounted returns :math:`R_t = \sum_{s \ge t} \gamma^{s-t} r_s`.

  Args:
    rewards: ``[batch, T]`` per-step rewards.
    discount: :math:`\gamma \in [0, 1]`.

  Returns:
    ``[batch, T]`` returns.

  Raises:
    ValueError: rewards not rank 2, or a discount outside [0, 1].
  """
  shape = tuple(jnp.shape(rewards))
  if len(shape) != 2:
    raise ValueError(f"rewards must have shape [batch, T], got {shape}.")
  _check_discount(discount)

  def step(carry, r):  # carry, r: (B,)
    g = r + discount * carry
    return g, g

  init = jnp.zeros(shape[:1], jnp.result_type(rewards, jnp.float32))
  _, g = jax.lax.scan(step, init, jnp.asarray(rewards).T, reverse=True)
  return g.T  # (B, T)


def _returns(rewards, batch: int, steps: int, discount) -> jax.Array:
  shape = tuple(jnp.shape(rewards))
  if shape == (batch,):
    # A single reward per episode, received after the last step (RAM: 1 if
    # the final classification is right); R_t = gamma^(T-1-t) r.
    powers = jnp.arange(steps - 1, -1, -1)
    return rewards[:, None] * jnp.power(discount, powers)[None, :]
  if shape == (batch, steps):
    return returns_to_go(rewards, discount)
  raise ValueError(
      f"rewards must have shape [batch] = ({batch},) (one reward per episode) "
      f"or [batch, T] = ({batch}, {steps}) (a reward per step) to match "
      f"log_probs; got shape {shape}.")


def reinforce_loss(log_probs: jax.Array, rewards: jax.Array,
                   baseline: jax.Array | None = None, *,
                   discount: float = 1.0) -> jax.Array:
  r"""REINFORCE surrogate loss with an optional baseline.

  .. math::

    \mathcal{L}(\theta) = -\frac{1}{B} \sum_{b=1}^{B} \sum_{t=1}^{T}
        \operatorname{sg}\!\bigl[R_{b,t} - b_{b,t}\bigr]
        \log \pi_\theta(u_{b,t} \mid s_{b,1:t}),

  so :math:`-\nabla_\theta \mathcal{L}` is the REINFORCE estimate of
  :math:`\nabla_\theta \mathbb{E}[\sum_t r_t]`, unbiased for any baseline that
  does not depend on the actions at steps :math:`\ge t`. Rewards of shape
  ``[batch]`` are one reward per episode, received after the last step (RAM's
  0/1 correctness), so :math:`R_t = \gamma^{T-t} r`; rewards of shape
  ``[batch, T]`` are per-step rewards turned into returns-to-go (only the
  rewards after an action are credited to it, an unbiased choice with lower
  variance than crediting the total). With :math:`\gamma < 1` this is the
  usual "discounted returns-to-go" estimator, which omits the
  :math:`\gamma^{t}` factor of the policy-gradient theorem and so is the
  exact gradient of the discounted objective only for :math:`\gamma = 1`
  (Thomas, ICML 2014); RAM uses :math:`\gamma = 1`.

  Args:
    log_probs: ``[batch, T]`` log-probabilities of the actions taken
      (differentiable in the policy's parameters; see the module docstring).
    rewards: ``[batch]`` or ``[batch, T]``.
    baseline: ``[batch, T]`` predicted returns :math:`b_t` (e.g. a learned
      :math:`b_\psi(h_t)`), or None for no baseline. Held constant.
    discount: :math:`\gamma \in [0, 1]`.

  Returns:
    Scalar surrogate loss.

  Raises:
    ValueError: shapes that do not match, or a discount outside [0, 1].
  """
  batch, steps = _check_log_probs(log_probs)
  _check_discount(discount)
  returns = _returns(rewards, batch, steps, discount)  # (B, T)
  if baseline is not None:
    if tuple(jnp.shape(baseline)) != (batch, steps):
      raise ValueError(
          f"baseline must have shape [batch, T] = ({batch}, {steps}) like "
          f"log_probs, got {tuple(jnp.shape(baseline))}.")
    advantage = returns - baseline
  else:
    advantage = returns
  advantage = jax.lax.stop_gradient(advantage)  # (B, T)
  return -jnp.mean(jnp.sum(advantage * log_probs, axis=1))


def reinforce_baseline_loss(baseline: jax.Array, rewards: jax.Array, *,
                  discount: float = 1.0) -> jax.Array:
  r"""Mean squared error of the baseline against the (constant) returns.

  .. math::

    \mathcal{L}_b(\psi) = \frac{1}{BT} \sum_{b, t}
        \bigl(b_\psi(h_{b,t}) - \operatorname{sg}[R_{b,t}]\bigr)^2

  Args:
    baseline: ``[batch, T]`` predictions.
    rewards: ``[batch]`` or ``[batch, T]``, as in :func:`reinforce_loss`.
    discount: :math:`\gamma \in [0, 1]`.

  Returns:
    Scalar loss.

  Raises:
    ValueError: shapes that do not match.
  """
  shape = tuple(jnp.shape(baseline))
  if len(shape) != 2:
    raise ValueError(f"baseline must have shape [batch, T], got {shape}.")
  _check_discount(discount)
  returns = _returns(rewards, shape[0], shape[1], discount)
  return control_variates.baseline_loss(baseline, returns)


def ram_hybrid_loss(log_likelihood: jax.Array, log_probs: jax.Array,
                    rewards: jax.Array, baseline: jax.Array, *,
                    reinforce_weight: float = 1.0,
                    baseline_weight: float = 1.0,
                    discount: float = 1.0) -> RAMLoss:
  r"""RAM's hybrid loss: cross-entropy + REINFORCE + baseline regression.

  .. math::

    \mathcal{L} = -\frac{1}{B}\sum_b \log p(y_b \mid a_b, x_b)
      + \lambda_r \, \mathcal{L}_{\text{REINFORCE}}
      + \lambda_b \, \mathcal{L}_b

  (Mnih et al. 2014, section 4: the classifier and core network get the
  supervised gradient, the location network the REINFORCE gradient with
  reward 1 for a correct final classification, the baseline the MSE).

  Args:
    log_likelihood: ``[batch]`` :math:`\log p(y \mid a, x)` of the true label
      after the last glimpse.
    log_probs: ``[batch, T]`` log-probabilities of the sampled locations.
    rewards: ``[batch]`` or ``[batch, T]`` (typically the 0/1 accuracy).
    baseline: ``[batch, T]`` learned baseline.
    reinforce_weight: :math:`\lambda_r`.
    baseline_weight: :math:`\lambda_b`.
    discount: :math:`\gamma \in [0, 1]`.

  Returns:
    A :class:`RAMLoss`; differentiate ``.total``.

  Raises:
    ValueError: shapes that do not match.
  """
  batch, steps = _check_log_probs(log_probs)
  if tuple(jnp.shape(log_likelihood)) != (batch,):
    raise ValueError(
        f"log_likelihood must have shape [batch] = ({batch},), got "
        f"{tuple(jnp.shape(log_likelihood))}.")
  classification = -jnp.mean(log_likelihood)
  reinforce = reinforce_loss(log_probs, rewards, baseline, discount=discount)
  base = reinforce_baseline_loss(baseline, rewards, discount=discount)
  returns = _returns(rewards, batch, steps, discount)
  total = classification + reinforce_weight * reinforce + baseline_weight * base
  return RAMLoss(total=total, classification=classification,
                 reinforce=reinforce, baseline=base,
                 mean_return=jnp.mean(returns[:, 0]))
