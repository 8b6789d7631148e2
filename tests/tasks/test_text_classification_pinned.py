"""TextClassificationTask.from_config: what it reads from the config and dataset, what it refuses."""
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.special import log_softmax

from aila_jax.data import datasets
from aila_jax.errors import ConfigError
from aila_jax.tasks.text_classification import TextClassificationTask


def _dataset(tokens, **model_kwargs):
  return datasets.Dataset(name="toy", train=None, eval={}, preprocess=None,
                          example={"tokens": tokens, "label": np.zeros(1, np.int32)},
                          model_kwargs=dict(dict(num_classes=3, vocab_size=50, max_len=6), **model_kwargs))


def _cfg(**kw):
  return ml_collections.ConfigDict(dict(dict(label_smoothing=0.0, task_kwargs={}), **kw))


def test_from_config_takes_smoothing_and_classes():
  # num_classes from the dataset (3 here), label_smoothing from the config; the loss uses both
  task = TextClassificationTask.from_config(_cfg(label_smoothing=0.3), _dataset(np.zeros((1, 6), np.int32)))
  assert (task.num_classes, task.label_smoothing, task.input_key) == (3, 0.3, "tokens")
  logits = np.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]], np.float32)
  labels = np.array([2, 0])
  loss, metrics = task.loss_and_metrics(jnp.asarray(logits), {"label": jnp.asarray(labels)})
  y = 0.7 * np.eye(3)[labels] + 0.3 / 3  # (1 - eps) onehot + eps / K
  np.testing.assert_allclose(loss, -(y * log_softmax(logits.astype(np.float64), -1)).sum(-1).mean(), rtol=1e-5)
  assert float(metrics["accuracy"]) == 1.0


@pytest.mark.parametrize("tokens,got", [
    (np.zeros((1, 6), np.float32), r"shape \(1, 6\), dtype float32"),  # not token ids
    (np.zeros((1, 6, 1), np.int32), r"shape \(1, 6, 1\), dtype int32"),  # not [batch, length]
    (np.zeros((6,), np.int32), r"shape \(6,\), dtype int32"),
])
def test_from_config_rejects_non_token_examples(tokens, got):
  # only int [batch, length] token ids are accepted from batch['tokens']
  with pytest.raises(ConfigError, match=r"reads int token ids \[batch, length\] .*; got " + got):
    TextClassificationTask.from_config(_cfg(), _dataset(tokens))


def test_from_config_needs_labels():
  # a dataset without num_classes (e.g. translation) is a config error, not a KeyError
  ds = _dataset(np.zeros((1, 6), np.int32))
  ds = datasets.Dataset(name="mt", train=None, eval={}, preprocess=None, example=ds.example,
                        model_kwargs={"vocab_size": 50, "max_len": 6})
  with pytest.raises(ConfigError, match=r"needs a dataset with labels .* 'mt' has \['max_len', 'vocab_size'\]"):
    TextClassificationTask.from_config(_cfg(), ds)
