"""grain pipelines: shuffle, batch and preprocess records; per-process sharding.

The training pipeline is a ``grain.MapDataset``: every element is a pure
function of (seed, index), so the iterator's whole state is one small dict
(``get_state()``), saved in each checkpoint, and a resumed run reads exactly the
batches an uninterrupted run would have read. Each epoch is shuffled anew from
the seed. In a multi-process run, process ``p`` of ``n`` reads records
``p, p + n, ...`` and builds its ``batch_size / n`` share of each global batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import grain
import numpy as np

from aila_jax.data.sources import DatasetSpec
from aila_jax.errors import ConfigError

AUGMENTATIONS = ("none", "crop_flip")


@dataclasses.dataclass(frozen=True)
class Normalize:
  """uint8 images -> float32 ``(x / 255 - mean) / std``; labels -> int32."""
  mean: tuple[float, ...]
  std: tuple[float, ...]

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(batch)
    image = batch["image"].astype(np.float32) / 255.0
    out["image"] = (image - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
    out["label"] = batch["label"].astype(np.int32)
    return out


def random_crop_flip(batch: dict[str, np.ndarray], rng: np.random.Generator, *, pad: int = 4):
  """Standard CIFAR augmentation on a uint8 batch: pad by ``pad`` (zeros), random crop, random h-flip."""
  images = batch["image"]  # (B, H, W, C)
  b, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dy = rng.integers(0, 2 * pad + 1, size=b)
  dx = rng.integers(0, 2 * pad + 1, size=b)
  rows = dy[:, None] + np.arange(h)[None, :]  # (B, H)
  cols = dx[:, None] + np.arange(w)[None, :]  # (B, W)
  flip = rng.random(b) < 0.5
  cols = np.where(flip[:, None], cols[:, ::-1], cols)
  out = dict(batch)
  out["image"] = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return out


def _shard(ds: grain.MapDataset, process_index: int, process_count: int) -> grain.MapDataset:
  return ds[process_index::process_count] if process_count > 1 else ds


def local_batch_size(global_batch_size: int, process_count: int, *, key: str = "batch_size") -> int:
  if global_batch_size % process_count:
    raise ConfigError(f"config.{key}: {global_batch_size} is not divisible by the "
                      f"{process_count} processes")
  return global_batch_size // process_count


def train_dataset(source, spec: DatasetSpec, *, batch_size: int, seed: int, augment: str = "none",
                  process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """An infinite, reshuffled-each-epoch, batched and preprocessed training dataset.

  Batches never straddle epochs' order in a way that depends on the run's
  history: element ``i`` of the returned dataset depends only on ``(seed, i)``.
  """
  if augment not in AUGMENTATIONS:
    raise ConfigError(f"config.augment: expected one of {AUGMENTATIONS}, got {augment!r}")
  bs = local_batch_size(batch_size, process_count)
  ds = _shard(grain.MapDataset.source(source), process_index, process_count)
  if len(ds) < bs:
    raise ConfigError(f"config.batch_size: per-process batch {bs} exceeds the {len(ds)} training "
                      "records this process reads")
  ds = ds.seed(seed).shuffle().repeat(None).batch(bs, drop_remainder=True)
  if augment == "crop_flip":
    ds = ds.random_map(random_crop_flip)
  return ds.map(Normalize(spec.mean, spec.std))


def make_iterator(ds: grain.MapDataset, *, worker_count: int = 0) -> grain.DatasetIterator:
  """An iterator with ``get_state()``/``set_state()``; ``worker_count`` > 0 uses processes."""
  it = ds.to_iter_dataset()
  if worker_count > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iter(it)


def eval_batches(source, spec: DatasetSpec, *, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Every record of ``source`` once, in order, in batches padded to ``batch_size``.

  Each batch carries ``mask`` (1.0 for real records, 0.0 for padding); every
  process yields the same number of batches, so a multi-process eval never
  waits on a process that ran out.
  """
  bs = local_batch_size(batch_size, process_count, key="eval_batch_size")
  ds = _shard(grain.MapDataset.source(source), process_index, process_count)
  per_process = -(-len(source) // process_count)
  num_batches = -(-per_process // bs)
  normalize = Normalize(spec.mean, spec.std)
  batched = ds.batch(bs, drop_remainder=False).map(normalize)
  empty = None
  for i in range(num_batches):
    if i < len(batched):
      batch = batched[i]
      n = len(batch["label"])
    else:  # this process has fewer records than the largest shard
      batch, n = empty or {k: v[:0] for k, v in batched[0].items()}, 0
    mask = np.zeros((bs,), np.float32)
    mask[:n] = 1.0
    padded = {k: np.concatenate([v, np.zeros((bs - n,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
    padded["mask"] = mask
    yield padded


def batch_spec(spec: DatasetSpec, batch_size: int) -> dict[str, Any]:
  """Shapes/dtypes of one global training batch, for initialising models before data flows."""
  return {"image": np.zeros((batch_size,) + spec.image_shape, np.float32),
          "label": np.zeros((batch_size,), np.int32)}
