"""Per-problem losses, metrics and evaluation, looked up by name (see ``tasks.base`` for the protocol)."""

from aila_jax.errors import ConfigError
from aila_jax.tasks.base import RNG_STREAMS, apply_model  # noqa: F401
from aila_jax.tasks.classification import ClassificationTask

TASKS = {"classification": ClassificationTask}


def register_task(name: str):
  """Class decorator: the class must have ``from_config(config, dataset)``."""
  def wrap(cls):
    TASKS[name] = cls
    return cls
  return wrap


def get_task(name: str, config, dataset):
  if name not in TASKS:
    raise ConfigError(f"config.task: unknown task {name!r}; expected one of {sorted(TASKS)}")
  return TASKS[name].from_config(config, dataset)
