"""Two processes on one machine (4 CPU devices each, gloo collectives): --config.multihost=True.

Each process reads its half of the data and feeds its half of every global batch; the parameters
stay replicated and identical; only process 0 writes metrics. The records each process read (counted
at the source, grain's read-ahead included) are gathered into final_metrics.json: the two processes
read disjoint rows (process p only rows p, p + 2, ...), together at least the 100 global batches.
"""
import json
import re
import os
import socket
import subprocess
import sys

import chex
import jax

from aila_jax.train.checkpoint import load_checkpoint
from aila_jax.train.metrics import read_metrics
from helpers import REPO


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_together(tmp_path, data_dir):
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  procs = []
  for pid in range(2):
    cmd = [sys.executable, str(REPO / "train.py"), "--config=" + str(REPO / "configs" / "testing.py"),
           f"--workdir={tmp_path / 'run'}", f"--config.data_dir={data_dir}", "--config.progress=False",
           "--config.num_train_steps=100", "--config.checkpoint_every=50", "--config.eval_every=0",
           "--config.multihost=True", f"--config.coordinator_address=127.0.0.1:{port}",
           "--config.num_processes=2", f"--config.process_id={pid}"]
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True))
  outs = [p.communicate(timeout=400)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  assert "8 device(s)" in outs[0] and "done: step 100" in outs[0]
  assert "done:" not in outs[1]  # process 1 prints nothing of its own
  step, state, _ = load_checkpoint(tmp_path / "run")
  assert step == 100
  rows = read_metrics(tmp_path / "run")
  assert [r["step"] for r in rows if "train/loss" in r] == [25, 50, 75, 100]
  final = [r for r in rows if "eval/accuracy" in r][-1]
  assert final["eval/count"] == 10000 and final["eval/accuracy"] > 0.7
  assert all(jax.numpy.isfinite(x).all() for x in jax.tree_util.tree_leaves(state["params"]))
  chex.assert_shape(state["params"]["dense_0"]["kernel"], (784, 32))
  # per-process data: each process printed its own count; process 0 recorded both
  local = []
  for pid, out in enumerate(outs):
    m = re.search(rf"process {pid} of 2: read ([\d,]+) training records in this run, ([\d,]+) distinct", out)
    assert m, out[-3000:]
    local.append((int(m[1].replace(",", "")), int(m[2].replace(",", ""))))
  final_metrics = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
  batch, steps = 32, 100
  for pid, (read, distinct) in enumerate(local):
    assert final_metrics[f"data/records_read/p{pid}"] == read
    assert steps * batch // 2 <= distinct <= read  # its half of every global batch, no more than its shard
    assert read % (batch // 2) == 0 and distinct <= 60000 // 2
  assert final_metrics["data/records_read_by_several_processes"] == 0  # disjoint shards
  assert final_metrics["data/distinct_records"] == sum(d for _, d in local) >= steps * batch
  # each process evaluated its own half of the test set: the two-process evaluation equals one process's of
  # the same checkpoint (resumed at the last step, the trainer only evaluates). Both processes evaluating
  # process 0's rows kept eval/count at 10,000 and passed the checks above (mutation testing, 2026-12-08)
  import shutil  # pylint: disable=import-outside-toplevel
  from configs import testing  # pylint: disable=import-outside-toplevel
  from aila_jax.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
  shutil.copytree(tmp_path / "run", tmp_path / "one")
  config = testing.get_config()
  config.data_dir, config.progress = str(data_dir), False
  config.num_train_steps, config.checkpoint_every, config.eval_every = 100, 50, 0
  one = train_and_evaluate(config, tmp_path / "one")
  assert one["step"] == 100 and one["eval/count"] == 10000
  assert one["eval/accuracy"] == final["eval/accuracy"]
  assert abs(one["eval/loss"] - final["eval/loss"]) <= 1e-5 * abs(final["eval/loss"])
