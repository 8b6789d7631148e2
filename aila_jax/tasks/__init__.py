"""Per-problem losses, metrics and evaluation."""

from aila_jax.errors import ConfigError
from aila_jax.tasks.classification import ClassificationTask

TASKS = {"classification": ClassificationTask}


def get_task(name: str, **kwargs):
  if name not in TASKS:
    raise ConfigError(f"config.task: unknown task {name!r}; expected one of {sorted(TASKS)}")
  return TASKS[name](**kwargs)
