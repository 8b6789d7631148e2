"""Classification: label-smoothed cross-entropy, accuracy, masked eval sums."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from aila_jax.tasks.base import apply_model, check_task_kwargs, ela_metrics


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
  r"""Softmax classification of ``batch[input_key]`` into ``num_classes`` labels.

  The model returns ``(logits, intermediates)``. The training loss is the
  cross-entropy against label-smoothed targets

  .. math::
     \tilde y = (1 - \epsilon)\, \mathrm{onehot}(y) + \epsilon / K ,
     \qquad \ell = -\sum_k \tilde y_k \log \mathrm{softmax}(z)_k .
  """
  num_classes: int
  label_smoothing: float = 0.0
  input_key: str = "image"
  label_key: str = "label"

  @classmethod
  def from_config(cls, config, dataset) -> "ClassificationTask":
    return cls(num_classes=int(dataset.model_kwargs["num_classes"]),
               label_smoothing=float(config.get("label_smoothing", 0.0)),
               **check_task_kwargs(cls, config, task="classification",
                                   reserved=("num_classes", "label_smoothing")))

  def model_inputs(self, batch) -> tuple:
    return (batch[self.input_key],)

  def _losses(self, logits, labels):
    targets = jax.nn.one_hot(labels, self.num_classes)
    if self.label_smoothing:
      targets = optax.smooth_labels(targets, self.label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

  def loss_and_metrics(self, logits, batch):
    """Mean loss over the batch, and per-batch means of the metrics."""
    labels = batch[self.label_key]
    loss = self._losses(logits, labels).mean()
    accuracy = (logits.argmax(-1) == labels).mean()
    return loss, {"loss": loss, "accuracy": accuracy}

  def train_loss(self, apply_fn, variables, batch, *, rngs, mutable=()):
    (logits, inter), new_state = apply_model(apply_fn, variables, self.model_inputs(batch), train=True,
                                             rngs=rngs, mutable=mutable)
    loss, metrics = self.loss_and_metrics(logits, batch)
    return loss, {**metrics, **ela_metrics(inter)}, new_state

  def eval_sums(self, apply_fn, variables, batch, *, rngs=None):
    """Sums over real (``mask`` = 1) examples, to be added over batches and divided by ``count``."""
    (logits, _), _ = apply_model(apply_fn, variables, self.model_inputs(batch), train=False, rngs=rngs)
    labels = batch[self.label_key]
    mask = batch.get("mask", jnp.ones(labels.shape, jnp.float32))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    correct = (logits.argmax(-1) == labels).astype(jnp.float32)
    return {"loss": (losses * mask).sum(), "accuracy": (correct * mask).sum(), "count": mask.sum()}
