r"""Reweighted wake-sleep (RWS) for stochastic attention: the WS-RAM updates.

"Learning Wake-Sleep Recurrent Attention Models" (Ba, Grosse, Salakhutdinov and
Frey, NIPS 2015, arXiv 1509.06812) treats the glimpse locations :math:`a` as
latent variables of

.. math::

  p(y, a \mid x) = p(a \mid x)\, p(y \mid a, x),
  \qquad
  \log p(y \mid x) = \log \sum_a p(a \mid x)\, p(y \mid a, x),

with a prior (location) network :math:`p_\theta(a \mid x)`, a predictor
(classifier) :math:`p_\theta(y \mid a, x)` and an inference network
:math:`q_\eta(a \mid y, x)` that also sees the label. K samples
:math:`a_k \sim q_\eta(a \mid y, x)` give importance weights
:math:`\tilde w_k = p(a_k \mid x) p(y \mid a_k, x) / q(a_k \mid y, x)` and their
normalised version :math:`w_k = \tilde w_k / \sum_j \tilde w_j`
(:mod:`aila_jax.stochastic.importance`). The updates follow reweighted
wake-sleep (Bornschein and Bengio, ICLR 2015, arXiv 1406.2751):

* **wake update of the generative model** (predictor and prior), the
  gradient of the importance-sampled log-likelihood with the samples held
  fixed:

  .. math::

    \nabla_\theta \log p(y \mid x) \approx \sum_{k=1}^K w_k \bigl[
        \nabla_\theta \log p_\theta(y \mid a_k, x)
        + \nabla_\theta \log p_\theta(a_k \mid x) \bigr]
    = \nabla_\theta \log \frac{1}{K}\sum_k \tilde w_k \Big|_{a_k\ \text{fixed}};

* **wake update of the inference network**, a step down
  :math:`\mathrm{KL}\bigl(p(a \mid y, x) \,\|\, q_\eta(a \mid y, x)\bigr)`
  with the posterior expectation estimated by the same weighted samples:

  .. math::

    -\nabla_\eta \mathrm{KL} = \mathbb{E}_{p(a \mid y, x)}
        [\nabla_\eta \log q_\eta(a \mid y, x)]
    \approx \sum_{k=1}^K w_k \nabla_\eta \log q_\eta(a_k \mid y, x);

* **sleep update of the inference network** (optional), maximum likelihood
  of :math:`q_\eta` on samples of the generative model,
  :math:`\mathbb{E}_{p(a, y \mid x)}[\nabla_\eta \log q_\eta(a \mid y, x)]`.

Control variates (WS-RAM's variance reduction). The full text of the WS-RAM
paper could not be consulted while this module was written, so its exact
control-variate equations are not reproduced here; the two control variates
below are derived from the same principle (subtract a term of known, zero
expectation that is correlated with the estimator) and each is documented
with its bias:

* inference network: since :math:`\mathbb{E}_q[\nabla_\eta \log q_\eta(a)] = 0`,
  any constant may be subtracted from :math:`w_k`; ``"uniform"`` subtracts
  :math:`1/K`, the mean of the :math:`w_k`, giving
  :math:`\sum_k (w_k - 1/K) \nabla_\eta \log q_\eta(a_k)`, which has *exactly*
  the expectation of the plain estimator and vanishes when
  :math:`q = p(a \mid y, x)` (equal weights), where the plain estimator is
  pure noise.
* prior network: the samples come from :math:`q`, not from the prior, so the
  score :math:`\nabla_\theta \log p_\theta(a_k \mid x)` is not zero-mean by
  itself; but with the prior ratios :math:`r_k = p(a_k \mid x) / q(a_k \mid y,
  x)`,
  :math:`\mathbb{E}_q\bigl[\tfrac{1}{K}\sum_k r_k \nabla_\theta \log
  p_\theta(a_k \mid x)\bigr] = \nabla_\theta \sum_a p_\theta(a \mid x) = 0`.
  ``"unnormalized"`` subtracts :math:`c_k = r_k / K` (exactly unbiased
  relative to the plain estimator); ``"self_normalized"`` subtracts
  :math:`c_k = r_k / \sum_j r_j` (bias :math:`O(1/K)`, the order of RWS's own
  bias, and lower variance when the :math:`r_k` are heavy-tailed). With the
  self-normalised version the prior gradient is exactly zero when the
  predictor ignores the locations (the posterior equals the prior), which is
  the situation at the start of training.
* ``"optimal"`` (prior network): the unnormalised control variate
  :math:`\hat h = \sum_k \tfrac{r_k}{K} \nabla_\theta \log p_\theta(a_k
  \mid x)` scaled by the variance-minimising coefficient
  :math:`\alpha^* = \mathrm{Cov}(\hat g, \hat h) / \mathrm{Var}(\hat h)`
  of Paisley, Blei and Jordan (ICML 2012), estimated per batch with each
  example left out of its own coefficient and held constant
  (:func:`aila_jax.stochastic.control_variates.leave_one_out_optimal_scale`):
  the signal is :math:`w_k - \alpha_b r_k / K`. With independent examples
  the expectation of the gradient is exactly that of the plain estimator, and
  ``"unnormalized"`` is the special case :math:`\alpha = 1`.

A learned, input-dependent baseline for the score-function terms of RAM is in
:mod:`aila_jax.stochastic.reinforce` and
:mod:`aila_jax.stochastic.control_variates`. For the inference network no
learned baseline is offered: the normalised weights always average
:math:`1/K` (:math:`\sum_k w_k = 1`), so a baseline regressed onto them
would learn the constant :math:`1/K` that ``"uniform"`` already subtracts.

Conventions. Arrays are **samples first**, ``[K, ...]`` (typically
``[K, B]``), as produced by ``jax.vmap`` over K sample keys. Per-step
log-probabilities of a glimpse sequence are summed over time before they come
here. Log-probabilities must be evaluated at ``jax.lax.stop_gradient`` of the
samples (no pathwise gradient through a reparameterised sample). The
functions return *surrogate losses*: scalars whose gradients are minus the
estimates above (weights enter through ``stop_gradient``), summed over
samples and averaged over the batch axes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from aila_jax.stochastic import control_variates, importance

__all__ = [
    "PRIOR_CONTROL_VARIATES",
    "PROPOSAL_CONTROL_VARIATES",
    "RWSWake",
    "rws_sleep_loss",
    "rws_wake_losses",
]

PRIOR_CONTROL_VARIATES = ("none", "self_normalized", "unnormalized", "optimal")
PROPOSAL_CONTROL_VARIATES = ("none", "uniform")


class RWSWake(NamedTuple):
  """Output of :func:`rws_wake_losses`.

  Attributes:
    predictor_loss: scalar; its gradient is minus the wake estimate for the
      predictor :math:`p(y \\mid a, x)`.
    prior_loss: scalar; likewise for the prior :math:`p(a \\mid x)`.
    proposal_loss: scalar; the wake update of :math:`q(a \\mid y, x)`.
    total: the sum of the three.
    log_marginal: ``[...]`` estimate of :math:`\\log p(y \\mid x)` (batch axes),
      a metric held constant (no gradient).
    normalized_log_weights: ``[K, ...]`` :math:`\\log w_k`, held constant.
    effective_sample_size: ``[...]``, in ``[1, K]``.
  """
  predictor_loss: jax.Array
  prior_loss: jax.Array
  proposal_loss: jax.Array
  total: jax.Array
  log_marginal: jax.Array
  normalized_log_weights: jax.Array
  effective_sample_size: jax.Array


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def _weighted_nll(signal: jax.Array, log_prob: jax.Array) -> jax.Array:
  """-mean_batch sum_k sg(signal_k) log_prob_k, for [K, ...] arrays."""
  summed = jnp.sum(jax.lax.stop_gradient(signal) * log_prob, axis=0)  # (...)
  return -jnp.mean(summed)


def rws_wake_losses(log_prior: jax.Array, log_likelihood: jax.Array,
                    log_proposal: jax.Array, *,
                    prior_control_variate: str = "none",
                    proposal_control_variate: str = "none",
                    prior_score_gram: jax.Array | None = None) -> RWSWake:
  r"""Wake-phase surrogate losses of reweighted wake-sleep (WS-RAM).

  With :math:`w_k` the normalised importance weights (constants) and
  :math:`c^p_k`, :math:`c^q_k` the chosen control variates (0 for
  ``"none"``; see the module docstring), averaged over the batch:

  .. math::

    \mathcal{L}_{\text{pred}} &= -\sum_k w_k \log p(y \mid a_k, x), \\
    \mathcal{L}_{\text{prior}} &= -\sum_k (w_k - c^p_k) \log p(a_k \mid x), \\
    \mathcal{L}_{q} &= -\sum_k (w_k - c^q_k) \log q(a_k \mid y, x),

  where for the prior ``"self_normalized"`` gives
  :math:`c^p_k = r_k / \sum_j r_j` and ``"unnormalized"`` gives
  :math:`c^p_k = r_k / K`, :math:`r_k = p(a_k \mid x) / q(a_k \mid y, x)`;
  ``"optimal"`` gives :math:`c^p_k = \alpha_b r_k / K` with the
  leave-one-out optimal coefficient :math:`\alpha_b` (module docstring);
  for the inference network ``"uniform"`` gives :math:`c^q_k = 1/K`.
  Without control variates,
  :math:`\nabla_\theta(\mathcal{L}_{\text{pred}} + \mathcal{L}_{\text{prior}})
  = -\nabla_\theta \log \hat p(y \mid x)` with the samples held fixed.

  Args:
    log_prior: ``[K, ...]`` :math:`\log p_\theta(a_k \mid x)`.
    log_likelihood: ``[K, ...]`` :math:`\log p_\theta(y \mid a_k, x)`.
    log_proposal: ``[K, ...]`` :math:`\log q_\eta(a_k \mid y, x)`, the
      :math:`a_k` sampled from :math:`q_\eta`.
    prior_control_variate: ``"none"``, ``"self_normalized"``,
      ``"unnormalized"`` or ``"optimal"``.
    proposal_control_variate: ``"none"`` or ``"uniform"``.
    prior_score_gram: for ``"optimal"`` only: inner products of the prior's
      scores :math:`\nabla \log p(a_k \mid x)`, ``[K, K, ...]`` or the
      diagonal ``[K, ...]`` (see
      :func:`aila_jax.stochastic.control_variates.leave_one_out_optimal_scale`;
      None: the identity).

  Returns:
    An :class:`RWSWake` with the three losses, their sum, the
    log-marginal-likelihood estimate, the normalised log weights and the
    effective sample size.

  Raises:
    ValueError: shapes that differ, K < 1, or an unknown control variate.
  """
  _check_choice(prior_control_variate, PRIOR_CONTROL_VARIATES,
                "prior_control_variate")
  _check_choice(proposal_control_variate, PROPOSAL_CONTROL_VARIATES,
                "proposal_control_variate")
  num_samples, *_ = importance.check_sample_arrays(
      ("log_prior", "log_likelihood", "log_proposal"),
      (log_prior, log_likelihood, log_proposal))

  log_w_tilde = jax.lax.stop_gradient(
      importance.importance_log_weights(log_prior, log_likelihood,
                                        log_proposal))  # (K, ...)
  log_w = jax.nn.log_softmax(log_w_tilde, axis=0)  # (K, ...)
  w = jnp.exp(log_w)  # (K, ...)

  predictor_loss = _weighted_nll(w, log_likelihood)

  log_ratio = jax.lax.stop_gradient(log_prior - log_proposal)  # log r_k
  if prior_control_variate == "self_normalized":
    prior_signal = w - jax.nn.softmax(log_ratio, axis=0)
  elif prior_control_variate == "unnormalized":
    prior_signal = w - jnp.exp(log_ratio - math.log(num_samples))
  elif prior_control_variate == "optimal":
    control = jnp.exp(log_ratio - math.log(num_samples))  # (K, ...) r_k / K
    alpha = control_variates.leave_one_out_optimal_scale(
        w, control, None if prior_score_gram is None
        else jax.lax.stop_gradient(prior_score_gram))  # (...)
    prior_signal = w - alpha * control
  else:
    prior_signal = w
  prior_loss = _weighted_nll(prior_signal, log_prior)

  if proposal_control_variate == "uniform":
    proposal_signal = w - 1.0 / num_samples
  else:
    proposal_signal = w
  proposal_loss = _weighted_nll(proposal_signal, log_proposal)

  return RWSWake(
      predictor_loss=predictor_loss,
      prior_loss=prior_loss,
      proposal_loss=proposal_loss,
      total=predictor_loss + prior_loss + proposal_loss,
      log_marginal=importance.log_marginal_estimate(log_w_tilde),
      normalized_log_weights=log_w,
      effective_sample_size=importance.effective_sample_size(log_w),
  )


def rws_sleep_loss(log_proposal: jax.Array,
                   log_likelihood: jax.Array | None = None) -> jax.Array:
  r"""Sleep-phase surrogate loss of the inference network.

  Two variants, chosen by whether ``log_likelihood`` is given:

  * dreamed labels (Hinton et al. 1995's sleep phase, the default): the
    caller samples :math:`a_s \sim p_\theta(a \mid x)` and
    :math:`\tilde y_s \sim p_\theta(y \mid a_s, x)` and passes
    :math:`\log q_\eta(a_s \mid \tilde y_s, x)`;

    .. math::

      \mathcal{L}_{\text{sleep}} = -\frac{1}{S} \sum_s
          \log q_\eta(a_s \mid \tilde y_s, x),

    an unbiased estimate of the gradient of
    :math:`\mathbb{E}_{p(y \mid x)} \mathrm{KL}(p(a \mid y, x) \| q_\eta)`
    (up to a constant), averaged over the model's own labels;
  * true labels: the caller samples :math:`a_s \sim p_\theta(a \mid x)`,
    passes :math:`\log q_\eta(a_s \mid y, x)` with the *true* label and
    :math:`\log p_\theta(y \mid a_s, x)`; the prior is the proposal, so the
    posterior expectation is estimated with the self-normalised weights
    :math:`u_s \propto p(y \mid a_s, x)`:

    .. math::

      \mathcal{L}_{\text{sleep}} = -\sum_s u_s \log q_\eta(a_s \mid y, x).

  Gradients with respect to :math:`\theta` are blocked (the weights are
  constants; the samples must come in through ``stop_gradient``).

  Args:
    log_proposal: ``[S, ...]`` :math:`\log q_\eta` at the prior samples.
    log_likelihood: optional ``[S, ...]`` :math:`\log p(y \mid a_s, x)` of
      the true label.

  Returns:
    Scalar loss, averaged over the batch axes.

  Raises:
    ValueError: shapes that differ or S < 1.
  """
  if log_likelihood is None:
    importance.check_sample_arrays(("log_proposal",), (log_proposal,))
    return -jnp.mean(log_proposal)
  importance.check_sample_arrays(("log_proposal", "log_likelihood"),
                                 (log_proposal, log_likelihood))
  u = jax.nn.softmax(jax.lax.stop_gradient(log_likelihood), axis=0)
  return _weighted_nll(u, log_proposal)
