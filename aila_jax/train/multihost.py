"""Several processes (hosts, or one process per GPU) training together through ``jax.distributed``.

:func:`check_config` refuses, before anything starts, a process layout that cannot form a cluster;
:func:`initialize` waits at most ``config.coordinator_timeout_s`` for the coordinator and raises
:class:`CoordinatorUnreachableError` (naming ``config.coordinator_address`` and the timeout) instead of
hanging or aborting; :func:`records_read_report` gathers how many training records each process read.

Layout rules (checked by :func:`check_config`):

- ``num_processes`` and ``process_id`` come together or not at all (``None``: auto-detected on TPU pods,
  SLURM, Open MPI and Kubernetes), with :math:`0 \\le \\text{process\\_id} < \\text{num\\_processes}`;
- given explicitly, they need a coordinator, ``config.coordinator_address`` ``'host:port'`` or
  ``$JAX_COORDINATOR_ADDRESS``;
- any of the three set while ``config.multihost`` is False is an error (the run would silently train alone).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np

from aila_jax.errors import ConfigError
from aila_jax.train import config_check

DEFAULT_TIMEOUT_S = 300  # jax.distributed.initialize's own default

config_check.register_config_keys({
    "coordinator_timeout_s": (int, lambda v: v >= 1,
                              "an int >= 1 (seconds to wait for the coordinator and the other processes)"),
})


class CoordinatorUnreachableError(ConfigError):
  """No coordinator answered at ``config.coordinator_address`` within ``config.coordinator_timeout_s``."""


def _split_address(address: str) -> tuple[str, int]:
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ConfigError(f"config.coordinator_address: expected 'host:port' with a port in 1..65535, got {address!r}")
  return host.strip("[]"), int(port)


def _coordinator(config) -> str | None:
  return config.get("coordinator_address") or os.environ.get("JAX_COORDINATOR_ADDRESS") or None


def check_config(config) -> None:
  """ConfigError for a process layout that cannot form a cluster (see the module docstring)."""
  n, pid, address = config.get("num_processes"), config.get("process_id"), config.get("coordinator_address")
  if not config.get("multihost", False):
    given = {k: v for k, v in (("coordinator_address", address), ("num_processes", n), ("process_id", pid))
             if v is not None}
    if given:
      raise ConfigError(f"config.multihost: False, but {', '.join(f'config.{k}={v!r}' for k, v in given.items())} "
                        "set: this process would train alone. Set --config.multihost=True, or unset them")
    return
  if (n is None) != (pid is None):
    missing = "process_id" if pid is None else "num_processes"
    raise ConfigError(f"config.{missing}: None, but config.{'num_processes' if pid is None else 'process_id'}="
                      f"{n if pid is None else pid!r} is set; give both (each process its own process_id) or "
                      "neither (auto-detected on TPU pods, SLURM, Open MPI)")
  if n is not None:
    if not 0 <= pid < n:
      raise ConfigError(f"config.process_id: expected 0 <= process_id < config.num_processes={n}, got {pid!r} "
                        f"(the {n} processes are numbered 0..{n - 1})")
    if _coordinator(config) is None:
      raise ConfigError(f"config.coordinator_address: None (and $JAX_COORDINATOR_ADDRESS unset), but "
                        f"config.num_processes={n} is given; set it to 'host:port' of process 0's host")
  if address is not None:
    _split_address(address)


def wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Returns once a TCP connection to ``address`` succeeds; raises :class:`CoordinatorUnreachableError`
  after ``timeout_s`` seconds of refused or timed-out attempts (retried every 0.25 s)."""
  host, port = _split_address(address)
  deadline = time.monotonic() + timeout_s
  last = None
  while True:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      break
    try:
      with socket.create_connection((host, port), timeout=min(remaining, 5.0)):
        return
    except OSError as e:
      last = e
    time.sleep(min(0.25, max(deadline - time.monotonic(), 0)))
  raise CoordinatorUnreachableError(
      f"config.coordinator_address: no coordinator answered at {address} within config.coordinator_timeout_s="
      f"{timeout_s:g} s (last attempt: {type(last).__name__}: {last}). Start process 0 (it runs the coordinator) "
      "on that host and port, check the address and the firewall, or raise config.coordinator_timeout_s")


def initialize(config) -> None:
  """``jax.distributed.initialize`` with the layout of ``config`` (auto-detected where None).

  A process other than 0 first waits for the coordinator's port (at most ``config.coordinator_timeout_s``,
  raising :class:`CoordinatorUnreachableError`), since ``jax.distributed`` would abort the process with a C++
  check failure instead of raising. ``initialization_timeout`` is the same timeout. CPU processes talk through
  gloo, so the multi-process path also runs (and is tested) on CPUs.
  """
  import jax  # pylint: disable=g-import-not-at-top
  check_config(config)
  timeout = int(config.get("coordinator_timeout_s", DEFAULT_TIMEOUT_S))
  kwargs = {k: config.get(k) for k in ("coordinator_address", "num_processes", "process_id")
            if config.get(k) is not None}
  address = _coordinator(config)
  if address is not None and config.get("process_id") not in (None, 0):
    wait_for_coordinator(address, timeout)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs, initialization_timeout=timeout)


class _ReadCounter:
  """Counts the training records read from ``source`` and marks which rows (thread-safe: grain reads
  ahead on threads). Counts reads, not consumption: grain's read-ahead is included."""

  def __init__(self, source):
    self._source = source
    self._lock = threading.Lock()
    self.records = 0
    self.seen = np.zeros((len(source),), bool)

  def __len__(self):
    return len(self._source)

  def _count(self, rows) -> None:
    rows = np.asarray(rows).reshape(-1)
    with self._lock:
      self.records += rows.size
      self.seen[rows] = True

  def __getitem__(self, index):
    self._count([index])
    return self._source[index]


class _BatchReadCounter(_ReadCounter):

  def get_batch(self, rows):
    self._count(rows)
    return self._source.get_batch(rows)


def count_reads(source) -> _ReadCounter:
  """``source`` with a read counter (``.records``, ``.seen``); keeps ``get_batch`` if ``source`` has it."""
  return (_BatchReadCounter if hasattr(source, "get_batch") else _ReadCounter)(source)


def records_read_report(counter: _ReadCounter) -> dict[str, float]:
  """``data/records_read/p<i>`` for every process ``i`` (gathered), ``data/distinct_records`` (rows read by
  any process) and ``data/records_read_by_several_processes`` (rows read by more than one: 0 when each
  process reads only its shard). A collective: every process must call it."""
  import jax  # pylint: disable=g-import-not-at-top
  seen = counter.seen[None]
  records = np.asarray([counter.records], np.int64)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    seen = np.asarray(multihost_utils.process_allgather(counter.seen.astype(np.uint8))).astype(bool)
    records = np.asarray(multihost_utils.process_allgather(records)).reshape(-1)
  out = {f"data/records_read/p{i}": float(r) for i, r in enumerate(records)}
  times = seen.sum(0)
  out["data/distinct_records"] = float((times > 0).sum())
  out["data/records_read_by_several_processes"] = float((times > 1).sum())
  return out
