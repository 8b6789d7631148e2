"""What a user sees when something is wrong: one message and exit 2, a rerun that changes nothing when the
config no longer fits the workdir, SIGTERM's exit code, append-only metrics, kept config.json files."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from aila_jax.data import sources
from aila_jax.errors import DataError
from aila_jax.train import train_and_evaluate
from aila_jax.train.checkpoint import UnreadableCheckpointError
from aila_jax.train.metrics import METRICS_FILE, read_metrics
from helpers import REPO, make_testing_config


def _cli(workdir, data_dir, *extra, timeout=300):
  cmd = [sys.executable, str(REPO / "train.py"), "--config=" + str(REPO / "configs" / "testing.py"),
         f"--workdir={workdir}", f"--config.data_dir={data_dir}", "--config.progress=False", *extra]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _snapshot(workdir):
  return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()
          and "tensorboard" not in p.parts}


def test_unknown_key_and_bad_value_are_one_line_with_exit_2(tmp_path, data_dir):
  typo = _cli(tmp_path / "a", data_dir, "--config.batchsize=3")
  assert typo.returncode == 2
  assert "Traceback" not in typo.stderr
  assert "config has no key 'batchsize'; did you mean config.batch_size?" in typo.stderr
  bad = _cli(tmp_path / "b", data_dir, "--config.optimizer.name=adamm")
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1].startswith("error: config.optimizer.name: expected one of")
  empty = tmp_path / "empty"
  empty.mkdir()
  nodata = _cli(tmp_path / "c", empty)
  assert nodata.returncode == 2 and "Traceback" not in nodata.stderr
  assert "holds neither mnist.npz" in nodata.stderr and "already prepared" not in nodata.stderr
  assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
  # without --config=FILE (the default config, whose overrides are applied when the flag is defined)
  cmd = [sys.executable, str(REPO / "train.py"), f"--workdir={tmp_path / 'd'}", "--config.optimizer.nmae=adam"]
  default = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert default.returncode == 2 and "Traceback" not in default.stderr, default.stderr[-2000:]
  assert "config has no key 'optimizer.nmae'; did you mean config.optimizer.name?" in default.stderr
  assert not (tmp_path / "d").exists()


def test_truncated_npz_names_the_file_and_what_was_expected(tmp_path, data_dir):
  (tmp_path / "mnist.npz").write_bytes((data_dir / "mnist.npz").read_bytes()[:100_000])
  with pytest.raises(DataError, match=r"mnist\.npz: cannot be read .*expected mnist\.npz.*found 100,000 bytes"):
    sources.get_source("mnist", "train", data_dir=tmp_path)
  np.savez(tmp_path / "mnist.npz", x_train=np.zeros((4, 28, 27), np.uint8), y_train=np.zeros(4, np.int64))
  with pytest.raises(DataError, match=r"x_train' has shape \(4, 28, 27\).*expected shape"):
    sources.get_source("mnist", "train", data_dir=tmp_path)


def test_rerun_with_incompatible_config_changes_nothing(tmp_path, data_dir):
  workdir = tmp_path / "run"
  train_and_evaluate(make_testing_config(data_dir, num_train_steps=40, checkpoint_every=20, eval_every=0,
                                         log_every=10), workdir)
  before = _snapshot(workdir)
  out = _cli(workdir, data_dir, "--config.model.hidden=(16,)", "--config.num_train_steps=40")
  assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert "params/dense_0/kernel: in the checkpoint (784, 32), in this config's state (784, 16)" in out.stderr
  assert "config.model.hidden: [32] when the checkpoint was written, now [16]" in out.stderr
  assert "new --workdir" in out.stderr
  assert _snapshot(workdir) == before, "an incompatible rerun must not move or write anything"
  assert not (workdir / "corrupt_checkpoints").exists()


def test_compatible_rerun_keeps_earlier_config_and_metrics_rows(tmp_path, data_dir):
  workdir = tmp_path / "run"
  train_and_evaluate(make_testing_config(data_dir, num_train_steps=20, checkpoint_every=20, eval_every=0,
                                         log_every=10), workdir)
  first_config = (workdir / "config.json").read_text()
  first_rows = (workdir / METRICS_FILE).read_text()
  train_and_evaluate(make_testing_config(data_dir, num_train_steps=30, checkpoint_every=10, eval_every=0,
                                         log_every=10), workdir)
  assert (workdir / "config.1.json").read_text() == first_config
  assert json.loads((workdir / "config.json").read_text())["num_train_steps"] == 30
  assert (workdir / METRICS_FILE).read_text().startswith(first_rows)
  assert [r["step"] for r in read_metrics(workdir) if "train/loss" in r] == [10, 20, 30]


def test_all_checkpoints_unreadable_moves_nothing(tmp_path, data_dir):
  workdir = tmp_path / "run"
  train_and_evaluate(make_testing_config(data_dir, num_train_steps=20, checkpoint_every=10, eval_every=0,
                                         log_every=10), workdir)
  for p in (workdir / "checkpoints").rglob("*"):
    if p.is_file() and p.stat().st_size > 0 and "metadata" not in p.name.lower():
      p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
  before = _snapshot(workdir)
  with pytest.raises(UnreadableCheckpointError, match=r"step 20: .*\n.*step 10: .*nothing was moved|"
                                                      r"nothing was moved"):
    train_and_evaluate(make_testing_config(data_dir, num_train_steps=30, checkpoint_every=10, eval_every=0,
                                           log_every=10), workdir)
  assert _snapshot(workdir) == before
  assert not (workdir / "corrupt_checkpoints").exists()


def test_sigterm_saves_and_exits_143(tmp_path, data_dir):
  workdir = tmp_path / "term"
  cmd = [sys.executable, str(REPO / "train.py"), "--config=" + str(REPO / "configs" / "testing.py"),
         f"--workdir={workdir}", f"--config.data_dir={data_dir}", "--config.num_train_steps=100000",
         "--config.checkpoint_every=50000", "--config.eval_every=0", "--config.log_every=10"]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if (workdir / METRICS_FILE).exists() and any("train/loss" in r for r in read_metrics(workdir)):
      proc.send_signal(signal.SIGTERM)
      break
    time.sleep(0.05)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 143, out[-3000:]
  assert "SIGTERM: saved the checkpoint at step" in out
  assert not re.search(r"(?m)^I\d{4} ", out), "absl/orbax INFO lines must be off by default"
  assert [p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]


def test_mixer_options_are_set_from_the_command_line_whether_or_not_the_config_has_them(tmp_path, data_dir):
  # ml_collections' overrides only change keys a config file set; a depth mixer's options are open, so
  # --config.model.mixer_kwargs.KEY=VALUE is set on the loaded config (values as Python literals or text)
  script = (
      "import sys\n"
      "from absl import app\n"
      "from ml_collections import config_flags\n"
      "from aila_jax import cli\n"
      "cli.take_mixer_options()\n"
      f"C = config_flags.DEFINE_config_file('config', {str(REPO / 'configs' / 'cifar10_resnet56_ela.py')!r} "
      "+ ':aila2,noela', lock_config=True)\n"
      "def main(_):\n"
      "  print(sorted(C.value.model.mixer_kwargs.items()), C.value.model.mixer)\n"
      "app.run(main, flags_parser=cli.parse_flags_or_exit)\n")
  cmd = [sys.executable, "-c", script, "--config.model.mixer_kwargs.keys=folded",
         "--config.model.mixer_kwargs.num_heads=2", "--config.model.mixer_kwargs.residual=true",
         "--config.model.mixer=aila2"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "[('keys', 'folded'), ('num_heads', 2), ('residual', True)] aila2"
  # a config whose model takes no mixer: one message, exit 2
  none = _cli(tmp_path / "a", data_dir, "--config.model.mixer_kwargs.value_conv=conv")
  assert none.returncode == 2 and "Traceback" not in none.stderr
  assert ("error: --config.model.mixer_kwargs.value_conv: this config has no config.model.mixer_kwargs (its model "
          "takes no depth mixer)") in none.stderr
  bad = _cli(tmp_path / "b", data_dir, "--config.model.mixer_kwargs.=3")
  assert bad.returncode == 2 and "expected --config.model.mixer_kwargs.KEY=VALUE" in bad.stderr
