"""config.steps_per_call: K updates per jitted call (lax.scan) train exactly like one update per call."""

import jax
import numpy as np

from aila_jax.train import train_and_evaluate
from aila_jax.train.checkpoint import load_checkpoint
from aila_jax.train.metrics import read_metrics
from helpers import make_testing_config

SETTINGS = {"num_train_steps": 14, "log_every": 4, "checkpoint_every": 6, "eval_every": 0}


def _run(tmp_path, data_dir, k):
  workdir = tmp_path / f"k{k}"
  result = train_and_evaluate(make_testing_config(data_dir, steps_per_call=k, **SETTINGS), workdir)
  return workdir, result


def test_scanned_calls_equal_single_steps(tmp_path, data_dir):
  # checkpoints every 6 steps and 14 steps in all: calls of 4 (steps 1-4, 9-12) mixed with single steps
  one_dir, one = _run(tmp_path, data_dir, 1)
  four_dir, four = _run(tmp_path, data_dir, 4)
  assert one["step"] == four["step"] == 14 and four["first_call_steps"] == 4 and one["first_call_steps"] == 1
  rows = lambda d: [(r["step"], r["train/loss"], r["train/learning_rate"]) for r in read_metrics(d)
                    if "train/loss" in r]
  assert [r[0] for r in rows(four_dir)] == [4, 6, 8, 12, 14] == [r[0] for r in rows(one_dir)]
  np.testing.assert_allclose(np.array(rows(four_dir))[:, 1:], np.array(rows(one_dir))[:, 1:], rtol=1e-5)
  np.testing.assert_allclose(four["eval/loss"], one["eval/loss"], rtol=1e-5)
  assert sorted(int(p.name) for p in (four_dir / "checkpoints").iterdir() if p.name.isdigit()) == [6, 12, 14]
  (_, s1, _), (_, s4, _) = load_checkpoint(one_dir), load_checkpoint(four_dir)
  for a, b in zip(jax.tree.leaves(s1["params"]), jax.tree.leaves(s4["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
