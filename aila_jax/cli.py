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


MIXER_OPTION_FLAG = "--config.model.mixer_kwargs."


def split_mixer_options(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
  """``argv`` without its ``--config.model.mixer_kwargs.KEY=VALUE`` flags, and those options as text.

  A mixer's options are open (each mixer has its own; :func:`aila_jax.nn.depth.check_mixer_kwargs` and the
  mixer check them), so a key that the config file did not set cannot go through ml_collections' overrides,
  which only change existing keys: these flags are taken out here and set on the loaded config."""
  rest, options = [], {}
  for arg in argv:
    if arg.startswith(MIXER_OPTION_FLAG):
      key, eq, value = arg[len(MIXER_OPTION_FLAG):].partition("=")
      if not eq or not key.isidentifier():
        fail(f"{arg}: expected {MIXER_OPTION_FLAG}KEY=VALUE (one option of the depth mixer, e.g. "
             f"{MIXER_OPTION_FLAG}value_conv=conv)")
      options[key] = {"true": "True", "false": "False"}.get(value.lower(), value)  # as absl reads booleans
    else:
      rest.append(arg)
  return rest, options


_TAKEN_MIXER_OPTIONS: dict[str, str] = {}


def take_mixer_options() -> None:
  """Takes the ``--config.model.mixer_kwargs.KEY=VALUE`` flags out of ``sys.argv`` (kept for
  :func:`parse_flags_or_exit`). Call it before ``config_flags.DEFINE_config_file``, which reads its overrides
  from ``sys.argv`` when it is defined and refuses keys the config file did not set."""
  rest, options = split_mixer_options(sys.argv)
  sys.argv[:] = rest
  _TAKEN_MIXER_OPTIONS.update(options)


def parse_flags_or_exit(argv: Sequence[str], default_config: str | None = None) -> list[str]:
  """absl flag parsing where a bad ``--config...`` flag ends the program with one message and exit 2.

  ``--config.model.mixer_kwargs.KEY=VALUE`` sets a depth-mixer option whether or not the config file set it,
  when :func:`take_mixer_options` ran before the config flag was defined (as train.py does)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:  # a value that does not parse, an unknown flag: absl names the flag
    fail(f"{e} (pass --helpfull to see the flags)")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    fail(explain_override_error(argv, default_config, e))
  if _TAKEN_MIXER_OPTIONS:
    from aila_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
    from aila_jax.train.config_check import apply_override  # pylint: disable=g-import-not-at-top
    config = flags.FLAGS["config"].value
    if not _has_key(config, "model.mixer_kwargs"):
      fail(f"{MIXER_OPTION_FLAG}{next(iter(_TAKEN_MIXER_OPTIONS))}: this config has no config.model.mixer_kwargs "
           f"(its model takes no depth mixer)")
    with config.unlocked():
      for key, value in _TAKEN_MIXER_OPTIONS.items():  # read as a Python literal, else kept as text
        try:
          apply_override(config, f"model.mixer_kwargs.{key}={value}")
        except ConfigError as e:
          fail(str(e))
  return rest


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
