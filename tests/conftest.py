"""Test set-up: 8 forced CPU devices so sharded code paths run here, and the data directory."""
import os

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
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
