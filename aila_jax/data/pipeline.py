"""grain pipelines: shuffle, batch, augment and preprocess records; per-process sharding.

The training pipeline is a ``grain.MapDataset``: every element is a pure
function of (seed, index), so the iterator's whole state is one small dict
(``get_state()``), saved in each checkpoint, and a resumed run reads exactly the
batches an uninterrupted run would have read. Each epoch is shuffled anew from
the seed. In a multi-process run, process ``p`` of ``n`` reads records
``p, p + n, ...`` and builds its ``batch_size / n`` share of each global batch.
Augmentation and preprocessing act on whole numpy batches (vectorised).

Sources with a batched read, ``source.get_batch(rows) -> Batch`` (the in-memory
:class:`~aila_jax.data.sources.ArraySource` that every offline dataset builds,
and the generated MNIST variants), are read a batch at a time: batch ``i`` is
``get_batch`` of the rows ``perm_e[j * B:(j + 1) * B]`` of this process's share,
with ``e, j = divmod(i, records // B)`` and ``perm_e`` a permutation drawn from
``(seed, e)``; the last ``records % B`` records of each epoch's order are
dropped. Other sources (TFDS) go record by record through grain's shuffle and
batch. Both give every record once per epoch, reshuffled per epoch.
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


def _check_batch(num_records: int, bs: int) -> None:
  if num_records < bs:
    raise ConfigError(f"config.batch_size: per-process batch {bs} exceeds the {num_records} training "
                      "records this process reads")


def _share_rows(rows: np.ndarray, process_index: int, process_count: int) -> np.ndarray:
  """Rows of this process's share ``p, p + n, ...`` -> rows of the whole source."""
  return rows * process_count + process_index


def _share_size(num_records: int, process_index: int, process_count: int) -> int:
  return len(range(process_index, num_records, process_count))


class _EpochGather:
  """Batch ``i`` of an endless stream of epochs, each in its own order, as one ``get_batch``.

  Epoch ``e``'s order is ``default_rng([seed, e]).permutation(records)`` over
  this process's share; it is computed once per epoch (per process or worker)
  and kept until the next.
  """

  def __init__(self, source, batch_size: int, seed: int, process_index: int, process_count: int):
    self._source = source
    self._records = _share_size(len(source), process_index, process_count)
    _check_batch(self._records, batch_size)
    self._bs = batch_size
    self._seed = int(seed)
    self._share = (process_index, process_count)
    self.batches_per_epoch = self._records // batch_size
    self._epoch, self._perm = -1, None

  def __call__(self, index: int, _) -> Batch:
    epoch, j = divmod(int(index), self.batches_per_epoch)
    if epoch != self._epoch:
      self._perm = np.random.default_rng([self._seed, epoch]).permutation(self._records)
      self._epoch = epoch
    rows = self._perm[j * self._bs:(j + 1) * self._bs]
    return self._source.get_batch(_share_rows(rows, *self._share))


def train_dataset(source, *, preprocess: Callable[[Batch], Batch], batch_size: int, seed: int,
                  augment: Callable[[Batch, np.random.Generator], Batch] | None = None,
                  process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """An infinite, reshuffled-each-epoch, batched, augmented and preprocessed training dataset.

  Element ``i`` of the returned dataset depends only on ``(seed, i)``.
  """
  bs = local_batch_size(batch_size, process_count)
  if hasattr(source, "get_batch"):  # batched reads: one call per batch
    gather = _EpochGather(source, bs, seed, process_index, process_count)
    ds = grain.MapDataset.range(gather.batches_per_epoch).seed(seed).repeat(None).map_with_index(gather)
  else:
    ds = _shard(grain.MapDataset.source(source), process_index, process_count)
    _check_batch(len(ds), bs)
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


def _first_batch(source, preprocess: Callable[[Batch], Batch]) -> Batch:
  """The first record of ``source`` as a preprocessed batch of one: the fields' shapes and dtypes."""
  if hasattr(source, "get_batch"):
    return preprocess(source.get_batch(np.arange(1)))
  return grain.MapDataset.source(source).batch(1).map(preprocess)[0]


def eval_batches(source, *, preprocess: Callable[[Batch], Batch], batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[Batch]:
  """Every record of ``source`` once, in order, in batches padded to ``batch_size``.

  Each batch carries ``mask`` (1.0 for real records, 0.0 for padding); every
  process yields the same number of batches, so a multi-process eval never
  waits on a process that ran out.
  """
  bs = local_batch_size(batch_size, process_count, key="eval_batch_size")
  per_process = -(-len(source) // process_count)
  num_batches = -(-per_process // bs)
  if hasattr(source, "get_batch"):  # batched reads of consecutive rows
    share = _share_size(len(source), process_index, process_count)
    batched = [preprocess(source.get_batch(_share_rows(np.arange(i, min(i + bs, share)), process_index,
                                                       process_count)))
               for i in range(0, share, bs)]
  else:
    ds = _shard(grain.MapDataset.source(source), process_index, process_count)
    batched = ds.batch(bs, drop_remainder=False).map(preprocess)
  for i in range(num_batches):
    if i < len(batched):
      batch = batched[i]
      n = len(next(iter(batch.values())))
    else:  # this process has fewer records than the largest shard (or none: fewer records than processes)
      like = batched[0] if len(batched) else _first_batch(source, preprocess)
      batch, n = {k: v[:0] for k, v in like.items()}, 0
    mask = np.zeros((bs,), np.float32)
    mask[:n] = 1.0
    padded = {k: np.concatenate([v, np.zeros((bs - n,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
    padded["mask"] = mask
    yield padded
