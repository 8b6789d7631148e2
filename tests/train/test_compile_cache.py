"""The persistent compilation cache: on by default, a second process reads the first one's executable."""

import os
import pathlib
import subprocess
import sys

import pytest

from aila_jax.errors import ConfigError
from aila_jax.train import compile_cache, config_check

_CHILD = r"""
import sys, jax, jax.numpy as jnp
from aila_jax.train import compile_cache
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
folder = compile_cache.enable({"compilation_cache_dir": sys.argv[1]})
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # this tiny program compiles in ms
x = jnp.arange(12.0).reshape(3, 4)
print(float(jax.jit(lambda a: jnp.tanh(a @ a.T).sum() + 0.125)(x)))
print("HITS", sum(e == "/jax/compilation_cache/cache_hits" for e in events))
"""


def _run(folder):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one CPU device, like a training process
  out = subprocess.run([sys.executable, "-c", _CHILD, str(folder)], capture_output=True, text=True, env=env,
                       timeout=120, check=True).stdout.split()
  return float(out[0]), int(out[out.index("HITS") + 1])


def test_second_process_hits_the_cache(tmp_path):
  folder = tmp_path / "cache"
  value, hits = _run(folder)
  files = sorted(p.name for p in folder.rglob("*") if p.is_file())
  assert hits == 0 and files, "the first process compiles and writes an entry"
  value2, hits2 = _run(folder)
  assert hits2 >= 1, "a fresh process with the same programs reads them back"
  assert value2 == value
  assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == files  # nothing new written


def test_default_folder_and_switch(monkeypatch, tmp_path):
  monkeypatch.setenv("AILA_CACHE_DIR", str(tmp_path))
  assert compile_cache.default_cache_dir() == tmp_path / "jax_compilation_cache"
  monkeypatch.delenv("AILA_CACHE_DIR")
  assert compile_cache.default_cache_dir() == pathlib.Path.home() / ".cache/aila_jax/jax_compilation_cache"
  assert compile_cache.enable({"compilation_cache": False}) is None


def test_config_keys_are_checked():
  from configs import testing  # pylint: disable=import-outside-toplevel
  config = testing.get_config()
  with config.ignore_type():  # typed in configs/default.py; a dict-built config can hold anything
    config.compilation_cache = "yes"
  with pytest.raises(ConfigError, match="config.compilation_cache"):
    config_check.check_config(config)


def test_off_where_the_steps_are_cuda_graphs(monkeypatch, tmp_path):
  """On a GPU with config.xla_command_buffers (default True) a step read back from the cache failed at its first
  run (cuDNN 5003, H100): the cache stays off there, and on with the graphs off or on other backends."""
  calls = []
  monkeypatch.setattr(compile_cache.jax.config, "update", lambda key, value: calls.append((key, value)))
  folder = str(tmp_path / "cc")
  assert compile_cache.enable({"compilation_cache_dir": folder}, backend="gpu") is None
  assert compile_cache.enable({"compilation_cache_dir": folder, "xla_command_buffers": True}, backend="cuda") is None
  assert calls == [] and not (tmp_path / "cc").exists()
  assert compile_cache.conflicts_with_graphs({}, backend="gpu")
  assert not compile_cache.conflicts_with_graphs({"xla_command_buffers": False}, backend="gpu")
  assert compile_cache.enable({"compilation_cache_dir": folder, "xla_command_buffers": False},
                              backend="gpu") == tmp_path / "cc"
  assert compile_cache.enable({"compilation_cache_dir": folder}, backend="cpu") == tmp_path / "cc"
  assert calls.count(("jax_compilation_cache_dir", folder)) == 2
