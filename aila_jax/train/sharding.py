"""Device mesh and shardings: batch split over the ``data`` axis, state replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aila_jax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over every device of every process (``data`` axis).

  A model axis can be added later by reshaping ``devices``; the trainer only
  names the data axis.
  """
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
  """Several batches stacked on a leading axis ``[K, B, ...]``: K whole, the batch split over ``data``."""
  return NamedSharding(mesh, P(None, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_divisible(batch_size: int, mesh: Mesh, *, key: str) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(f"config.{key}: {batch_size} is not divisible by the {n} devices of the mesh; "
                      f"use a multiple of {n}")


def to_global(local_batch: dict, sharding: NamedSharding) -> dict:
  """Each process's numpy share of a batch -> one global ``jax.Array`` per field."""
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
