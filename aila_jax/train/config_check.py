"""Validation of a training config before anything is built or compiled.

Each problem raises :class:`aila_jax.errors.ConfigError` naming the key, the
expectation and the value that came.
"""

from __future__ import annotations

from typing import Any, Callable

from aila_jax.errors import ConfigError, config_error
from aila_jax.train.optim import OPTIMIZERS, SCHEDULES

_NUM = (int, float)


def _type_name(t) -> str:
  if isinstance(t, tuple):
    return " or ".join(x.__name__ for x in t)
  return t.__name__


# key -> (types, predicate or None, description of the valid range)
_SPEC: dict[str, tuple[Any, Callable[[Any], bool] | None, str]] = {
    "seed": (int, lambda v: v >= 0, "an int >= 0"),
    "dataset": (str, None, "a dataset name"),
    "data_dir": ((str, type(None)), None, "a folder path or None"),
    "data_source": (str, lambda v: v in ("auto", "local", "tfds"), "'auto', 'local' or 'tfds'"),
    "tfds_download": (bool, None, "a bool"),
    "augment": (str, None, "an augmentation name"),
    "augment_on": (str, lambda v: v in ("host", "device"), "'host' or 'device'"),
    "image_mean": ((tuple, list, type(None)), lambda v: v is None or all(isinstance(x, _NUM) for x in v),
                   "None (the dataset's statistics) or one number per image channel"),
    "image_std": ((tuple, list, type(None)), lambda v: v is None or all(isinstance(x, _NUM) and x > 0 for x in v),
                  "None (the dataset's statistics) or one positive number per image channel"),
    "worker_count": (int, lambda v: v >= 0, "an int >= 0"),
    "eval_cache_mb": (_NUM, lambda v: v >= 0, "a number of MiB >= 0 (0: read the eval sets anew each time)"),
    "model_name": (str, None, "a model name"),
    "task": (str, None, "a task name"),
    "label_smoothing": (_NUM, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "batch_size": (int, lambda v: v > 0, "an int > 0"),
    "eval_batch_size": (int, lambda v: v > 0, "an int > 0"),
    "num_train_steps": (int, lambda v: v > 0, "an int > 0"),
    "dtype": (str, lambda v: v in ("float32", "bfloat16"), "'float32' or 'bfloat16'"),
    "log_every": (int, lambda v: v > 0, "an int > 0"),
    "eval_every": (int, lambda v: v >= 0, "an int >= 0 (0: only at the end)"),
    "checkpoint_every": (int, lambda v: v > 0, "an int > 0"),
    "keep_checkpoints": (int, lambda v: v >= 1, "an int >= 1"),
    "multihost": (bool, None, "a bool"),
    "progress": (bool, None, "a bool"),
    "steps_per_call": (int, lambda v: v >= 1, "an int >= 1 (training updates per jitted call)"),
    "log_wall_clock": (bool, None, "a bool (add `wall` seconds to metrics rows)"),
    "coordinator_address": ((str, type(None)), None, "'host:port' or None (auto-detect)"),
    "num_processes": ((int, type(None)), lambda v: v is None or v >= 1, "an int >= 1 or None"),
    "process_id": ((int, type(None)), lambda v: v is None or v >= 0, "an int >= 0 or None"),
    "optimizer.name": (str, lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
    "optimizer.learning_rate": (_NUM, lambda v: v > 0, "a number > 0"),
    "optimizer.momentum": (_NUM, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.b1": (_NUM, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.b2": (_NUM, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.eps": (_NUM, lambda v: v > 0, "a number > 0"),
    "optimizer.weight_decay": (_NUM, lambda v: v >= 0, "a number >= 0"),
    "optimizer.grad_clip_norm": ((int, float, type(None)), lambda v: v is None or v > 0,
                                 "a number > 0 or None"),
    "schedule.name": (str, lambda v: v in SCHEDULES, f"one of {SCHEDULES}"),
    "schedule.warmup_steps": (int, lambda v: v >= 0, "an int >= 0"),
    "schedule.end_factor": (_NUM, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "schedule.boundaries": ((tuple, list), lambda v: all(isinstance(b, int) and b > 0 for b in v),
                            "a tuple of step numbers > 0"),
    "schedule.factor": (_NUM, lambda v: v > 0, "a number > 0"),
    "schedule.steps_per_epoch": (int, lambda v: v >= 1, "an int >= 1 (epoch_cosine: steps of one epoch)"),
}
_REQUIRED = ("seed", "dataset", "model_name", "task", "batch_size", "eval_batch_size",
             "num_train_steps", "optimizer.name", "optimizer.learning_rate", "schedule.name")
_FREE = ("model", "dataset_kwargs", "task_kwargs")  # checked by the model / dataset / task itself


def register_config_keys(spec: dict[str, tuple[Any, Callable[[Any], bool] | None, str]]) -> None:
  """Lets a family add its own top-level keys: ``{key: (types, predicate, description)}``."""
  _SPEC.update(spec)


def _flatten(cfg, prefix=""):
  out = {}
  for k, v in cfg.items():
    key = f"{prefix}{k}"
    if hasattr(v, "items") and key not in _FREE:
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def check_config(config) -> None:
  """Raises ConfigError for unknown keys, missing keys, wrong types and out-of-range values."""
  flat = _flatten(config)
  for key in _REQUIRED:
    if key not in flat:
      raise ConfigError(f"config.{key}: required but missing")
  for key, value in flat.items():
    if key in _FREE:
      continue
    if key not in _SPEC:
      known = sorted(k for k in _SPEC if k.split(".")[0] == key.split(".")[0]) or sorted(_SPEC)
      raise ConfigError(f"config.{key}: unknown key (a typo?); known keys here: {known}")
    types, pred, desc = _SPEC[key]
    # bool is an int in Python; do not accept True for an int field, nor 1 for a bool.
    ok_type = isinstance(value, types) and not (isinstance(value, bool) and types in (int, _NUM))
    if types is bool:
      ok_type = isinstance(value, bool)
    if not ok_type:
      raise config_error(key, f"{desc} (type {_type_name(types)})", value)
    if pred is not None and not pred(value):
      raise config_error(key, desc, value)
  if flat["eval_batch_size"] <= 0:
    raise config_error("eval_batch_size", "an int > 0", flat["eval_batch_size"])


def apply_override(config, item: str) -> None:
  """Applies ``'key.sub=value'`` to ``config`` in place, as ``--config.key.sub=value`` would.

  The value is read as a Python literal (``3e-4``, ``True``, ``None``,
  ``(32, 64)``), else kept as a string.

  Raises:
    ConfigError: ``item`` has no ``=`` or names a missing parent key.

  Example:

  >>> import ml_collections
  >>> c = ml_collections.ConfigDict({"model": {"cell": "relu"}, "lr": 0.1})
  >>> apply_override(c, "model.cell=lstm"); apply_override(c, "lr=3e-4")
  >>> c.model.cell, c.lr
  ('lstm', 0.0003)
  """
  import ast  # pylint: disable=g-import-not-at-top
  if "=" not in item:
    raise ConfigError(f"override {item!r}: expected key=value, e.g. model.cell=lstm")
  key, value = item.split("=", 1)
  try:
    value = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    pass
  node = config
  *parents, leaf = key.split(".")
  for i, part in enumerate(parents):
    if part not in node:
      raise ConfigError(f"override {item!r}: config has no key {'.'.join(parents[:i + 1])!r}")
    node = node[part]
  try:
    node[leaf] = value
  except (TypeError, ValueError, KeyError, AttributeError) as e:  # ml_collections' type safety
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"config.{key}: cannot take {value!r} ({first})") from None


def _flatten_json(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  if isinstance(d, dict):
    for k, v in d.items():
      out.update(_flatten_json(v, f"{prefix}{k}."))
  else:
    out[prefix[:-1]] = d
  return out


def _config_dict(config) -> dict:
  import json  # pylint: disable=g-import-not-at-top
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def describe_config_changes(saved_json, config) -> str:
  """Lines naming the config keys whose values differ between ``saved_json`` (a workdir's
  ``config.json``) and ``config``; an empty string when the file is missing or unreadable."""
  import json  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(saved_json)
  try:
    old = _flatten_json(json.loads(path.read_text()))
  except (OSError, ValueError):
    return ""
  new = _flatten_json(_config_dict(config))
  keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
  if not keys:
    return f"{path} holds the same config values.\n"
  lines = [f"  config.{k}: {old.get(k, '<unset>')!r} when the checkpoint was written, now "
           f"{new.get(k, '<unset>')!r}" for k in keys[:12]]
  if len(keys) > 12:
    lines.append(f"  ... and {len(keys) - 12} more")
  return f"Config keys that differ from {path}:\n" + "\n".join(lines) + "\n"


def write_config_json(workdir, config) -> None:
  """Writes ``workdir/config.json``; an earlier one with other values is kept as ``config.<n>.json``."""
  import pathlib  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(workdir) / "config.json"
  text = config.to_json_best_effort(indent=2)
  if path.exists():
    old = path.read_text()
    if old == text:
      return
    n = 1
    while (path.parent / f"config.{n}.json").exists():
      n += 1
    path.rename(path.parent / f"config.{n}.json")
  path.write_text(text)
