"""Text classification: :class:`ClassificationTask` on ``batch['tokens']`` (int32 ``[B, L]``, 0 = padding).

The model is called ``model.apply(variables, tokens, train=...)`` and returns
``(logits [B, num_classes], intermediates)``; loss, accuracy and eval sums are
those of :class:`aila_jax.tasks.classification.ClassificationTask`.
"""

from __future__ import annotations

import dataclasses

from aila_jax.errors import ConfigError
from aila_jax.tasks.base import check_task_kwargs
from aila_jax.tasks.classification import ClassificationTask


@dataclasses.dataclass(frozen=True)
class TextClassificationTask(ClassificationTask):
  """Label-smoothed softmax classification of token sequences (``input_key='tokens'``)."""
  input_key: str = "tokens"

  @classmethod
  def from_config(cls, config, dataset) -> "TextClassificationTask":
    kwargs = check_task_kwargs(cls, config, task="text_classification",
                               reserved=("num_classes", "label_smoothing"))
    if "num_classes" not in dataset.model_kwargs:
      raise ConfigError(f"config.dataset: task 'text_classification' needs a dataset with labels "
                        f"(model_kwargs['num_classes']); {dataset.name!r} has {sorted(dataset.model_kwargs)}")
    task = cls(num_classes=int(dataset.model_kwargs["num_classes"]),
               label_smoothing=float(config.get("label_smoothing", 0.0)), **kwargs)
    example = dataset.example.get(task.input_key)
    if example is None or example.ndim != 2 or example.dtype.kind not in "iu":
      got = "missing" if example is None else f"shape {example.shape}, dtype {example.dtype}"
      raise ConfigError(f"config.task_kwargs.input_key: task 'text_classification' reads int token ids "
                        f"[batch, length] from batch[{task.input_key!r}] of {dataset.name!r}; got {got}")
    return task
