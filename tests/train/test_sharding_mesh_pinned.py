"""Pinned mesh construction (mutation testing): make_mesh keeps the devices' order, and by default spans every
device of every process (jax.devices(), not this process's jax.local_devices())."""
import jax
import numpy as np

from aila_jax.train import sharding


def test_make_mesh_keeps_the_given_devices_in_order():
  devices = jax.devices()[:4][::-1]
  mesh = sharding.make_mesh(devices)
  assert mesh.devices.tolist() == devices and mesh.axis_names == ("data",)
  # row k of a batch lands on the k-th given device
  g = sharding.to_global({"y": np.arange(8)}, sharding.batch_sharding(mesh))
  by_device = {s.device: np.asarray(s.data).tolist() for s in g["y"].addressable_shards}
  assert [by_device[d] for d in devices] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_make_mesh_defaults_to_every_process_s_devices(monkeypatch):
  # stand-in for a two-process run: jax.devices() lists all 8 (in its own order), this process owns 4
  everyone = jax.devices()[::-1]
  monkeypatch.setattr(jax, "devices", lambda *a, **k: list(everyone))
  monkeypatch.setattr(jax, "local_devices", lambda *a, **k: list(everyone[:4]))
  mesh = sharding.make_mesh()
  assert mesh.devices.tolist() == everyone and mesh.shape == {"data": len(everyone)}
