"""Bad multi-process input (issue 20): a layout that cannot form a cluster is a ConfigError before
``jax.distributed`` starts; an unreachable coordinator is a clear error after config.coordinator_timeout_s,
not a hang or an abort. (A global batch not divisible by the devices: tests/train/test_config_check.py.)"""
import socket
import subprocess
import sys
import time

import jax
import pytest

from aila_jax.errors import ConfigError
from aila_jax.train import multihost, train_and_evaluate
from helpers import REPO, make_testing_config


def _closed_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.parametrize("overrides,message", [
    (dict(num_processes=2, process_id=2, coordinator_address="127.0.0.1:1234"),
     r"config.process_id: expected 0 <= process_id < config.num_processes=2, got 2"),
    (dict(num_processes=2, coordinator_address="127.0.0.1:1234"),
     r"config.process_id: None, but config.num_processes=2 is set; give both"),
    (dict(process_id=1), r"config.num_processes: None, but config.process_id=1 is set"),
    (dict(num_processes=2, process_id=0), r"config.coordinator_address: None .* config.num_processes=2 is given"),
    (dict(num_processes=2, process_id=0, coordinator_address="localhost"),
     r"config.coordinator_address: expected 'host:port' with a port in 1..65535, got 'localhost'"),
    (dict(multihost=False, num_processes=2, process_id=0),
     r"config.multihost: False, but config.num_processes=2, config.process_id=0 set"),
])
def test_layout_that_cannot_form_a_cluster_is_refused_before_starting(tmp_path, data_dir, monkeypatch,
                                                                       overrides, message):
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  config = make_testing_config(data_dir, **{"multihost": True, **overrides})
  with pytest.raises(ConfigError, match=message):
    train_and_evaluate(config, tmp_path / "w")
  assert not (tmp_path / "w").exists() and jax.process_count() == 1


def test_timeout_key_is_checked(tmp_path, data_dir):
  with pytest.raises(ConfigError, match=r"config.coordinator_timeout_s: expected an int >= 1"):
    train_and_evaluate(make_testing_config(data_dir, coordinator_timeout_s=0), tmp_path)


def test_wait_for_coordinator_returns_on_a_listening_port_and_times_out_on_a_closed_one():
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    multihost.wait_for_coordinator(f"127.0.0.1:{server.getsockname()[1]}", 5)
  port = _closed_port()
  start = time.monotonic()
  with pytest.raises(multihost.CoordinatorUnreachableError, match=rf"no coordinator answered at 127.0.0.1:{port} "
                     r"within config.coordinator_timeout_s=0.5 s \(last attempt: ConnectionRefusedError"):
    multihost.wait_for_coordinator(f"127.0.0.1:{port}", 0.5)
  assert 0.5 <= time.monotonic() - start < 3


def test_unreachable_coordinator_is_a_clear_error_after_the_timeout(tmp_path, data_dir):
  port = _closed_port()
  cmd = [sys.executable, str(REPO / "train.py"), "--config=" + str(REPO / "configs" / "testing.py"),
         f"--workdir={tmp_path / 'w'}", f"--config.data_dir={data_dir}", "--config.multihost=True",
         f"--config.coordinator_address=127.0.0.1:{port}", "--config.num_processes=2", "--config.process_id=1",
         "--config.coordinator_timeout_s=1"]
  start = time.monotonic()
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"error: config.coordinator_address: no coordinator answered at 127.0.0.1:{port} within "
      "config.coordinator_timeout_s=1 s")
  assert time.monotonic() - start < 30
