"""Tests for aila_jax.train.averaging.average_checkpoints."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.train import checkpoint
from aila_jax.train.averaging import average_checkpoints, checkpoint_steps


def _params(k):
  return {"dense": {"kernel": jnp.full((3, 2), float(k)), "bias": jnp.arange(2.0) * k},
          "embed": jnp.full((4,), k, jnp.bfloat16)}


def _save(workdir, steps, keep=10):
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=keep)
  for k in steps:
    state = {"step": jnp.asarray(k), "params": _params(k), "opt_state": {}, "model_state": {},
             "rng": jax.random.PRNGKey(0)}
    ckpt.save(k, state, {"iterator": {}})
  ckpt.close()


def test_mean_of_the_last_n(tmp_path):
  _save(tmp_path, [10, 20, 30, 40])
  assert checkpoint_steps(tmp_path) == [10, 20, 30, 40]
  avg = average_checkpoints(tmp_path, 3)  # steps 20, 30, 40
  chex.assert_trees_all_close(avg["dense"], _params(30)["dense"])
  assert avg["embed"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(avg["embed"], np.float32), 30.0)
  chex.assert_trees_all_close(average_checkpoints(tmp_path, 1)["dense"], _params(40)["dense"])
  # Averaging is not taking the latest: a weighted sum would not give 25 for n = 4.
  np.testing.assert_allclose(average_checkpoints(tmp_path, 4)["dense"]["kernel"], 25.0)


def test_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoints in workdir"):
    average_checkpoints(tmp_path, 1)
  _save(tmp_path, [1, 2], keep=2)
  with pytest.raises(ValueError, match=r"last 3 checkpoints, but .* holds 2 \(steps \[1, 2\]\); "
                     r"train with config.keep_checkpoints >= 3"):
    average_checkpoints(tmp_path, 3)
  with pytest.raises(ValueError, match="n must be an int >= 1"):
    average_checkpoints(tmp_path, 0)
