"""Shared test helpers."""
import pathlib
import tempfile

import ml_collections

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_testing_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  """configs/testing.py with ``data_dir`` set and dotted-key overrides applied."""
  from configs import testing  # pylint: disable=g-import-not-at-top
  config = testing.get_config()
  config.data_dir = str(data_dir)
  config.progress = False
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def machine_folders(*, temp_and_home: bool = True) -> tuple[str, ...]:
  """Folder prefixes that would name the machine a committed file was written on: the checkout's parent, the
  usual home roots, and (``temp_and_home``) this machine's temp and home folders."""
  folders = {str(REPO.parent).rstrip("/") + "/", "/home/", "/Users/"}
  if temp_and_home:
    folders |= {tempfile.gettempdir().rstrip("/") + "/", str(pathlib.Path.home()).rstrip("/") + "/"}
  return tuple(sorted(folders))

