"""The number of devices changes how a step is computed, not what it computes (issue 20, item 2).

``train_and_evaluate`` on configs/testing.py (6 steps, seed 0, global batch 32) with its mesh over 1 device and
over 2 devices (the same global batch, split 16 + 16) ends with the same parameters; a checkpoint written on
2 devices restores and continues on 1, and the other way round, to the same parameters as the uninterrupted
runs. The mesh is narrowed by wrapping ``sharding.make_mesh`` (the trainer takes every device it sees, as a
process started with ``CUDA_VISIBLE_DEVICES=0`` or ``0,1`` would), in one process, so the four runs share one
start-up.
"""
import shutil

import chex
import jax
import pytest

from aila_jax.train import sharding, train_and_evaluate
from aila_jax.train.checkpoint import load_checkpoint
from helpers import make_testing_config

STEPS, SAVE = 6, 3


def _run(monkeypatch, workdir, data_dir, num_devices):
  make_mesh = sharding.make_mesh
  monkeypatch.setattr(sharding, "make_mesh", lambda devices=None: make_mesh(jax.devices()[:num_devices]))
  config = make_testing_config(data_dir, num_train_steps=STEPS, checkpoint_every=SAVE, log_every=SAVE,
                               eval_every=0, eval_batch_size=5000)
  result = train_and_evaluate(config, workdir)
  monkeypatch.setattr(sharding, "make_mesh", make_mesh)
  step, state, _ = load_checkpoint(workdir)
  assert step == STEPS
  return result, jax.device_get(state)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
  """Uninterrupted runs on 1 and 2 devices, then each one's step-3 checkpoint continued on the other count."""
  mp = pytest.MonkeyPatch()
  out, dirs = {}, {}
  try:
    for n in (1, 2):
      dirs[n] = tmp_path_factory.mktemp(f"dev{n}") / "w"
      out[n] = _run(mp, dirs[n], data_dir, n)
    out["step3"] = jax.device_get(load_checkpoint(dirs[1], SAVE)[1])
    for written, continued in ((2, 1), (1, 2)):
      dst = tmp_path_factory.mktemp(f"dev{written}to{continued}") / "w"
      shutil.copytree(dirs[written], dst)
      shutil.rmtree(dst / "checkpoints" / str(STEPS))  # keep only the step-3 checkpoint
      out[(written, continued)] = _run(mp, dst, data_dir, continued)
  finally:
    mp.undo()
  return out


def test_one_and_two_devices_end_with_the_same_parameters(runs):
  (r1, s1), (r2, s2) = runs[1], runs[2]
  assert jax.device_count() >= 2
  assert r1["step"] == r2["step"] == STEPS
  chex.assert_trees_all_close(s1["params"], s2["params"], rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(s1["opt_state"], s2["opt_state"], rtol=1e-5, atol=1e-6)
  assert abs(r1["eval/loss"] - r2["eval/loss"]) < 1e-4
  # the last 3 steps moved the parameters by far more than the tolerance
  with pytest.raises(AssertionError):
    chex.assert_trees_all_close(runs["step3"]["params"], s1["params"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("written,continued", [(2, 1), (1, 2)])
def test_checkpoint_restores_on_the_other_device_count(runs, written, continued):
  result, state = runs[(written, continued)]
  assert result["step"] == STEPS
  _, reference = runs[continued]
  chex.assert_trees_all_close(state["params"], reference["params"], rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(state["opt_state"], reference["opt_state"], rtol=1e-5, atol=1e-6)
  assert int(state["step"]) == STEPS
