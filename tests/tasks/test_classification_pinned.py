"""ClassificationTask: label-smoothed cross-entropy and masked eval sums against numpy."""
import jax.numpy as jnp
import numpy as np
from scipy.special import log_softmax

from aila_jax.tasks.classification import ClassificationTask


def _case():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(5, 4)).astype(np.float32) * 2
  labels = np.array([0, 3, 1, 1, 2], np.int32)
  return logits, labels


def test_smoothed_loss_and_accuracy():
  logits, labels = _case()
  eps, k = 0.3, 4
  task = ClassificationTask(num_classes=k, label_smoothing=eps)
  loss, m = task.loss_and_metrics(jnp.asarray(logits), {"label": jnp.asarray(labels)})
  y = (1 - eps) * np.eye(k)[labels] + eps / k  # (1 - eps) onehot + eps / K
  logp = log_softmax(logits.astype(np.float64), axis=-1)
  np.testing.assert_allclose(loss, -(y * logp).sum(-1).mean(), rtol=1e-5)
  np.testing.assert_allclose(m["accuracy"], (logits.argmax(-1) == labels).mean(), rtol=1e-6)


def test_eval_sums_are_unsmoothed_and_masked():
  logits, labels = _case()
  task = ClassificationTask(num_classes=4, label_smoothing=0.3)
  mask = np.array([1, 0, 1, 1, 0], np.float32)
  apply_fn = lambda v, x, train, rngs: (jnp.asarray(logits), {})  # noqa: E731
  sums = task.eval_sums(apply_fn, {}, {"image": np.zeros((5, 1)), "label": labels, "mask": mask})
  nll = -np.take_along_axis(log_softmax(logits.astype(np.float64), axis=-1), labels[:, None], -1)[:, 0]
  np.testing.assert_allclose(sums["loss"], (nll * mask).sum(), rtol=1e-5)
  np.testing.assert_allclose(sums["accuracy"], ((logits.argmax(-1) == labels) * mask).sum(), rtol=1e-6)
  assert float(sums["count"]) == 3
