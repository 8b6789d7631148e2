"""Pinned multi-process set-up (mutation testing), in one process and without a network: the coordinator
address's parsing, check_config's edge cases, wait_for_coordinator's retry schedule on a fake clock,
initialize's arguments to jax.distributed (faked), and the records-read report (a two-process gather faked)."""
import contextlib
import types

import jax
import numpy as np
import pytest
from jax.experimental import multihost_utils

from aila_jax.data import sources
from aila_jax.errors import ConfigError
from aila_jax.train import multihost
from helpers import RecordSource


# --- the coordinator address ---

@pytest.mark.parametrize("address,want", [
    ("127.0.0.1:1", ("127.0.0.1", 1)), ("host:65535", ("host", 65535)), ("[::1]:8476", ("::1", 8476)),
    ("a:b:7", ("a:b", 7)),
])
def test_split_address_accepts_ports_1_to_65535_and_unbrackets_ipv6(address, want):
  assert multihost._split_address(address) == want


@pytest.mark.parametrize("address", ["host:0", "host:65536", "host:", ":80", "host:abc", "host:-1", "localhost", ""])
def test_split_address_refuses_with_a_config_error(address):
  with pytest.raises(ConfigError, match=r"^config.coordinator_address: expected 'host:port' with a port in "
                     rf"1..65535, got {address!r}$"):
    multihost._split_address(address)


# --- check_config: a plain dict stands for the config (it only calls .get) ---

def test_check_config_process_id_is_0_to_num_processes_minus_1(monkeypatch):
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  with pytest.raises(ConfigError, match=r"expected 0 <= process_id < config.num_processes=3, got -1 "
                     r"\(the 3 processes are numbered 0..2\)"):
    multihost.check_config(dict(multihost=True, num_processes=3, process_id=-1, coordinator_address="h:1"))
  with pytest.raises(ConfigError, match=r"got 3 \(the 3 processes are numbered 0..2\)"):
    multihost.check_config(dict(multihost=True, num_processes=3, process_id=3, coordinator_address="h:1"))
  multihost.check_config(dict(multihost=True, num_processes=3, process_id=2, coordinator_address="h:1"))
  multihost.check_config(dict(multihost=True, num_processes=1, process_id=0, coordinator_address="h:1"))


def test_check_config_takes_the_coordinator_from_the_environment(monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "h:1234")
  multihost.check_config(dict(multihost=True, num_processes=2, process_id=1))  # no error


def test_check_config_multihost_defaults_to_false(monkeypatch):
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  multihost.check_config({})  # nothing set: fine
  with pytest.raises(ConfigError, match=r"^config.multihost: False, but config.coordinator_address='h:1' set"):
    multihost.check_config(dict(coordinator_address="h:1"))


def test_check_config_checks_an_address_also_without_num_processes(monkeypatch):
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  with pytest.raises(ConfigError, match=r"got 'h:0'"):
    multihost.check_config(dict(multihost=True, coordinator_address="h:0"))
  multihost.check_config(dict(multihost=True, coordinator_address="h:1"))


# --- wait_for_coordinator on a fake clock ---

class _Clock:
  """time.monotonic / time.sleep; each connection attempt to a black-holed host takes its whole timeout."""

  def __init__(self, succeed_on=None, attempt_takes_timeout=False):
    self.t, self.sleeps, self.attempts = 0.0, [], []
    self._succeed_on, self._slow = succeed_on, attempt_takes_timeout

  def monotonic(self):
    return self.t

  def sleep(self, s):
    assert s >= 0 and len(self.sleeps) < 50, "retrying without end"
    self.sleeps.append(s)
    self.t += s

  def create_connection(self, address, timeout):
    assert len(self.attempts) < 50, "retrying without end"
    self.attempts.append((address, timeout))
    if self._succeed_on == len(self.attempts):
      return contextlib.nullcontext()
    if self._slow:
      self.t += timeout
      raise TimeoutError("timed out")
    raise ConnectionRefusedError(111, "Connection refused")


def _fake(monkeypatch, clock):
  monkeypatch.setattr(multihost, "time", types.SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep))
  monkeypatch.setattr(multihost, "socket", types.SimpleNamespace(create_connection=clock.create_connection))


def test_wait_retries_every_quarter_second_until_exactly_the_timeout(monkeypatch):
  clock = _Clock()
  _fake(monkeypatch, clock)
  with pytest.raises(multihost.CoordinatorUnreachableError) as e:
    multihost.wait_for_coordinator("[::1]:8476", 0.625)
  # attempts at t = 0, 0.25, 0.5, each with the time left as its timeout; the last sleep ends at the deadline
  assert clock.attempts == [(("::1", 8476), 0.625), (("::1", 8476), 0.375), (("::1", 8476), 0.125)]
  assert clock.sleeps == [0.25, 0.25, 0.125] and clock.t == 0.625
  assert str(e.value) == (
      "config.coordinator_address: no coordinator answered at [::1]:8476 within config.coordinator_timeout_s="
      "0.625 s (last attempt: ConnectionRefusedError: [Errno 111] Connection refused). Start process 0 (it runs "
      "the coordinator) on that host and port, check the address and the firewall, or raise "
      "config.coordinator_timeout_s")
  assert isinstance(e.value, ConfigError)


def test_wait_caps_each_attempt_at_5_s_and_at_the_time_left(monkeypatch):
  clock = _Clock(attempt_takes_timeout=True)
  _fake(monkeypatch, clock)
  with pytest.raises(multihost.CoordinatorUnreachableError, match=r"within config.coordinator_timeout_s=12 s "
                     r"\(last attempt: TimeoutError: timed out\)"):
    multihost.wait_for_coordinator("h:9", 12)
  assert [t for _, t in clock.attempts] == [5.0, 5.0, 1.5] and clock.t == 12
  assert clock.sleeps == [0.25, 0.25, 0]


def test_wait_returns_at_the_first_answer(monkeypatch):
  clock = _Clock(succeed_on=3)
  _fake(monkeypatch, clock)
  multihost.wait_for_coordinator("h:9", 10)
  assert len(clock.attempts) == 3 and clock.sleeps == [0.25, 0.25]


# --- initialize: what reaches jax.distributed ---

@pytest.fixture
def fake_jax(monkeypatch):
  calls = {"wait": [], "init": [], "update": []}
  monkeypatch.setattr(multihost, "wait_for_coordinator", lambda a, t: calls["wait"].append((a, t)))
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls["init"].append(kw))
  monkeypatch.setattr(jax.config, "update", lambda k, v: calls["update"].append((k, v)))
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  return calls


def test_initialize_process_1_waits_for_the_coordinator_then_initializes(fake_jax):
  multihost.initialize(dict(multihost=True, coordinator_address="h:1", num_processes=2, process_id=1,
                            coordinator_timeout_s=7))
  assert fake_jax["wait"] == [("h:1", 7)]
  assert fake_jax["init"] == [dict(coordinator_address="h:1", num_processes=2, process_id=1,
                                   initialization_timeout=7)]
  assert fake_jax["update"] == [("jax_cpu_collectives_implementation", "gloo")]


def test_initialize_process_0_does_not_wait_for_itself(fake_jax):
  multihost.initialize(dict(multihost=True, coordinator_address="h:1", num_processes=2, process_id=0))
  assert fake_jax["wait"] == []
  assert fake_jax["init"] == [dict(coordinator_address="h:1", num_processes=2, process_id=0,
                                   initialization_timeout=300)]


def test_initialize_waits_for_the_coordinator_named_by_the_environment(fake_jax, monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "h:2")
  multihost.initialize(dict(multihost=True, num_processes=3, process_id=2))
  assert fake_jax["wait"] == [("h:2", 300)]
  assert fake_jax["init"] == [dict(num_processes=3, process_id=2, initialization_timeout=300)]


def test_initialize_auto_detected_layout_passes_only_the_timeout(fake_jax):
  multihost.initialize(dict(multihost=True, coordinator_timeout_s=9))
  assert fake_jax["wait"] == [] and fake_jax["init"] == [dict(initialization_timeout=9)]


def test_initialize_checks_the_layout_before_anything_starts(fake_jax):
  with pytest.raises(ConfigError, match=r"got 2 \(the 2 processes"):
    multihost.initialize(dict(multihost=True, coordinator_address="h:1", num_processes=2, process_id=2))
  assert fake_jax == {"wait": [], "init": [], "update": []}


# --- records read ---

def _src(n):
  return sources.ArraySource({"id": np.arange(n), "x": np.arange(n) * 2.0})


def test_count_reads_counts_every_row_read_and_marks_the_rows():
  counter = multihost.count_reads(_src(10))
  assert hasattr(counter, "get_batch") and len(counter) == 10 and counter.seen.shape == (10,)
  np.testing.assert_array_equal(counter.get_batch(np.array([1, 3, 3]))["id"], [1, 3, 3])
  assert counter[5]["id"] == 5
  assert counter.records == 4
  np.testing.assert_array_equal(np.flatnonzero(counter.seen), [1, 3, 5])
  assert multihost.records_read_report(counter) == {
      "data/records_read/p0": 4.0, "data/distinct_records": 3.0, "data/records_read_by_several_processes": 0.0}


def test_count_reads_of_a_record_source_has_no_get_batch():
  counter = multihost.count_reads(RecordSource(_src(4)))
  assert not hasattr(counter, "get_batch")
  assert counter[2]["id"] == 2 and counter.records == 1 and counter.seen.tolist() == [False, False, True, False]


def test_records_read_report_gathers_every_process(monkeypatch):
  # this process (0) and a faked process 1 of 2: rows 2 and 4 read by both
  mine, other = multihost.count_reads(_src(8)), multihost.count_reads(_src(8))
  mine.get_batch(np.array([0, 2, 4, 0]))
  other.get_batch(np.array([1, 2, 3, 4, 5, 7, 7]))
  gathered = []

  def allgather(x):
    x = np.asarray(x)
    theirs = other.seen.astype(np.uint8) if x.dtype == np.uint8 else np.asarray([other.records], np.int64)
    assert x.shape == theirs.shape and x.dtype == theirs.dtype
    gathered.append(x.dtype)
    return np.stack([x, theirs])

  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(multihost_utils, "process_allgather", allgather)
  assert multihost.records_read_report(mine) == {
      "data/records_read/p0": 4.0, "data/records_read/p1": 7.0,
      "data/distinct_records": 7.0,  # 0..5 and 7
      "data/records_read_by_several_processes": 2.0}
  assert len(gathered) == 2
