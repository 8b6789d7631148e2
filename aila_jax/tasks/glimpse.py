r"""Hard-attention classification: RAM's hybrid REINFORCE loss and WS-RAM's reweighted wake-sleep.

The model (``'ram'`` or ``'wsram'``, :mod:`aila_jax.models.ram`) is called with
``sample='prior' | 'proposal' | 'mean'`` and returns ``(logits,
intermediates)``; this task turns its log-densities into surrogate losses with
the pure estimators of :mod:`aila_jax.stochastic`. Sampling uses the
``glimpse`` RNG stream of ``rngs``.

**REINFORCE (RAM, Mnih et al. 2014, section 3.2).** One trajectory
:math:`a \sim p_\theta(a \mid x)` per image, reward :math:`r = 1[\arg\max_c
p(c \mid a, x) = y]` after the last glimpse, learned baseline :math:`b_t`:

.. math::
   \mathcal L = -\log p(y \mid a, x)
     - \lambda_r \sum_t \mathrm{sg}[r - b_t] \log p_\theta(a_t \mid h_{t-1})
     + \lambda_b \sum_t (b_t - r)^2 / T

(:func:`aila_jax.stochastic.ram_hybrid_loss`). With ``reinforce_baseline='none'``
the estimator is the naive one, no baseline and no control variate:
:math:`\mathcal L = -\log p(y \mid a, x) - \lambda_r \sum_t r \log
p_\theta(a_t \mid h_{t-1})` (the model needs no baseline network,
``config.model.baseline=False``).

**Reweighted wake-sleep (WS-RAM, Ba et al. 2015).** K trajectories
:math:`a_k \sim q_\eta(a \mid y, x)`, log-weights :math:`\log \tilde w_k = \log
p(a_k \mid x) + \log p(y \mid a_k, x) - \log q(a_k \mid y, x)` (the per-step
log-densities summed over the T glimpses), normalised in log space; the wake
losses train the predictor (glimpse, core and classifier networks) with
:math:`-\sum_k w_k \log p(y \mid a_k, x)`, the prior (location network) with
:math:`-\sum_k (w_k - c^p_k) \log p(a_k \mid x)` and the inference network with
:math:`-\sum_k (w_k - c^q_k) \log q(a_k \mid y, x)`, the control variates
:math:`c` chosen by ``prior_control_variate`` / ``proposal_control_variate``
(:func:`aila_jax.stochastic.rws_wake_losses`). ``prior_control_variate='optimal'``
scales the unnormalised control variate by the leave-one-out per-batch estimate of
:math:`\mathrm{Cov}(\hat g, \hat h) / \mathrm{Var}(\hat h)` (Paisley et al.
2012), with the Gram matrix of the scores taken with respect to each trajectory's own
location means: :math:`G_{kk} = \sum_t \|a_{k,t} - \mu_{k,t}\|^2` (the
:math:`1/\sigma^4` factor of a fixed, isotropic standard deviation cancels in the
ratio), :math:`G_{kj} = 0` for :math:`k \ne j` (different trajectories have
different means). With ``proposal='prior'`` there is no inference network: the K
trajectories come from the prior, :math:`q = p`, so :math:`\log w_k = \log p(y
\mid a_k, x)` and only the predictor and the prior are trained (every prior control
variate is then :math:`c_k = 1/K`). The optional sleep update
(``sleep_weight`` > 0) draws K trajectories from the prior and fits
:math:`q(a \mid y, x)` to them (:func:`aila_jax.stochastic.rws_sleep_loss`):
with ``sleep_labels='true'`` (default) it uses the *true* label, reweighted by
:math:`p(y \mid a_k, x)` (one pass of the model); with ``'dreamed'`` it is
the classical sleep phase (Hinton et al. 1995): a label
:math:`\tilde y_k \sim p(y \mid a_k, x)` is dreamed for every trajectory and
:math:`q` maximises :math:`\log q(a_k \mid \tilde y_k, x)` (a second pass of
the model, on the K x B trajectories flattened into one batch, with the same
prior draws and the dreamed labels).

**Evaluation.** ``eval/accuracy`` and ``eval/loss`` use the prior's mean
locations (deterministic, the number reported as test error). With
``eval_samples`` = K > 0 the task adds ``eval/accuracy_sampled`` and
``eval/loss_sampled``: the prediction :math:`\hat p(y \mid x) = \frac1K
\sum_k p(y \mid a_k, x)` with :math:`a_k \sim p(a \mid x)`, the importance
estimate of the marginal with the prior as proposal (all importance weights
equal, :math:`1/K`); it is the prediction WS-RAM's objective targets.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from aila_jax import stochastic
from aila_jax.errors import ConfigError
from aila_jax.tasks.base import check_task_kwargs
from aila_jax.stochastic.wake_sleep import PRIOR_CONTROL_VARIATES, PROPOSAL_CONTROL_VARIATES

ESTIMATORS = ("reinforce", "wake_sleep")
SLEEP_LABELS = ("true", "dreamed")
REINFORCE_BASELINES = ("learned", "none")
PROPOSALS = ("inference", "prior")
_DEFAULT_ESTIMATOR = {"ram": "reinforce", "wsram": "wake_sleep"}


def _nonneg(name, value) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
    raise ConfigError(f"config.task_kwargs.{name}: expected a number >= 0, got {value!r}")
  return float(value)


@dataclasses.dataclass(frozen=True)
class GlimpseTask:
  """Trains a RAM/WS-RAM model; see the module docstring for the losses.

  Attributes:
    num_classes: classes of the labels.
    estimator: ``'reinforce'`` (RAM) or ``'wake_sleep'`` (WS-RAM).
    num_samples: K, trajectories per image for ``'wake_sleep'`` (and the sleep update).
    reinforce_weight: :math:`\\lambda_r` of the REINFORCE term.
    reinforce_baseline: ``'learned'`` (RAM's :math:`b_\\psi(h_t)`) or ``'none'`` (the naive estimator).
    baseline_weight: :math:`\\lambda_b` of the baseline regression.
    sleep_weight: weight of the sleep update of q (0: wake updates only).
    sleep_labels: ``'true'`` (reweighted by the true label's likelihood) or ``'dreamed'``
      (labels sampled from the model; see the module docstring).
    prior_control_variate: ``'none'``, ``'self_normalized'``, ``'unnormalized'`` or ``'optimal'``.
    proposal_control_variate: ``'none'`` or ``'uniform'``.
    eval_samples: K >= 1 of the sampled eval prediction, or None (off: only the prior means).
    proposal: ``'inference'`` (:math:`q(a \\mid y, x)`, WS-RAM) or ``'prior'`` (no inference network).
  """
  num_classes: int
  estimator: str = "reinforce"
  num_samples: int = 5
  reinforce_weight: float = 1.0
  reinforce_baseline: str = "learned"
  baseline_weight: float = 1.0
  sleep_weight: float = 0.0
  sleep_labels: str = "true"
  prior_control_variate: str = "self_normalized"
  proposal_control_variate: str = "uniform"
  eval_samples: int | None = None
  proposal: str = "inference"
  input_key: str = "image"
  label_key: str = "label"

  def __post_init__(self):
    if self.estimator not in ESTIMATORS:
      raise ConfigError(f"config.task_kwargs.estimator: expected one of {ESTIMATORS}, got {self.estimator!r}")
    for name in ("num_samples", "eval_samples"):
      value = getattr(self, name)
      if name == "eval_samples" and value is None:
        continue
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        off = " or None (no sampled evaluation)" if name == "eval_samples" else ""
        raise ConfigError(f"config.task_kwargs.{name}: expected an int >= 1 (K){off}, got {value!r}")
    for name in ("reinforce_weight", "baseline_weight", "sleep_weight"):
      _nonneg(name, getattr(self, name))
    if self.sleep_labels not in SLEEP_LABELS:
      raise ConfigError(f"config.task_kwargs.sleep_labels: expected one of {SLEEP_LABELS}, "
                        f"got {self.sleep_labels!r}")
    for name, choices in (("reinforce_baseline", REINFORCE_BASELINES), ("proposal", PROPOSALS)):
      if getattr(self, name) not in choices:
        raise ConfigError(f"config.task_kwargs.{name}: expected one of {choices}, got {getattr(self, name)!r}")
    if self.proposal == "prior" and self.sleep_weight > 0:
      raise ConfigError("config.task_kwargs.sleep_weight: the sleep update trains the inference network; "
                        f"with config.task_kwargs.proposal='prior' there is none; got {self.sleep_weight!r}, expected 0")
    if self.prior_control_variate not in PRIOR_CONTROL_VARIATES:
      raise ConfigError(f"config.task_kwargs.prior_control_variate: expected one of "
                        f"{PRIOR_CONTROL_VARIATES}, got {self.prior_control_variate!r}")
    if self.proposal_control_variate not in PROPOSAL_CONTROL_VARIATES:
      raise ConfigError(f"config.task_kwargs.proposal_control_variate: expected one of "
                        f"{PROPOSAL_CONTROL_VARIATES}, got {self.proposal_control_variate!r}")

  @classmethod
  def from_config(cls, config, dataset) -> "GlimpseTask":
    kwargs = check_task_kwargs(cls, config, task="glimpse", reserved=("num_classes",))
    model_name = config.get("model_name")
    if "estimator" not in kwargs:
      if model_name not in _DEFAULT_ESTIMATOR:
        raise ConfigError(f"config.task_kwargs.estimator: model {model_name!r} has no default "
                          f"estimator; set it to one of {ESTIMATORS}")
      kwargs["estimator"] = _DEFAULT_ESTIMATOR[model_name]
    model = dict(config.get("model", {}) or {})
    needs_q = kwargs["estimator"] == "wake_sleep" and kwargs.get("proposal", "inference") == "inference"
    has_q = model.get("inference", model_name == "wsram")
    if needs_q and not has_q:
      raise ConfigError("config.task_kwargs.estimator: 'wake_sleep' needs an inference network; "
                        "use config.model_name='wsram' (or config.model.inference=True), or "
                        "config.task_kwargs.proposal='prior'")
    task = cls(num_classes=int(dataset.model_kwargs["num_classes"]), **kwargs)
    task._check_glimpse_fits(model, dataset)
    return task

  def _check_glimpse_fits(self, model: dict, dataset) -> None:
    """The largest patch of a glimpse, ``glimpse_size * 2**(num_scales - 1)``, must fit in the image."""
    example = getattr(dataset, "example", None)
    image = example.get(self.input_key) if isinstance(example, dict) else None
    if image is None or len(getattr(image, "shape", ())) != 4:
      return
    from aila_jax.models.ram import RAM  # pylint: disable=g-import-not-at-top
    fields = {f.name: f.default for f in dataclasses.fields(RAM)}
    size = model.get("glimpse_size", fields["glimpse_size"])
    scales = model.get("num_scales", fields["num_scales"])
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (size, scales)):
      return  # the model reports these
    height, width = image.shape[1:3]
    side = size * 2**(scales - 1)
    if side > min(height, width):
      raise ConfigError(
          f"config.model.glimpse_size={size} with config.model.num_scales={scales}: the largest patch is "
          f"{side}x{side} pixels (glimpse_size * 2**(num_scales - 1)), larger than the {height}x{width} "
          f"images of config.dataset={getattr(dataset, 'name', '?')!r}; lower glimpse_size or num_scales")

  def model_inputs(self, batch) -> tuple:
    return (batch[self.input_key], batch[self.label_key])

  # --- training ---

  def _log_likelihood(self, logits, labels):
    """``log p(y | a, x)`` for logits ``[..., B, C]`` and labels ``[B]``."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(log_p, jnp.broadcast_to(labels, log_p.shape[:-1])[..., None],
                               axis=-1)[..., 0]

  def reinforce_loss(self, apply_fn, variables, batch, *, rngs):
    """RAM's hybrid loss on one trajectory per image; returns ``(loss, metrics)``."""
    images, labels = self.model_inputs(batch)
    logits, inter = apply_fn(variables, images, labels, train=True, sample="prior", rngs=rngs)
    if self.reinforce_baseline == "learned" and "baseline" not in inter:
      raise ConfigError("config.task_kwargs.estimator: 'reinforce' needs the model's baseline "
                        "network (config.model.baseline=True, the default of model 'ram')")
    log_lik = self._log_likelihood(logits, labels)  # (B,)
    reward = (logits.argmax(-1) == labels).astype(jnp.float32)  # (B,)
    if self.reinforce_baseline == "none":
      nll = -log_lik.mean()
      reinforce = stochastic.reinforce_loss(inter["log_prior"], reward)
      total = nll + self.reinforce_weight * reinforce
      return total, {"loss": total, "nll": nll, "reinforce": reinforce, "accuracy": reward.mean()}
    parts = stochastic.ram_hybrid_loss(log_lik, inter["log_prior"], reward, inter["baseline"],
                                       reinforce_weight=self.reinforce_weight,
                                       baseline_weight=self.baseline_weight)
    metrics = {"loss": parts.total, "nll": parts.classification, "reinforce": parts.reinforce,
               "baseline_mse": parts.baseline, "accuracy": reward.mean()}
    return parts.total, metrics

  def wake_sleep_loss(self, apply_fn, variables, batch, *, rngs, prior_control_variate=None,
                      proposal_control_variate=None):
    """WS-RAM's wake (and optional sleep) losses on K trajectories; returns ``(loss, metrics)``."""
    images, labels = self.model_inputs(batch)
    k = self.num_samples
    from_prior = self.proposal == "prior"
    logits, inter = apply_fn(variables, images, None if from_prior else labels, train=True,
                             sample="prior" if from_prior else "proposal", num_samples=k,
                             rngs=rngs)  # (K, B, C)
    log_lik = self._log_likelihood(logits, labels)  # (K, B)
    log_prior = inter["log_prior"].sum(-1)  # (K, B)
    # q = p: the proposal's log-density is the prior's, held constant (it trains nothing)
    log_q = jax.lax.stop_gradient(log_prior) if from_prior else inter["log_proposal"].sum(-1)  # (K, B)
    prior_cv = prior_control_variate or self.prior_control_variate
    gram = None
    if prior_cv == "optimal":  # diagonal Gram of the scores w.r.t. each trajectory's location means
      gram = jnp.sum(jnp.square(inter["samples"] - inter["prior_mean"]), axis=(-2, -1))  # (K, B)
    wake = stochastic.rws_wake_losses(
        log_prior, log_lik, log_q, prior_control_variate=prior_cv,
        proposal_control_variate=proposal_control_variate or self.proposal_control_variate,
        prior_score_gram=gram)
    loss = wake.total
    w = jnp.exp(wake.normalized_log_weights)  # (K, B)
    correct = (logits.argmax(-1) == labels).astype(jnp.float32)  # (K, B)
    metrics = {"nll": wake.predictor_loss, "prior_loss": wake.prior_loss,
               "proposal_loss": wake.proposal_loss, "log_marginal": wake.log_marginal.mean(),
               "ess": wake.effective_sample_size.mean(), "accuracy": (w * correct).sum(0).mean()}
    if self.sleep_weight > 0:
      sleep_rngs = dict(rngs, glimpse=jax.random.fold_in(rngs["glimpse"], 1))
      if self.sleep_labels == "dreamed":
        sleep = self._dreamed_sleep_loss(apply_fn, variables, images, k, sleep_rngs)
      else:
        s_logits, s_inter = apply_fn(variables, images, labels, train=True, sample="prior",
                                     num_samples=k, rngs=sleep_rngs)
        s_log_lik = jax.lax.stop_gradient(self._log_likelihood(s_logits, labels))
        sleep = stochastic.rws_sleep_loss(s_inter["log_proposal"].sum(-1), s_log_lik)
      metrics["sleep_loss"] = sleep
      loss = loss + self.sleep_weight * sleep
    metrics["loss"] = loss
    return loss, metrics

  def _dreamed_sleep_loss(self, apply_fn, variables, images, k, rngs):
    """The classical sleep phase: ``-mean log q(a_k | y~_k, x)``, ``a_k ~ p(a | x)``, ``y~_k ~ p(y | a_k, x)``.

    The K trajectories of every image are one batch of ``K * B`` (the images
    repeated), so that each can carry its own dreamed label. The first pass
    has no labels, so it skips q; the second reuses its RNG, hence the same
    prior draws (the prior does not read the label), and evaluates q at the
    dreamed labels.
    """
    tiled = jnp.tile(images, (k,) + (1,) * (images.ndim - 1))  # (K*B, H, W, C)
    logits, _ = apply_fn(variables, tiled, None, train=True, sample="prior", rngs=rngs)
    dream_key = jax.random.fold_in(rngs["glimpse"], 2)
    dreamed = jax.random.categorical(dream_key, jax.lax.stop_gradient(logits.astype(jnp.float32)))  # (K*B,)
    _, inter = apply_fn(variables, tiled, dreamed, train=True, sample="prior", rngs=rngs)
    log_q = inter["log_proposal"].sum(-1).reshape((k, images.shape[0]))  # (K, B)
    return stochastic.rws_sleep_loss(log_q)

  def train_loss(self, apply_fn, variables, batch, *, rngs, mutable=()):
    if mutable:
      raise ValueError(f"the glimpse task's models hold no mutable collections, got {mutable}")
    if self.estimator == "reinforce":
      loss, metrics = self.reinforce_loss(apply_fn, variables, batch, rngs=rngs)
    else:
      loss, metrics = self.wake_sleep_loss(apply_fn, variables, batch, rngs=rngs)
    return loss, metrics, {}

  # --- evaluation ---

  def eval_sums(self, apply_fn, variables, batch, *, rngs=None):
    """Sums over real examples: deterministic (prior-mean) and, optionally, K-sample predictions."""
    images, labels = self.model_inputs(batch)
    mask = batch.get("mask", jnp.ones(labels.shape, jnp.float32))
    logits, _ = apply_fn(variables, images, labels, train=False, sample="mean")
    nll = -self._log_likelihood(logits, labels)
    correct = (logits.argmax(-1) == labels).astype(jnp.float32)
    sums = {"loss": (nll * mask).sum(), "accuracy": (correct * mask).sum(),
            "error": ((1.0 - correct) * mask).sum(), "count": mask.sum()}
    if self.eval_samples:
      s_logits, _ = apply_fn(variables, images, labels, train=False, sample="prior",
                             num_samples=self.eval_samples, rngs=rngs)  # (K, B, C)
      log_p = jax.nn.logsumexp(jax.nn.log_softmax(s_logits, -1), axis=0) - math.log(self.eval_samples)
      s_nll = -jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
      s_correct = (log_p.argmax(-1) == labels).astype(jnp.float32)
      sums["loss_sampled"] = (s_nll * mask).sum()
      sums["accuracy_sampled"] = (s_correct * mask).sum()
    return sums
