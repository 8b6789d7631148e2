"""Classification: label-smoothed cross-entropy, accuracy, masked eval sums."""

import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
  r"""Softmax classification of ``batch[input_key]`` into ``num_classes`` labels.

  The training loss is the cross-entropy against label-smoothed targets

  .. math::
     \tilde y = (1 - \epsilon)\, \mathrm{onehot}(y) + \epsilon / K ,
     \qquad \ell = -\sum_k \tilde y_k \log \mathrm{softmax}(z)_k .
  """
  num_classes: int
  label_smoothing: float = 0.0
  input_key: str = "image"
  label_key: str = "label"

  def inputs(self, batch):
    return batch[self.input_key]

  def _losses(self, logits, labels):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, self.num_classes), self.label_smoothing) \
        if self.label_smoothing else jax.nn.one_hot(labels, self.num_classes)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

  def loss_and_metrics(self, logits, batch):
    """Mean loss over the batch, and per-batch means of the metrics."""
    labels = batch[self.label_key]
    loss = self._losses(logits, labels).mean()
    accuracy = (logits.argmax(-1) == labels).mean()
    return loss, {"loss": loss, "accuracy": accuracy}

  def eval_sums(self, logits, batch):
    """Sums over real (``mask`` = 1) examples, to be added over batches and divided by ``count``."""
    labels = batch[self.label_key]
    mask = batch.get("mask", jnp.ones(labels.shape, jnp.float32))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    correct = (logits.argmax(-1) == labels).astype(jnp.float32)
    return {"loss": (losses * mask).sum(), "accuracy": (correct * mask).sum(), "count": mask.sum()}
