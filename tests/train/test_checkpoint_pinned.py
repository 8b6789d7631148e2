"""Pinned Checkpointer behaviour (mutation testing) on a tiny tree: the newest readable checkpoint is
restored, unreadable newer ones are moved aside, none readable raises and moves nothing, shape changes
raise before anything is moved, ``keep`` prunes the oldest, load_checkpoint honours ``step``."""
import numpy as np
import pytest

from aila_jax.train import checkpoint


def _tree(v, n=3):
  return {"w": np.full((n,), float(v), np.float32), "b": {"c": np.arange(2, dtype=np.int32) + int(v)}}


def _save(directory, steps, keep=10):
  ck = checkpoint.Checkpointer(directory, keep=keep)
  for s in steps:
    ck.save(s, _tree(s), {"iterator": {"next_index": 10 * s}})
  return ck


def _corrupt(step_dir):
  files = [p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0
           and "metadata" not in p.name.lower()]
  assert files
  for p in files:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def test_restores_newest_readable_and_quarantines_the_unreadable_newer(tmp_path, capsys):
  d = tmp_path / "checkpoints"
  ck = _save(d, [1, 2, 3])
  _corrupt(d / "3")
  step, tree, data = ck.restore_latest(_tree(0))
  assert step == 2
  np.testing.assert_array_equal(tree["w"], [2.0, 2.0, 2.0])
  np.testing.assert_array_equal(tree["b"]["c"], [2, 3])
  assert data == {"iterator": {"next_index": 20}}
  assert ck.all_steps() == [1, 2]
  assert [p.name.split("-")[0] for p in (tmp_path / "corrupt_checkpoints").iterdir()] == ["3"]
  assert "checkpoint at step 3 is unreadable" in capsys.readouterr().out
  ck.close()


def test_none_readable_raises_and_moves_nothing(tmp_path):
  d = tmp_path / "checkpoints"
  ck = _save(d, [1, 2])
  _corrupt(d / "1")
  _corrupt(d / "2")
  with pytest.raises(checkpoint.UnreadableCheckpointError):
    ck.restore_latest(_tree(0))
  assert sorted(p.name for p in d.iterdir() if p.name.isdigit()) == ["1", "2"]
  assert not (tmp_path / "corrupt_checkpoints").exists()
  ck.close()


def test_shape_change_raises_incompatible_before_moving(tmp_path):
  d = tmp_path / "checkpoints"
  ck = _save(d, [1])
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r"w: in the checkpoint \(3,\), in this "
                     r"config's state \(4,\)"):
    ck.restore_latest(_tree(0, n=4))
  assert ck.all_steps() == [1]
  ck.close()


def test_tree_differences_hand_case():
  saved = {"a": np.zeros((2, 3)), "b": np.zeros((4,)), "same": np.zeros((5,))}
  target = {"a": np.zeros((2, 4)), "c": np.zeros((1,)), "same": np.zeros((5,))}
  assert checkpoint.tree_differences(saved, target) == [
      "a: in the checkpoint (2, 3), in this config's state (2, 4)",
      "b: in the checkpoint (4,), not in this config's state",
      "c: in this config's state (1,), not in the checkpoint"]
  assert checkpoint.tree_differences(saved, saved) == []


def test_keep_prunes_the_oldest(tmp_path):
  ck = _save(tmp_path / "checkpoints", [1, 2, 3, 4], keep=2)
  assert ck.all_steps() == [3, 4] and ck.latest_step() == 4
  ck.close()


def test_load_checkpoint_honours_the_step(tmp_path):
  _save(tmp_path / "checkpoints", [1, 2]).close()
  step, tree, data = checkpoint.load_checkpoint(tmp_path, 1)
  assert step == 1 and data == {"iterator": {"next_index": 10}}
  np.testing.assert_array_equal(np.asarray(tree["w"]), [1.0, 1.0, 1.0])
  assert checkpoint.load_checkpoint(tmp_path)[0] == 2
