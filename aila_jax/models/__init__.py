"""Models looked up by name: ``get_model(name, num_classes=..., **kwargs)``."""

import dataclasses
from typing import Any, Callable

import flax.linen as nn

from aila_jax.errors import ConfigError
from aila_jax.models.simple import CNN, MLP
from aila_jax.models.transformer import EncoderDecoder, TransformerClassifier
from aila_jax.models.depth_backbones import CifarResNet, DepthLSTM, DepthMLP
from aila_jax.models.depth_resnet import DepthResNet
from aila_jax.models.depth_text import DepthTextMLP, DepthTransformerClassifier, LSTMClassifier
from aila_jax.models.ram import RAM, WSRAM
from aila_jax.models.dla import MODELS as DLA_FAMILY

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "transformer": EncoderDecoder,
    "transformer_classifier": TransformerClassifier,
    "cifar_resnet": CifarResNet,
    "resnet50_depth": DepthResNet,
    "depth_mlp": DepthMLP,
    "depth_lstm": DepthLSTM,
    "depth_text_mlp": DepthTextMLP,
    "depth_transformer_classifier": DepthTransformerClassifier,
    "lstm_classifier": LSTMClassifier,
    "ram": RAM,
    "wsram": WSRAM,
    **DLA_FAMILY,  # dla34 ... dla169, dla34_cifar, dla34_up, cifar_dla
}


def get_model(name: str, **kwargs: Any) -> nn.Module:
  """Builds model ``name`` with ``kwargs`` (from ``config.model``); clear errors for bad names/keys."""
  if name not in MODELS:
    raise ConfigError(f"config.model_name: unknown model {name!r}; expected one of {sorted(MODELS)}")
  cls = MODELS[name]
  fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ConfigError(f"config.model: model {name!r} takes no argument(s) {unknown}; "
                      f"it takes {sorted(fields)}")
  check_model_kwargs(name, cls, kwargs)
  return cls(**kwargs)


_RATE_WORDS = ("dropout", "drop_path", "rate")


def check_model_kwargs(name: str, cls, kwargs: dict) -> None:
  """Each ``config.model.KEY`` has the kind of value its field's default has (a bool, an int, a number,
  a string, a sequence of ints); rates (dropout, drop-path) lie in [0, 1); ConfigError naming the key."""
  import math  # pylint: disable=g-import-not-at-top
  defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

  def bad(key, expected, value):
    return ConfigError(f"config.model.{key}: expected {expected}, got {value!r} (model {name!r})")

  for key, value in kwargs.items():
    if key not in defaults or key == "dtype":
      continue
    default = defaults[key]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, bool):
      if not isinstance(value, bool):
        raise bad(key, "a bool", value)
    elif isinstance(default, int):
      if not is_int:
        raise bad(key, "an int", value)
      if default > 0 and value < 0:
        raise bad(key, "an int >= 0", value)
    elif isinstance(default, float):
      if not (is_int or isinstance(value, float)) or not math.isfinite(value):
        raise bad(key, "a finite number", value)
      if any(w in key for w in _RATE_WORDS) and not 0.0 <= value < 1.0:
        raise bad(key, "a rate in [0, 1)", value)
    elif isinstance(default, str):
      if not isinstance(value, str):
        raise bad(key, "a string", value)
    elif isinstance(default, (tuple, list)) and default and all(
        isinstance(d, int) and not isinstance(d, bool) for d in default):
      if not isinstance(value, (tuple, list)) or not all(
          isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise bad(key, "a sequence of ints >= 1, e.g. " + repr(tuple(default)), value)
