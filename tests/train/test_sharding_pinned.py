"""Pinned sharding layouts (mutation testing): the batch axis split over ``data``, stacked batches split on
their second axis, divisibility by the mesh's device count, and to_global's values."""
import jax
import numpy as np
import pytest

from aila_jax.errors import ConfigError
from aila_jax.train import sharding


def _mesh(n):
  assert jax.device_count() >= n
  return sharding.make_mesh(jax.devices()[:n])


def test_batch_and_stacked_and_replicated_shard_shapes():
  mesh = _mesh(4)
  assert mesh.axis_names == (sharding.DATA_AXIS,) and mesh.devices.shape == (4,)
  assert sharding.batch_sharding(mesh).shard_shape((16, 3)) == (4, 3)
  assert sharding.stacked_batch_sharding(mesh).shard_shape((3, 16, 2)) == (3, 4, 2)
  assert sharding.replicated(mesh).shard_shape((16, 3)) == (16, 3)


def test_check_batch_divisible_by_device_count():
  mesh = _mesh(4)
  for ok in (4, 8, 12):
    sharding.check_batch_divisible(ok, mesh, key="batch_size")
  for bad in (2, 6, 10):
    with pytest.raises(ConfigError, match=rf"config.batch_size: {bad} is not divisible by the 4 devices"):
      sharding.check_batch_divisible(bad, mesh, key="batch_size")


def test_to_global_keeps_values_and_splits_rows_in_order():
  mesh = _mesh(4)
  local = {"x": np.arange(24, dtype=np.float32).reshape(8, 3), "y": np.arange(8)}
  g = sharding.to_global(local, sharding.batch_sharding(mesh))
  np.testing.assert_array_equal(np.asarray(g["x"]), local["x"])
  np.testing.assert_array_equal(np.asarray(g["y"]), local["y"])
  by_device = {s.device: np.asarray(s.data) for s in g["y"].addressable_shards}
  for k, d in enumerate(mesh.devices):
    np.testing.assert_array_equal(by_device[d], [2 * k, 2 * k + 1])
