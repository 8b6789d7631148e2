"""Models looked up by name: ``get_model(name, num_classes=..., **kwargs)``."""

import dataclasses
from typing import Any, Callable

import flax.linen as nn

from aila_jax.errors import ConfigError
from aila_jax.models.simple import CNN, MLP
from aila_jax.models.transformer import EncoderDecoder, TransformerClassifier
from aila_jax.models.depth_backbones import CifarResNet, DepthLSTM, DepthMLP
from aila_jax.models.depth_text import DepthTextMLP, DepthTransformerClassifier, LSTMClassifier
from aila_jax.models.ram import RAM, WSRAM
from aila_jax.models.dla import MODELS as DLA_FAMILY

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "transformer": EncoderDecoder,
    "transformer_classifier": TransformerClassifier,
    "cifar_resnet": CifarResNet,
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
  return cls(**kwargs)
