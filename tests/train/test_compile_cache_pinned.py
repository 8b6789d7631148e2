"""Pins of aila_jax.train.compile_cache.enable: the folder it picks and the JAX settings it writes."""

import pathlib

from aila_jax.train import compile_cache


def _enable(monkeypatch, config, backend="cpu"):
  calls = {}
  monkeypatch.setattr(compile_cache.jax.config, "update", lambda key, value: calls.__setitem__(key, value))
  return compile_cache.enable(config, backend=backend), calls


def test_settings_written_when_on(monkeypatch, tmp_path):
  # pins the three JAX settings: the folder, a 0.2 s minimum compile time (jax's default is 1 s), no size minimum
  folder, calls = _enable(monkeypatch, {"compilation_cache_dir": str(tmp_path / "cc")})
  assert folder == tmp_path / "cc" and folder.is_dir()
  assert calls == {"jax_compilation_cache_dir": str(tmp_path / "cc"),
                   "jax_persistent_cache_min_compile_time_secs": 0.2,
                   "jax_persistent_cache_min_entry_size_bytes": 0}


def test_folder_is_user_expanded_and_created(monkeypatch, tmp_path):
  # pins "~" expansion of config.compilation_cache_dir and that a missing folder (parents too) is made
  monkeypatch.setenv("HOME", str(tmp_path))
  folder, calls = _enable(monkeypatch, {"compilation_cache_dir": "~/a/b/cache"})
  assert folder == tmp_path / "a" / "b" / "cache" and folder.is_dir()
  assert calls["jax_compilation_cache_dir"] == str(tmp_path / "a" / "b" / "cache")


def test_default_folder_from_aila_cache_dir(monkeypatch, tmp_path):
  # pins the folder used when config.compilation_cache_dir is None: $AILA_CACHE_DIR/jax_compilation_cache
  monkeypatch.setenv("AILA_CACHE_DIR", str(tmp_path / "root"))
  folder, calls = _enable(monkeypatch, {"compilation_cache_dir": None})
  assert folder == pathlib.Path(tmp_path / "root" / "jax_compilation_cache") and folder.is_dir()
  folder2, _ = _enable(monkeypatch, None)  # no config at all: on, same default folder
  assert folder2 == folder
