"""Test set-up: 8 forced CPU devices so sharded code paths run here, fast CPU compilation, and the data directory."""
import os

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
# LLVM's optimisation level 0 for the CPU code: the tests' programs are small and run a few steps, so
# compilation is most of their time (CI starts with an empty compilation cache). Measured on 2 cores:
# a ResNet-8 train-step test 22 s -> 7 s (its jitted init alone 8 s -> 1.3 s), notebook 03 with an
# empty cache 46 s -> 37 s. It changes how fast the code runs, not what it computes; a set value is kept.
# Subprocesses (the CLI tests, the notebooks' kernels) inherit it.
if "--xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
# XLA kills the process when a CPU all-reduce waits 40 s for some of its devices. With 8 forced devices on
# CI's 2 cores that happened once (a notebook kernel, one run in 54 when rerun under load): 120 s gives a
# straggler time to arrive; a real deadlock still ends the test, 80 s later.
# (CI's next abort of this kind was such a deadlock, not a straggler: more than 32 programs queued per
# device; the trainer now keeps at most 8 in flight, see aila_jax/train/trainer.py _IN_FLIGHT.)
if "--xla_cpu_collective_call_terminate_timeout_seconds" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_cpu_collective_call_terminate_timeout_seconds=120"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _find_data_dir():
  if os.environ.get("AILA_DATA_DIR"):
    return pathlib.Path(os.environ["AILA_DATA_DIR"])
  # The layout these tests run in (a checkout with the team's shared folder beside it).
  candidate = _REPO.parent / "shared" / "data"
  return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def data_dir():
  d = _find_data_dir()
  if d is None or not (d / "mnist.npz").exists():
    pytest.fail("real data not found: set AILA_DATA_DIR to the folder holding mnist.npz")
  return d

# Scripts that write test fixtures need PyTorch/timm, which the test environment does not install:
# --doctest-modules must not import them.
collect_ignore_glob = ["*/fixtures/make_*.py"]
