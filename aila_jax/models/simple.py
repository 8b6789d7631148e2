"""Small image classifiers that exercise the trainer: an MLP and a LeNet-style CNN.

Every model in ``aila_jax.models`` is called as ``model.apply(variables, x,
train=...)`` and returns ``(logits, intermediates)``: the intermediates dict
holds per-layer activations (and, for attention models, attention weights) so
they can be plotted without changing the model.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Flattens the input, then ``Dense -> ReLU -> Dropout`` per hidden width, then a linear head."""
  num_classes: int
  hidden: Sequence[int] = (256, 256)
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    inter = {}
    x = x.reshape((x.shape[0], -1)).astype(self.dtype)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"dense_{i}")(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      inter[f"hidden_{i}"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), inter


class CNN(nn.Module):
  """``[Conv3x3 -> (BatchNorm) -> ReLU -> MaxPool2]`` per width, then Dense -> ReLU -> Dropout -> head."""
  num_classes: int
  widths: Sequence[int] = (32, 64)
  hidden: int = 128
  batch_norm: bool = True
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    inter = {}
    x = x.astype(self.dtype)  # (B, H, W, C)
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (3, 3), use_bias=not self.batch_norm, dtype=self.dtype, name=f"conv_{i}")(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, name=f"bn_{i}")(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
      inter[f"stage_{i}"] = x
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="dense")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    inter["features"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), inter
