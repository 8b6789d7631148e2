r"""Trains and evaluates a model from a config.

  python train.py                                   # configs/default.py into runs/default
  python train.py --config=configs/NAME.py --workdir=DIR --config.key=value

Running again with the same --workdir resumes from its latest checkpoint. The
logic lives in aila_jax.train, importable from a notebook.

Exit codes: 0 done; 2 a bad config, override or data file (one message on
stderr, no traceback); 143 stopped by SIGTERM after saving a checkpoint (run the
same command to resume).
"""

import os
import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from aila_jax import cli as _cli_options  # noqa: E402  pylint: disable=g-import-not-at-top
_cli_options.take_mixer_options()  # --config.model.mixer_kwargs.KEY=VALUE: any mixer option, set after loading

_DEFAULT_CONFIG = str(pathlib.Path(__file__).resolve().parent / "configs" / "default.py")
try:  # without --config=FILE the default config is loaded, and its --config.key overrides applied, right here
  _CONFIG = config_flags.DEFINE_config_file(
      "config", _DEFAULT_CONFIG,
      "Training config (a file with get_config()); override fields with --config.key=value.",
      lock_config=True)
except (AttributeError, KeyError, TypeError, ValueError) as _e:
  _cli_options.fail(_cli_options.explain_override_error(sys.argv, _DEFAULT_CONFIG, _e))
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics "
                               "(default: runs/<config file name>).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from aila_jax import cli  # pylint: disable=g-import-not-at-top
  from aila_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value
  if workdir is None:
    name = pathlib.Path(flags.FLAGS["config"].config_filename.split(":")[0]).stem
    workdir = os.path.join("runs", name)
  cli.quiet_logs()  # INFO logs only with --verbosity=0 (absl's INFO level) or above
  result = cli.run_or_exit(train_and_evaluate, _CONFIG.value, workdir)
  if result.get("preempted"):
    sys.exit(cli.EXIT_PREEMPTED)


if __name__ == "__main__":
  from aila_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=lambda argv: _cli.parse_flags_or_exit(argv, _DEFAULT_CONFIG))
