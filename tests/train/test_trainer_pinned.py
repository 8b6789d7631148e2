"""Pins of the training loop (aila_jax.train.trainer) on tiny runs: which steps log, evaluate and checkpoint,
the learning rate logged per row (hand computed from the linear warm-up), steps_per_call chunking, and resume."""

import numpy as np
import pytest

from aila_jax.train import train_and_evaluate
from aila_jax.train.metrics import read_metrics
from helpers import make_testing_config

# schedule 'linear' with a 10-step warm-up to 1e-3: lr(s) = 1e-4 * s for s <= 10; step s (1-based) uses lr(s - 1)
LINEAR = {"schedule.name": "linear", "schedule.warmup_steps": 10, "optimizer.learning_rate": 1e-3}


def _lr(*steps):
  return float(np.mean([1e-4 * (s - 1) for s in steps]))


def _checkpoints(workdir):
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def cadence_run(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("cadence")
  config = make_testing_config(data_dir, num_train_steps=7, log_every=2, eval_every=3, checkpoint_every=5, **LINEAR)
  return workdir, train_and_evaluate(config, workdir)


def test_log_eval_and_checkpoint_steps(cadence_run):
  # pins the cadence: log at multiples of log_every and at the last step (a checkpoint also flushes a row);
  # eval at multiples of eval_every and once at the end; checkpoints at multiples of checkpoint_every and at the end
  workdir, result = cadence_run
  rows = read_metrics(workdir)
  assert [r["step"] for r in rows if "train/loss" in r] == [2, 4, 5, 6, 7]
  assert [r["step"] for r in rows if "eval/loss" in r] == [3, 6, 7]
  assert _checkpoints(workdir) == [5, 7]
  assert result["step"] == 7 and result["eval/count"] == 10000.0
  assert result["first_call_steps"] == 1


def test_logged_learning_rate_is_the_mean_over_the_rows_steps(cadence_run):
  # pins schedule(state.step) (step s uses lr(s - 1)) and the mean over the steps since the previous row
  workdir, _ = cadence_run
  got = [(r["step"], r["train/learning_rate"]) for r in read_metrics(workdir) if "train/loss" in r]
  want = [(2, _lr(1, 2)), (4, _lr(3, 4)), (5, _lr(5)), (6, _lr(6)), (7, _lr(7))]
  assert [s for s, _ in got] == [s for s, _ in want]
  np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-5, atol=1e-12)


def test_result_holds_the_last_steps_train_row_and_the_final_eval(cadence_run):
  # pins the returned metrics: the train row of the last step (7, not the log step 6) and the eval at step 7
  workdir, result = cadence_run
  rows = read_metrics(workdir)
  last_train = [r for r in rows if "train/loss" in r][-1]
  last_eval = [r for r in rows if "eval/loss" in r][-1]
  assert last_train["step"] == 7 and last_eval["step"] == 7
  assert result["train/loss"] == last_train["train/loss"]
  assert result["train/learning_rate"] == pytest.approx(_lr(7), rel=1e-5)
  assert result["eval/loss"] == last_eval["eval/loss"]


def test_a_call_may_end_exactly_at_the_last_step(tmp_path, data_dir):
  # pins steps_per_call chunking: 3 steps, K=3 -> one call of 3 steps (steps 1..3, row at 3, lr mean of lr(0..2))
  config = make_testing_config(data_dir, num_train_steps=3, log_every=3, eval_every=0, checkpoint_every=100,
                               steps_per_call=3, **LINEAR)
  result = train_and_evaluate(config, tmp_path)
  assert result["first_call_steps"] == 3 and result["step"] == 3
  rows = [r for r in read_metrics(tmp_path) if "train/loss" in r]
  assert [r["step"] for r in rows] == [3]
  assert rows[0]["train/learning_rate"] == pytest.approx(_lr(1, 2, 3), rel=1e-5)
  assert _checkpoints(tmp_path) == [3]


def test_a_resumed_run_keeps_the_rows_before_its_checkpoint(tmp_path, data_dir):
  # pins the resume marker at the restored step: rows 1..2 of the first run stay, 3..4 come from the second
  first = make_testing_config(data_dir, num_train_steps=2, log_every=1, eval_every=0, checkpoint_every=2, **LINEAR)
  train_and_evaluate(first, tmp_path)
  second = make_testing_config(data_dir, num_train_steps=4, log_every=1, eval_every=0, checkpoint_every=2, **LINEAR)
  result = train_and_evaluate(second, tmp_path)
  assert result["step"] == 4
  rows = [r for r in read_metrics(tmp_path) if "train/loss" in r]
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  assert _checkpoints(tmp_path) == [2, 4]


def test_a_fresh_run_supersedes_old_rows_in_its_workdir(tmp_path, data_dir):
  # pins the step-0 resume marker of a run without checkpoints: rows left by an earlier run are not its history
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": 9.0}\n{"step": 5, "train/loss": 9.0}\n')
  config = make_testing_config(data_dir, num_train_steps=2, log_every=1, eval_every=0, checkpoint_every=2, **LINEAR)
  train_and_evaluate(config, tmp_path)
  rows = [r for r in read_metrics(tmp_path) if "train/loss" in r]
  assert [r["step"] for r in rows] == [1, 2] and all(r["train/loss"] != 9.0 for r in rows)


def test_calls_of_several_steps_never_jump_over_an_eval_step(tmp_path, data_dir):
  # pins steps_per_call chunking around evals: K=3, eval every 2 steps -> evals at 2 and 4 and the final one at 6
  config = make_testing_config(data_dir, num_train_steps=6, log_every=6, eval_every=2, checkpoint_every=100,
                               steps_per_call=3, **LINEAR)
  result = train_and_evaluate(config, tmp_path)
  assert result["step"] == 6
  assert [r["step"] for r in read_metrics(tmp_path) if "eval/loss" in r] == [2, 4, 6]
