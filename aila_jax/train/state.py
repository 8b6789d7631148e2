"""The train state: everything a step changes and a checkpoint must hold."""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
  """Parameters, optimizer state, step, RNG and mutable collections (e.g. ``batch_stats``).

  ``apply_fn`` and ``tx`` are static (not saved); ``to_checkpoint()`` gives the
  pytree that is saved and ``from_checkpoint()`` puts one back.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # dict of mutable collections, e.g. {'batch_stats': ...}; {} if none
  rng: jax.Array    # raw uint32[2] key; step keys are fold_in(rng, step)
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @classmethod
  def create(cls, *, apply_fn, params, tx, model_state, rng):
    return cls(step=jax.numpy.zeros((), jax.numpy.int32), params=params, opt_state=tx.init(params),
               model_state=model_state, rng=rng, apply_fn=apply_fn, tx=tx)

  def apply_gradients(self, grads, **kwargs):
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **kwargs)

  def variables(self, params=None):
    return {"params": self.params if params is None else params, **self.model_state}

  def to_checkpoint(self) -> dict:
    return {"step": self.step, "params": self.params, "opt_state": self.opt_state,
            "model_state": self.model_state, "rng": self.rng}

  def from_checkpoint(self, tree: dict) -> "TrainState":
    return self.replace(**tree)


def param_count(params) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def unfreeze(x):
  return flax.core.unfreeze(x) if isinstance(x, flax.core.FrozenDict) else x
