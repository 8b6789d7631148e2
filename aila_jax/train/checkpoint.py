"""Checkpoints with orbax ``CheckpointManager`` (the only orbax importer of aila_jax).

A checkpoint holds the train state (params, optimizer state, step, RNG,
mutable collections) and the data iterator's state, so a resumed run continues
exactly where the saved one was. orbax writes each step to a temporary folder
and renames it when complete, so a kill mid-save leaves the previous
checkpoints intact. If the latest checkpoint is unreadable (truncated or
corrupted files), :meth:`Checkpointer.restore_latest` warns, moves it aside to
``<workdir>/corrupt_checkpoints/`` and falls back to the one before.
"""

from __future__ import annotations

import pathlib
import shutil
import time
from typing import Any

from absl import logging
import numpy as np
import orbax.checkpoint as ocp

from aila_jax.errors import ConfigError, DataError


class IncompatibleCheckpointError(ConfigError):
  """A readable checkpoint whose tree or shapes do not match the state of the current config."""


class UnreadableCheckpointError(DataError):
  """No checkpoint of the folder could be read; none was moved."""


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _shapes(tree: Any) -> dict[str, tuple]:
  leaves = __import__("jax").tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))[0]
  return {_path_str(p): tuple(np.shape(v)) for p, v in leaves}


def tree_differences(saved: Any, target: Any, *, limit: int = 12) -> list[str]:
  """Human-readable differences between a checkpoint's tree (metadata) and the target tree:
  arrays only in one of them and arrays whose shapes differ (at most ``limit`` lines)."""
  a, b = _shapes(saved), _shapes(target)
  lines = [f"{k}: in the checkpoint {a[k]}, in this config's state {b[k]}"
           for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
  lines += [f"{k}: in the checkpoint {a[k]}, not in this config's state" for k in sorted(a.keys() - b.keys())]
  lines += [f"{k}: in this config's state {b[k]}, not in the checkpoint" for k in sorted(b.keys() - a.keys())]
  if len(lines) > limit:
    lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
  return lines


class Checkpointer:
  """Saves every ``save_every`` steps (and when forced), keeps the last ``keep``."""

  def __init__(self, directory: str | pathlib.Path, *, keep: int = 3):
    self.directory = pathlib.Path(directory).absolute()
    self.keep = keep
    self._manager = self._make_manager()

  def _make_manager(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                           enable_async_checkpointing=False)
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state_tree: Any, data_state: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state_tree), data=ocp.args.JsonSave(data_state)), force=True)
    self._manager.wait_until_finished()

  def restore(self, step: int, target_tree: Any) -> tuple[Any, dict]:
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target_tree), data=ocp.args.JsonRestore()))
    return restored["state"], restored["data"]

  def saved_tree(self, step: int) -> Any:
    """The tree (shapes and dtypes) of checkpoint ``step``'s state, read from its metadata only."""
    meta = self._manager.item_metadata(step)["state"]
    return getattr(meta, "tree", meta)

  def restore_latest(self, target_tree: Any) -> tuple[int, Any, dict] | None:
    """Restores the newest readable checkpoint; None if the folder holds none.

    Raises :class:`IncompatibleCheckpointError` (before anything is moved) when
    a readable checkpoint's tree or shapes differ from ``target_tree``, and
    :class:`UnreadableCheckpointError` (moving nothing) when none is readable.
    Unreadable ones newer than the restored one are moved to
    ``corrupt_checkpoints/``.
    """
    unreadable: list[tuple[int, str]] = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      meta_error = None
      try:
        saved = self.saved_tree(step)
      except Exception as e:  # pylint: disable=broad-except
        saved, meta_error = None, e
      if saved is not None:
        diff = tree_differences(saved, target_tree)
        if diff:
          raise IncompatibleCheckpointError(
              f"the checkpoint at step {step} in {self.directory} does not fit the model and optimizer "
              "this config builds (the config changed since it was written):\n  " + "\n  ".join(diff))
      try:
        tree, data = self.restore(step, target_tree)
      except Exception as e:  # pylint: disable=broad-except
        err = meta_error or e
        unreadable.append((step, f"{type(err).__name__}: {str(err)[:300]}"))
        logging.warning("Checkpoint at step %d in %s is unreadable (%s).", step, self.directory, unreadable[-1][1])
        print(f"WARNING: checkpoint at step {step} is unreadable ({type(err).__name__}); "
              "falling back to the previous one.", flush=True)
        continue
      for bad, _ in unreadable:
        moved = self._quarantine(bad)
        print(f"WARNING: moved the unreadable checkpoint at step {bad} to {moved}.", flush=True)
      return step, tree, data
    if unreadable:
      raise UnreadableCheckpointError(
          f"no checkpoint in {self.directory} could be read; nothing was moved or deleted:\n  " +
          "\n  ".join(f"step {st}: {msg}" for st, msg in unreadable) +
          "\nMove the folder aside (or use a new --workdir) to start from step 0.")
    return None

  def _quarantine(self, step: int) -> pathlib.Path:
    src = self.directory / str(step)
    dst_root = self.directory.parent / "corrupt_checkpoints"
    dst_root.mkdir(parents=True, exist_ok=True)
    dst = dst_root / f"{step}-{int(time.time())}"
    if src.exists():
      shutil.move(str(src), str(dst))
    self._manager.close()
    self._manager = self._make_manager()
    return dst

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def load_checkpoint(workdir: str | pathlib.Path, step: int | None = None) -> tuple[int, dict, dict]:
  """Reads a checkpoint of ``workdir`` without a model: ``(step, state_tree, data_state)``.

  ``state_tree`` holds numpy-convertible arrays: ``params``, ``opt_state``,
  ``model_state``, ``step``, ``rng``. For notebooks and tests.
  """
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(f"{directory} does not exist: no checkpoints in workdir {workdir}")
  handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}
  with ocp.CheckpointManager(directory, item_handlers=handlers) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    # Restore onto this process's first device, whatever topology wrote the checkpoint.
    import jax  # pylint: disable=g-import-not-at-top
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    metadata = manager.item_metadata(step)["state"]
    target = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata,
        is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
  return step, restored["state"], restored["data"]
