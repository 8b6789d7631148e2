"""JAX's persistent compilation cache, on by default for every training run.

A compiled train step is written to a folder on disk and read back by the next
process that compiles the same program (same HLO, same JAX/XLA version, same
device kind), so a rerun, a resumed run or a return to an earlier ELA skip set
does not compile again. On the H200 the first step of a layer-attention
ResNet-56 took up to 195 s, nearly all of it compilation.

Folder (``cache_dir``): ``config.compilation_cache_dir`` if set, else
``$AILA_CACHE_DIR/jax_compilation_cache`` if ``AILA_CACHE_DIR`` is set, else
``~/.cache/aila_jax/jax_compilation_cache``. ``config.compilation_cache =
False`` switches it off. Programs that compiled in less than
:data:`MIN_COMPILE_SECONDS` are not written. Entries are never evicted by
us: delete the folder to reclaim the space. The CPU backend may not serialise
every executable; then the cache simply misses.
"""

from __future__ import annotations

import os
import pathlib

import jax

from aila_jax.train import config_check

MIN_COMPILE_SECONDS = 0.2  # jax's default is 1 s; a CIFAR eval step compiles in about that

config_check.register_config_keys({
    "compilation_cache": (bool, None, "a bool (JAX's persistent compilation cache on/off)"),
    "compilation_cache_dir": ((str, type(None)), None, "a folder, or None for the default cache folder"),
})


def default_cache_dir() -> pathlib.Path:
  """``$AILA_CACHE_DIR/jax_compilation_cache``, else ``~/.cache/aila_jax/jax_compilation_cache``."""
  base = os.environ.get("AILA_CACHE_DIR")
  root = pathlib.Path(base) if base else pathlib.Path.home() / ".cache" / "aila_jax"
  return root / "jax_compilation_cache"


def enable(config=None) -> pathlib.Path | None:
  """Turns the persistent cache on as ``config`` says (default on); returns the folder, or None when off.

  Call before the first compilation of the process: JAX opens the cache once,
  at its first compile, and keeps that folder for the rest of the process.
  """
  get = (lambda k, d: config.get(k, d)) if config is not None else (lambda k, d: d)
  if not get("compilation_cache", True):
    return None
  folder = pathlib.Path(get("compilation_cache_dir", None) or default_cache_dir()).expanduser()
  folder.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder
