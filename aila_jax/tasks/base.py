"""The task protocol: what the trainer asks of a problem.

A task owns the forward pass, the loss and the eval metrics; the trainer owns
devices, optimisation, checkpoints and logging. A task implements

* ``model_inputs(batch) -> tuple``: the positional inputs of ``model.apply``
  (used for ``model.init`` on ``dataset.example`` too);
* ``train_loss(apply_fn, variables, batch, *, rngs, mutable) ->
  (loss, metrics, new_model_state)``: scalar loss, dict of scalar batch
  metrics, updated mutable collections (``{}`` when ``mutable`` is empty);
* ``eval_sums(apply_fn, variables, batch, *, rngs) -> dict``: per-batch sums
  over real examples (``batch['mask']``) including ``count``; the trainer adds
  them over the eval set and divides by ``count``.

``rngs`` holds one key per stream of :data:`RNG_STREAMS`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aila_jax.errors import ConfigError

RNG_STREAMS = ("dropout", "glimpse")


def apply_model(apply_fn, variables, inputs: tuple, *, train: bool, rngs=None, mutable=()) -> tuple[Any, dict]:
  """``apply_fn`` with or without mutable collections; returns ``(outputs, new_model_state)``."""
  if mutable:
    return apply_fn(variables, *inputs, train=train, rngs=rngs, mutable=list(mutable))
  return apply_fn(variables, *inputs, train=train, rngs=rngs), {}


ELA_KL_PREFIX = "ela/kl/"  # step metrics 'ela/kl/stage_s/block_t' (logged as 'train/ela/kl/...')


def ela_metrics(intermediates) -> dict:
  """The model's adjacent-layer KLs (``intermediates['ela_kl']``, a dict ``{'stage_s/block_t': scalar}``
  that ELA-enabled depth backbones return) as step metrics ``ela/kl/stage_s/block_t``; ``{}`` if absent.
  What :mod:`aila_jax.train.ela`'s controller reads; the task looks at nothing else of the model."""
  if not isinstance(intermediates, dict):
    return {}
  return {ELA_KL_PREFIX + name: value for name, value in (intermediates.get("ela_kl") or {}).items()}


def check_task_kwargs(cls, config, *, task: str, reserved: tuple[str, ...]) -> dict:
  """``config.task_kwargs`` as a dict, checked against the dataclass fields of ``cls``.

  ``reserved`` fields come from the dataset or from top-level keys, never from task_kwargs.
  """
  kwargs = dict(config.get("task_kwargs", {}) or {})
  fields = {f.name for f in dataclasses.fields(cls)} - set(reserved)
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ConfigError(f"config.task_kwargs: task {task!r} takes no option(s) {unknown}; it takes "
                      f"{sorted(fields)}")
  return kwargs
