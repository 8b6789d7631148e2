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
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every ``save_every`` steps (and when forced), keeps the last ``keep``."""

  def __init__(self, directory: str | pathlib.Path, *, keep: int = 3):
    self.directory = pathlib.Path(directory).absolute()
    self.keep = keep
    self._manager = self._make_manager()

  def _make_manager(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

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

  def restore_latest(self, target_tree: Any) -> tuple[int, Any, dict] | None:
    """Restores the newest readable checkpoint; None if there is none."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        tree, data = self.restore(step, target_tree)
      except Exception as e:  # pylint: disable=broad-except
        moved = self._quarantine(step)
        logging.warning("Checkpoint at step %d in %s is unreadable (%s: %s); moved it to %s and "
                        "falling back to the previous checkpoint.", step, self.directory,
                        type(e).__name__, str(e)[:300], moved)
        print(f"WARNING: checkpoint at step {step} is unreadable ({type(e).__name__}); "
              f"moved to {moved}; falling back to the previous one.", flush=True)
        continue
      return step, tree, data
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
