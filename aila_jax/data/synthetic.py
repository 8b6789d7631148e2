"""Synthetic sequence-to-sequence tasks for CI: ``copy`` and ``reverse``.

Each example is a random string of content tokens :math:`x_1 \\ldots x_n`
(``n`` uniform in ``[min_length, max_length]``, tokens uniform in
``[3, vocab_size)``), generated in memory and deterministic from
``dataset_kwargs.seed``. In the translation batch format of the library:

* ``inputs``  ``int32[max_length + 1]``: :math:`x_1 \\ldots x_n` EOS, then 0;
* ``targets`` ``int32[max_length + 1]``: :math:`x_1 \\ldots x_n` EOS (copy)
  or :math:`x_n \\ldots x_1` EOS (reverse), then 0 (no BOS: the model shifts).

Ids: 0 = padding, 1 = BOS, 2 = EOS. Options (``config.dataset_kwargs``):
``min_length``, ``max_length``, ``vocab_size`` (including the 3 special ids),
``num_train``, ``num_test``, ``seed``. The train and test sets come from
independent streams of one ``numpy`` seed sequence.
"""

from __future__ import annotations

import numpy as np

from aila_jax.data.datasets import Batch, Dataset, check_kwargs, register_dataset
from aila_jax.data.sources import ArraySource
from aila_jax.errors import ConfigError

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
NUM_SPECIAL = 3

DEFAULTS = dict(min_length=1, max_length=8, vocab_size=16, num_train=10_000,
                num_test=1_000, seed=0)


def make_examples(task: str, num: int, *, min_length: int, max_length: int,
                  vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """``num`` examples of ``task`` (``'copy'`` or ``'reverse'``) as int32 arrays.

  Example:

  >>> ex = make_examples("reverse", 2, min_length=3, max_length=3,
  ...                    vocab_size=10, rng=np.random.default_rng(0))
  >>> ex["inputs"].shape, bool((ex["targets"][:, :3] == ex["inputs"][:, 2::-1]).all())
  ((2, 4), True)
  """
  if task not in ("copy", "reverse"):
    raise ValueError(f"task must be 'copy' or 'reverse'; got {task!r}")
  width = max_length + 1
  lengths = rng.integers(min_length, max_length + 1, size=num)  # (N,)
  content = rng.integers(NUM_SPECIAL, vocab_size, size=(num, max_length))
  pos = np.arange(width)[None, :]  # (1, W)
  n = lengths[:, None]  # (N, 1)
  padded = np.concatenate([content, np.zeros((num, 1), content.dtype)], 1)
  inputs = np.where(pos < n, padded, np.where(pos == n, EOS_ID, PAD_ID))
  if task == "copy":
    targets = inputs.copy()
  else:  # target position p < n reads input position n - 1 - p
    src = np.clip(n - 1 - pos, 0, max_length - 1)
    rev = np.take_along_axis(padded, src, axis=1)
    targets = np.where(pos < n, rev, np.where(pos == n, EOS_ID, PAD_ID))
  return {"inputs": inputs.astype(np.int32), "targets": targets.astype(np.int32)}


def _preprocess(batch: Batch) -> Batch:
  out = dict(batch)
  out["inputs"] = np.asarray(batch["inputs"], np.int32)
  out["targets"] = np.asarray(batch["targets"], np.int32)
  return out


def _check(opts: dict) -> None:
  for key in DEFAULTS:
    if not isinstance(opts[key], (int, np.integer)) or isinstance(opts[key], bool):
      raise ConfigError(f"config.dataset_kwargs.{key}: expected an int, got {opts[key]!r}")
  if opts["vocab_size"] < NUM_SPECIAL + 1:
    raise ConfigError(f"config.dataset_kwargs.vocab_size: expected >= {NUM_SPECIAL + 1} "
                      f"(ids 0, 1, 2 are padding, BOS, EOS), got {opts['vocab_size']}")
  if not 1 <= opts["min_length"] <= opts["max_length"]:
    raise ConfigError(f"config.dataset_kwargs.min_length: expected 1 <= min_length <= "
                      f"max_length ({opts['max_length']}), got {opts['min_length']}")
  for key in ("num_train", "num_test"):
    if opts[key] < 1:
      raise ConfigError(f"config.dataset_kwargs.{key}: expected an int >= 1, got {opts[key]}")
  if opts["seed"] < 0:
    raise ConfigError(f"config.dataset_kwargs.seed: expected an int >= 0, got {opts['seed']}")


def synthetic_seq2seq(config, task: str) -> Dataset:
  """The ``copy`` / ``reverse`` :class:`Dataset` from ``config.dataset_kwargs``."""
  opts = check_kwargs(dict(config.get("dataset_kwargs", {}) or {}), DEFAULTS, dataset=task)
  _check(opts)
  train_rng, test_rng = (np.random.default_rng(s) for s in
                         np.random.SeedSequence(opts["seed"]).spawn(2))
  kw = dict(min_length=opts["min_length"], max_length=opts["max_length"],
            vocab_size=opts["vocab_size"])
  train = ArraySource(make_examples(task, opts["num_train"], rng=train_rng, **kw),
                      name=f"{task}/train")
  test = ArraySource(make_examples(task, opts["num_test"], rng=test_rng, **kw),
                     name=f"{task}/test")
  example = _preprocess({k: v[:1] for k, v in train.arrays.items()})
  return Dataset(name=task, train=train, eval={"test": test}, preprocess=_preprocess,
                 example=example,
                 model_kwargs={"vocab_size": opts["vocab_size"],
                               "max_len": opts["max_length"] + 1},
                 info={"pad_id": PAD_ID, "bos_id": BOS_ID, "eos_id": EOS_ID, **opts})


@register_dataset("copy")
def _build_copy(config) -> Dataset:
  return synthetic_seq2seq(config, "copy")


@register_dataset("reverse")
def _build_reverse(config) -> Dataset:
  return synthetic_seq2seq(config, "reverse")
