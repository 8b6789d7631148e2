r"""Checkpoint averaging ("Attention Is All You Need", section 6.1).

The paper evaluates the base models on the average of the last 5 checkpoints
(written at 10-minute intervals) and the big models on the last 20:

.. math::

   \bar\theta = \frac{1}{n} \sum_{k=1}^{n} \theta_{s_k}

where :math:`s_1 < \dots < s_n` are the last ``n`` saved steps. The trainer
keeps ``config.keep_checkpoints`` of them, so set that to at least ``n``.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from aila_jax.train import checkpoint

__all__ = ["average_checkpoints", "checkpoint_steps"]


def checkpoint_steps(workdir: str | pathlib.Path) -> list[int]:
  """The saved steps of ``workdir``'s checkpoints, ascending (finished saves only)."""
  directory = pathlib.Path(workdir) / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(f"{directory} does not exist: no checkpoints in workdir {workdir}")
  # orbax writes into '<step>.orbax-checkpoint-tmp-*' and renames when done.
  return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def average_checkpoints(workdir: str | pathlib.Path, n: int) -> dict:
  """The element-wise mean of the ``params`` of the last ``n`` checkpoints.

  Accumulates in float64 and returns arrays of each parameter's own dtype
  (numpy arrays, in the tree of the checkpoint's ``params``).

  Args:
    workdir: a trainer workdir (holding ``checkpoints/``).
    n: how many of the newest checkpoints to average (>= 1).

  Returns:
    The averaged parameter tree, ready for ``{'params': ...}``.

  Raises:
    ValueError: ``n`` < 1, or fewer than ``n`` checkpoints in ``workdir``.
    FileNotFoundError: no checkpoint directory.
  """
  if not isinstance(n, int) or isinstance(n, bool) or n < 1:
    raise ValueError(f"n must be an int >= 1 (checkpoints to average); got {n!r}")
  steps = checkpoint_steps(workdir)
  if len(steps) < n:
    raise ValueError(
        f"asked to average the last {n} checkpoints, but {workdir} holds {len(steps)} "
        f"(steps {steps}); train with config.keep_checkpoints >= {n}.")
  total, dtypes = None, None
  for step in steps[-n:]:
    _, state, _ = checkpoint.load_checkpoint(workdir, step)
    params = jax.tree_util.tree_map(np.asarray, state["params"])
    if total is None:
      dtypes = jax.tree_util.tree_map(lambda x: x.dtype, params)
      total = jax.tree_util.tree_map(lambda x: x.astype(np.float64), params)
    else:
      if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(total):
        raise ValueError(f"checkpoint at step {step} of {workdir} has a different parameter "
                         f"tree from step {steps[-n]}; cannot average them.")
      def add(t, x, step=step):
        if t.shape != x.shape:
          raise ValueError(f"checkpoint at step {step} of {workdir} has a parameter of shape "
                           f"{x.shape} where step {steps[-n]} has {t.shape}; cannot average.")
        return t + x
      total = jax.tree_util.tree_map(add, total, params)
  return jax.tree_util.tree_map(lambda t, d: (t / n).astype(d), total, dtypes)
