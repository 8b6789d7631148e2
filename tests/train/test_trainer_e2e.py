"""End to end on configs/testing.py: train, kill -9, resume exactly; NaN stop; corrupt checkpoint fallback."""
import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from aila_jax.train import NonFiniteLossError, train_and_evaluate
from aila_jax.train.checkpoint import load_checkpoint
from aila_jax.train.metrics import read_metrics
from helpers import REPO, make_testing_config

TIMING_KEYS = ("train/steps_per_sec", "eval/seconds")


def _comparable(rows):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _train_cmd(workdir, data_dir, *extra):
  return [sys.executable, str(REPO / "train.py"), "--config=" + str(REPO / "configs" / "testing.py"),
          f"--workdir={workdir}", f"--config.data_dir={data_dir}", "--config.progress=False", *extra]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_dir):
  """An uninterrupted run of configs/testing.py (8 CPU devices, sharded batch)."""
  workdir = tmp_path_factory.mktemp("reference")
  result = train_and_evaluate(make_testing_config(data_dir), workdir)
  return workdir, result


def test_make_testing_config_trains_and_checkpoints(reference_run):
  workdir, result = reference_run
  assert jax.device_count() == 8
  assert result["step"] == 300
  assert result["eval/accuracy"] > 0.8  # a 32-unit MLP after 300 steps of MNIST
  assert result["eval/count"] == 10000
  assert 0 < result["first_step_seconds"] < result["train_seconds"]  # compilation, reported apart
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [100, 200, 300]
  rows = read_metrics(workdir)
  assert all("step" in r for r in rows)
  assert {"train/loss", "train/accuracy", "train/grad_norm", "train/learning_rate"} <= set(rows[0])
  assert any("eval/accuracy" in r for r in rows)
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  step, state, data = load_checkpoint(workdir)
  assert step == 300 and int(state["step"]) == 300
  chex.assert_shape(state["params"]["dense_0"]["kernel"], (784, 32))
  assert "next_index" in json.dumps(data)


def test_sigkill_then_resume_equals_uninterrupted(reference_run, tmp_path, data_dir):
  ref_dir, _ = reference_run
  workdir = tmp_path / "killed"
  # A longer run than the reference's 300 steps would make this slow; instead run the same config,
  # slowed by no checkpoint waiting: kill as soon as the first checkpoint is on disk.
  env = dict(os.environ)
  proc = subprocess.Popen(_train_cmd(workdir, data_dir), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if (workdir / "checkpoints" / "100").exists():
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.01)
  proc.wait(timeout=60)
  out = proc.stdout.read().decode()
  assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way:\n{out[-3000:]}"
  done = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
  assert max(done) < 300, "killed after the end: nothing left to resume"
  resumed = subprocess.run(_train_cmd(workdir, data_dir), env=env, capture_output=True, text=True,
                           timeout=300)
  assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
  assert "resumed from the checkpoint at step" in resumed.stdout
  _, ref_state, _ = load_checkpoint(ref_dir)
  _, state, _ = load_checkpoint(workdir)
  chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(ref_state))
  assert _comparable(read_metrics(workdir)) == _comparable(read_metrics(ref_dir))


def test_nonfinite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, data_dir):
  workdir = tmp_path / "nan"
  train_and_evaluate(make_testing_config(data_dir, num_train_steps=100), workdir)
  config = make_testing_config(data_dir, num_train_steps=300, **{"optimizer.learning_rate": 1e35,
                                                            "schedule.name": "constant"})
  with pytest.raises(NonFiniteLossError, match=r"non-finite training metrics at step 1\d\d:.*"
                                               r"last good checkpoint is step 100"):
    train_and_evaluate(config, workdir)
  step, state, _ = load_checkpoint(workdir)
  assert step == 100
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state["params"]))


def test_corrupted_latest_checkpoint_falls_back_with_warning(tmp_path, data_dir, capsys):
  workdir = tmp_path / "corrupt"
  train_and_evaluate(make_testing_config(data_dir, num_train_steps=200), workdir)
  latest = workdir / "checkpoints" / "200"
  files = [p for p in latest.rglob("*") if p.is_file() and p.stat().st_size > 0
           and "metadata" not in p.name.lower()]
  assert files
  for p in files:  # truncate every data file of the latest checkpoint
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
  capsys.readouterr()
  result = train_and_evaluate(make_testing_config(data_dir, num_train_steps=300), workdir)
  out = capsys.readouterr().out
  assert "checkpoint at step 200 is unreadable" in out
  assert "resumed from the checkpoint at step 100" in out
  assert result["step"] == 300
  assert list((workdir / "corrupt_checkpoints").iterdir())
  step, _, _ = load_checkpoint(workdir)
  assert step == 300


def test_cli_overrides_and_bad_override(tmp_path, data_dir):
  ok = subprocess.run(_train_cmd(tmp_path / "cli", data_dir, "--config.num_train_steps=20",
                                 "--config.checkpoint_every=10", "--config.eval_every=0"),
                      capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr[-3000:]
  assert "done: step 20, eval accuracy" in ok.stdout
  bad = subprocess.run(_train_cmd(tmp_path / "bad", data_dir, "--config.optimizer.name=adamm"),
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0
  assert "config.optimizer.name" in bad.stderr and "adamm" in bad.stderr


def test_bfloat16_compute_trains_with_float32_params(tmp_path, data_dir):
  result = train_and_evaluate(make_testing_config(data_dir, dtype="bfloat16", num_train_steps=60,
                                                  eval_every=0, checkpoint_every=60), tmp_path)
  assert result["eval/accuracy"] > 0.5
  _, state, _ = load_checkpoint(tmp_path)
  assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(state["params"]))


def test_tfds_source_trains_end_to_end(tmp_path):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    result = train_and_evaluate(make_testing_config(tmp_path, data_source="tfds", num_train_steps=4,
                                                    eval_every=0, checkpoint_every=4, eval_batch_size=32),
                                tmp_path / "work")
  assert result["step"] == 4 and result["eval/count"] == 64
