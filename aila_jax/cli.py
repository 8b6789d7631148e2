"""Command-line helpers shared by ``train.py`` and ``translate.py``: readable errors and exit codes.

Exit codes (documented in the README):

* ``0``: the job finished.
* ``2``: a bad config, config override or data file: one message on stderr, no traceback.
* ``143`` (128 + SIGTERM, as a shell reports a process ended by SIGTERM): the run was asked to stop,
  saved a checkpoint at the end of the current step and exited; run the same command to resume.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib
import sys
from typing import Any, Sequence

EXIT_USAGE = 2
EXIT_PREEMPTED = 143


def fail(message: str, code: int = EXIT_USAGE) -> None:
  """Prints ``error: message`` on stderr and exits with ``code`` (no traceback)."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def _flat_keys(config: Any, prefix: str = "") -> list[str]:
  keys = []
  for k, v in config.items():
    keys.append(prefix + k)
    if hasattr(v, "items") and not isinstance(v, (str, bytes)):
      keys.extend(_flat_keys(v, prefix + k + "."))
  return keys


def _has_key(config: Any, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "keys") or part not in node.keys():
      return False
    node = node[part]
  return True


def load_config_file(path: str) -> Any:
  """``get_config()`` of a config file (``path`` or ``path:arg``), as ml_collections' flag loads it."""
  file, _, arg = path.partition(":")
  spec = importlib.util.spec_from_file_location("_aila_config_probe", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def explain_override_error(argv: Sequence[str], default_config: str | None, error: BaseException) -> str:
  """One readable message for a failed ``--config...`` flag: an unknown key with the nearest known
  one, or the override that could not be parsed and why."""
  config_path = default_config
  overrides = []
  for arg in argv[1:]:
    if arg.startswith("--config="):
      config_path = arg.split("=", 1)[1]
    elif arg.startswith("--config."):
      key, _, value = arg[len("--config."):].partition("=")
      overrides.append((key, value))
  config = None
  if config_path:
    try:
      config = load_config_file(config_path)
    except Exception as e:  # pylint: disable=broad-except
      return f"--config={config_path}: could not load the config file ({type(e).__name__}: {e})"
  if config is not None:
    known = _flat_keys(config)
    for key, value in overrides:
      if not _has_key(config, key):
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean config.{near[0]}?" if near else "; see the config file for its keys"
        return f"--config.{key}={value}: config has no key {key!r}{hint}"
  first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  shown = " ".join(f"--config.{k}={v}" for k, v in overrides) or "--config"
  return f"{shown}: {type(error).__name__}: {first}"


def parse_flags_or_exit(argv: Sequence[str], default_config: str | None = None) -> list[str]:
  """absl flag parsing where a bad ``--config...`` flag ends the program with one message and exit 2."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # a value that does not parse, an unknown flag: absl names the flag
    fail(f"{e} (pass --helpfull to see the flags)")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    fail(explain_override_error(argv, default_config, e))
  return []  # unreachable


def quiet_logs() -> None:
  """Library and orbax INFO logs off (warnings still shown) unless ``--verbosity`` was given."""
  from absl import flags, logging  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def run_or_exit(fn, *args, **kwargs):
  """Calls ``fn``; ConfigError and DataError become one message on stderr and exit 2."""
  from aila_jax.errors import ConfigError, DataError  # pylint: disable=g-import-not-at-top
  try:
    return fn(*args, **kwargs)
  except (ConfigError, DataError) as e:
    fail(str(e))


def default_config_path(repo: pathlib.Path) -> str:
  return str(repo / "configs" / "default.py")
