"""Per-problem losses, metrics and evaluation, looked up by name (see ``tasks.base`` for the protocol)."""

from aila_jax.errors import ConfigError
from aila_jax.tasks.base import RNG_STREAMS, apply_model  # noqa: F401
from aila_jax.tasks.classification import ClassificationTask
from aila_jax.tasks.seq2seq import Seq2SeqTask
from aila_jax.tasks.text_classification import TextClassificationTask
from aila_jax.tasks.forecasting import ForecastingTask
from aila_jax.tasks.glimpse import GlimpseTask

TASKS = {"classification": ClassificationTask}


def register_task(name: str):
  """Class decorator: the class must have ``from_config(config, dataset)``."""
  def wrap(cls):
    TASKS[name] = cls
    return cls
  return wrap


register_task("glimpse")(GlimpseTask)
register_task("seq2seq")(Seq2SeqTask)
register_task("text_classification")(TextClassificationTask)
register_task("forecasting")(ForecastingTask)


def get_task(name: str, config, dataset):
  if name not in TASKS:
    raise ConfigError(f"config.task: unknown task {name!r}; expected one of {sorted(TASKS)}")
  return TASKS[name].from_config(config, dataset)
