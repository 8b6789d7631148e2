"""grain pipelines: shuffle, batch, augment and preprocess records; per-process sharding.

The training pipeline is a ``grain.MapDataset``: every element is a pure
function of (seed, index), so the iterator's whole state is one small dict
(``get_state()``), saved in each checkpoint, and a resumed run reads exactly the
batches an uninterrupted run would have read. Each epoch is shuffled anew from
the seed. In a multi-process run, process ``p`` of ``n`` reads records
``p, p + n, ...`` and builds its ``batch_size / n`` share of each global batch.
Augmentation and preprocessing act on whole numpy batches (vectorised).
"""

from __future__ import annotations

from typing import Callable, Iterator

import grain
import numpy as np

from aila_jax.data.datasets import Batch
from aila_jax.errors import ConfigError


def _shard(ds: grain.MapDataset, process_index: int, process_count: int) -> grain.MapDataset:
  return ds[process_index::process_count] if process_count > 1 else ds


def local_batch_size(global_batch_size: int, process_count: int, *, key: str = "batch_size") -> int:
  if global_batch_size % process_count:
    raise ConfigError(f"config.{key}: {global_batch_size} is not divisible by the "
                      f"{process_count} processes")
  return global_batch_size // process_count


def train_dataset(source, *, preprocess: Callable[[Batch], Batch], batch_size: int, seed: int,
                  augment: Callable[[Batch, np.random.Generator], Batch] | None = None,
                  process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """An infinite, reshuffled-each-epoch, batched, augmented and preprocessed training dataset.

  Element ``i`` of the returned dataset depends only on ``(seed, i)``.
  """
  bs = local_batch_size(batch_size, process_count)
  ds = _shard(grain.MapDataset.source(source), process_index, process_count)
  if len(ds) < bs:
    raise ConfigError(f"config.batch_size: per-process batch {bs} exceeds the {len(ds)} training "
                      "records this process reads")
  ds = ds.seed(seed).shuffle().repeat(None).batch(bs, drop_remainder=True)
  if augment is not None:
    ds = ds.random_map(augment)
  return ds.map(preprocess)


def make_iterator(ds: grain.MapDataset, *, worker_count: int = 0) -> grain.DatasetIterator:
  """An iterator with ``get_state()``/``set_state()``; ``worker_count`` > 0 uses processes."""
  it = ds.to_iter_dataset()
  if worker_count > 0:
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; notebooks/tests parse none
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iter(it)


def eval_batches(source, *, preprocess: Callable[[Batch], Batch], batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[Batch]:
  """Every record of ``source`` once, in order, in batches padded to ``batch_size``.

  Each batch carries ``mask`` (1.0 for real records, 0.0 for padding); every
  process yields the same number of batches, so a multi-process eval never
  waits on a process that ran out.
  """
  bs = local_batch_size(batch_size, process_count, key="eval_batch_size")
  ds = _shard(grain.MapDataset.source(source), process_index, process_count)
  per_process = -(-len(source) // process_count)
  num_batches = -(-per_process // bs)
  batched = ds.batch(bs, drop_remainder=False).map(preprocess)
  for i in range(num_batches):
    if i < len(batched):
      batch = batched[i]
      n = len(next(iter(batch.values())))
    else:  # this process has fewer records than the largest shard
      batch, n = {k: v[:0] for k, v in batched[0].items()}, 0
    mask = np.zeros((bs,), np.float32)
    mask[:n] = 1.0
    padded = {k: np.concatenate([v, np.zeros((bs - n,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
    padded["mask"] = mask
    yield padded
