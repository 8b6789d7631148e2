r"""Trains and evaluates a model from a config.

  python train.py                                   # configs/default.py into runs/default
  python train.py --config=configs/NAME.py --workdir=DIR --config.key=value

Running again with the same --workdir resumes from its latest checkpoint. The
logic lives in aila_jax.train, importable from a notebook.
"""

import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).resolve().parent / "configs" / "default.py"),
    "Training config (a file with get_config()); override fields with --config.key=value.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics "
                               "(default: runs/<config file name>).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from aila_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value
  if workdir is None:
    name = pathlib.Path(flags.FLAGS["config"].config_filename.split(":")[0]).stem
    workdir = os.path.join("runs", name)
  logging.set_verbosity(logging.WARNING)
  train_and_evaluate(_CONFIG.value, workdir)


if __name__ == "__main__":
  app.run(main)
