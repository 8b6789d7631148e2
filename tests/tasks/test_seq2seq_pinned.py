"""Seq2SeqTask metrics against numpy: per-token nll and accuracy over non-pad targets, eval sums over real rows."""
import jax.numpy as jnp
import numpy as np
from scipy.special import log_softmax

from aila_jax.tasks import seq2seq


def _case():
  rng = np.random.default_rng(5)
  targets = np.array([[4, 3, 2, 0, 0], [1, 4, 4, 3, 2], [3, 2, 0, 0, 0]], np.int32)
  logits = rng.normal(size=(3, 5, 6)).astype(np.float32) * 2
  # make the padding positions "correct" (argmax 0) and very unlikely for the real rows' tokens, so that a
  # metric that counts padding differs clearly
  logits[..., 0] += 8.0 * (targets == 0)
  return logits, targets


def test_train_metrics_are_per_non_pad_token():
  logits, targets = _case()
  eps = 0.2
  task = seq2seq.Seq2SeqTask(vocab_size=6, label_smoothing=eps)
  loss, m = task.loss_and_metrics(jnp.asarray(logits), {"inputs": None, "targets": jnp.asarray(targets)})
  logp, w = log_softmax(logits.astype(np.float64), axis=-1), targets != 0
  nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  smoothed = (1 - eps) * nll - eps / 6 * logp.sum(-1)
  correct = logits.argmax(-1) == targets
  np.testing.assert_allclose(loss, smoothed[w].mean(), rtol=1e-5)
  np.testing.assert_allclose(m["nll"], nll[w].mean(), rtol=1e-5)
  np.testing.assert_allclose(m["accuracy"], correct[w].mean(), rtol=1e-6)
  assert float(m["tokens"]) == w.sum() == 10


def test_eval_sums_count_only_non_pad_tokens_of_real_rows():
  logits, targets = _case()
  task = seq2seq.Seq2SeqTask(vocab_size=6, label_smoothing=0.1)
  mask = np.array([1.0, 0.0, 1.0], np.float32)
  apply_fn = lambda v, x, y, train, rngs: (jnp.asarray(logits), {})  # noqa: E731
  sums = task.eval_sums(apply_fn, {}, {"inputs": np.zeros((3, 2), np.int32), "targets": targets, "mask": mask})
  w = (targets != 0) & (mask[:, None] > 0)
  nll = -np.take_along_axis(log_softmax(logits.astype(np.float64), axis=-1), targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(sums["loss"], nll[w].sum(), rtol=1e-5)  # unsmoothed
  np.testing.assert_allclose(sums["accuracy"], (logits.argmax(-1) == targets)[w].sum(), rtol=1e-6)
  assert float(sums["count"]) == w.sum() == 5
