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

**Off on a GPU with CUDA graphs.** Where the train and eval steps are recorded
into CUDA graphs (a GPU backend with ``config.xla_command_buffers`` True, the
default: :mod:`aila_jax.train.xla_options`), the cache is not turned on: a
step read back from it fails at its first run (``cuDNN status 5003`` while XLA
traces a convolution into a graph; the CIFAR DLA on an H100, first seen
2026-12-05 and reproduced 2026-12-06 with a 60-step run: the first process
trains, the second, reading the cache, fails; ``CUDA_MODULE_LOADING=EAGER``
does not help). Those steps compile afresh in each process (the CIFAR DLA
about 28-31 s on an H100); a return to an earlier ELA skip set inside one run
still reuses the compiled step. ``--config.xla_command_buffers=False`` keeps the
cache on (and launches the kernels one by one).
"""

from __future__ import annotations

import os
import pathlib

import jax

from aila_jax.train import config_check, xla_options

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


GPU_GRAPHS_NOTE = ("persistent compilation cache off: the steps are recorded into CUDA graphs "
                   "(config.xla_command_buffers=True), and a step read back from the cache failed at its first run "
                   "(cuDNN status 5003); --config.xla_command_buffers=False keeps the cache")


def conflicts_with_graphs(config=None, backend: str | None = None) -> bool:
  """True where the steps are compiled into CUDA graphs (:func:`xla_options.compiler_options` gives options:
  a GPU backend, ``config.xla_command_buffers`` not False): then :func:`enable` leaves the cache off."""
  return xla_options.compiler_options(config, backend) is not None


def enable(config=None, backend: str | None = None) -> pathlib.Path | None:
  """Turns the persistent cache on as ``config`` says (default on); returns the folder, or None when off
  (``config.compilation_cache`` False, or :func:`conflicts_with_graphs`: see the module's docstring).

  Call before the first compilation of the process and after ``jax.distributed`` is set up (it asks for
  the backend): JAX opens the cache once, at its first compile, and keeps that folder for the rest of the
  process.
  """
  get = (lambda k, d: config.get(k, d)) if config is not None else (lambda k, d: d)
  if not get("compilation_cache", True):
    return None
  if conflicts_with_graphs(config, backend):
    return None
  folder = pathlib.Path(get("compilation_cache_dir", None) or default_cache_dir()).expanduser()
  folder.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder
