r"""MNIST variants of the RAM paper: translated and cluttered digits on a larger canvas.

"Recurrent Models of Visual Attention" (Mnih et al., NIPS 2014, section 4.1):

* ``translated_mnist``: each 28x28 digit placed at a uniformly random position
  of a blank 60x60 canvas;
* ``cluttered_mnist_60``: the same, plus 4 random 8x8 fragments of other
  digits placed at random positions;
* ``cluttered_mnist_100``: a 100x100 canvas with 8 fragments.

Generated deterministically from MNIST (the local ``mnist.npz`` of the data
folder, or TFDS's ``mnist``): record ``i`` of a split is a pure function of
``(dataset_kwargs.seed, variant, split, i)``. The random layout of a whole
split (digit offsets, fragment sources, crop offsets and positions; a few
integers per record) is drawn once, vectorised, when the source is built, and
each record is composed on demand in ``__getitem__`` (a few array slices), so
nothing is cached on disk and no copy of the data is written anywhere.
Fragments of the test split are cut from *test* images only (and those of the
train split from train images), never from the record's own digit. Pixels
combine by maximum (so the canvas stays uint8 and a fragment never darkens the
digit).

Records have the MNIST format, ``{'image': uint8 [H, W, 1], 'label': int64}``,
so the common grain pipeline reads them; preprocessing scales to [0, 1]
(background exactly 0, the value the glimpse sensor reads outside the image).
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from aila_jax.data import sources
from aila_jax.data.datasets import Dataset, Normalize, check_kwargs, register_dataset
from aila_jax.errors import ConfigError, DataError

__all__ = ["VARIANTS", "MnistVariantSource", "VariantSpec"]

_SPLIT_IDS = {"train": 0, "test": 1}
DIGIT = 28


@dataclasses.dataclass(frozen=True)
class VariantSpec:
  """A canvas of ``canvas x canvas`` pixels with ``num_fragments`` clutter fragments."""
  canvas: int
  num_fragments: int = 0
  fragment_size: int = 8


VARIANTS = {
    "translated_mnist": VariantSpec(canvas=60),
    "cluttered_mnist_60": VariantSpec(canvas=60, num_fragments=4),
    "cluttered_mnist_100": VariantSpec(canvas=100, num_fragments=8),
}


class MnistVariantSource:
  """Random-access source of translated / cluttered MNIST records (grain's protocol).

  Args:
    images: ``[N, 28, 28]`` uint8 digits of one split.
    labels: ``[N]`` integer labels.
    spec: the canvas and clutter.
    seed: generation seed (``config.dataset_kwargs.seed``).
    split: ``'train'`` or ``'test'`` (part of the random stream).
    name: the variant's name (part of the random stream).
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray, spec: VariantSpec, *, seed: int,
               split: str, name: str):
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
      images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (DIGIT, DIGIT) or images.dtype != np.uint8:
      raise DataError(f"{name}:{split}: base images must be uint8 [N, 28, 28] (MNIST), got "
                      f"{images.shape} {images.dtype}")
    n = len(images)
    if n < 2 and spec.num_fragments:
      raise DataError(f"{name}:{split}: clutter needs at least 2 base images, got {n}")
    if split not in _SPLIT_IDS:
      raise ConfigError(f"{name}: unknown split {split!r}; expected one of {sorted(_SPLIT_IDS)}")
    self.images, self.labels = images, np.asarray(labels).astype(np.int64)
    self.spec, self.name, self.split, self.seed = spec, name, split, int(seed)
    rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], zlib.crc32(name.encode())])
    c, f, k = spec.canvas, spec.fragment_size, spec.num_fragments
    self.digit_offsets = rng.integers(0, c - DIGIT + 1, size=(n, 2))  # (N, 2) top-left (row, col)
    sources_ = rng.integers(0, max(n - 1, 1), size=(n, k))  # (N, F) another image of the split
    self.fragment_sources = sources_ + (sources_ >= np.arange(n)[:, None])
    self.fragment_crops = rng.integers(0, DIGIT - f + 1, size=(n, k, 2))  # (N, F, 2)
    self.fragment_offsets = rng.integers(0, c - f + 1, size=(n, k, 2))  # (N, F, 2)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    i = int(index)
    c, f = self.spec.canvas, self.spec.fragment_size
    canvas = np.zeros((c, c), np.uint8)
    for j in range(self.spec.num_fragments):
      (sr, sc), (r, col) = self.fragment_crops[i, j], self.fragment_offsets[i, j]
      piece = self.images[self.fragment_sources[i, j], sr:sr + f, sc:sc + f]
      np.maximum(canvas[r:r + f, col:col + f], piece, out=canvas[r:r + f, col:col + f])
    r, col = self.digit_offsets[i]
    np.maximum(canvas[r:r + DIGIT, col:col + DIGIT], self.images[i],
               out=canvas[r:r + DIGIT, col:col + DIGIT])
    return {"image": canvas[:, :, None], "label": self.labels[i]}

  def get_batch(self, rows) -> dict[str, np.ndarray]:
    """Records ``rows`` stacked, composed for the whole batch at once (equal to ``__getitem__``).

    Each fragment slot, then the digit, is pasted into every canvas with one
    fancy-indexed maximum: ``{'image': uint8 [B, H, W, 1], 'label': int64 [B]}``.
    """
    rows = np.asarray(rows, np.int64)
    c, f = self.spec.canvas, self.spec.fragment_size
    canvas = np.zeros((len(rows), c, c), np.uint8)
    batch = np.arange(len(rows))[:, None, None]  # (B, 1, 1)

    def paste(pieces, top_left, size):  # pieces (B, size, size); top_left (B, 2)
      span = np.arange(size)
      r = top_left[:, 0, None, None] + span[None, :, None]  # (B, size, 1)
      col = top_left[:, 1, None, None] + span[None, None, :]  # (B, 1, size)
      canvas[batch, r, col] = np.maximum(canvas[batch, r, col], pieces)

    span = np.arange(f)
    for j in range(self.spec.num_fragments):
      crop = self.fragment_crops[rows, j]  # (B, 2)
      pieces = self.images[self.fragment_sources[rows, j][:, None, None],
                           crop[:, 0, None, None] + span[None, :, None],
                           crop[:, 1, None, None] + span[None, None, :]]  # (B, f, f)
      paste(pieces, self.fragment_offsets[rows, j], f)
    paste(self.images[rows], self.digit_offsets[rows], DIGIT)
    return {"image": canvas[..., None], "label": self.labels[rows]}

  def __repr__(self) -> str:
    return f"MnistVariantSource({self.name}:{self.split}, {len(self)} records, seed {self.seed})"


def _base_arrays(source) -> tuple[np.ndarray, np.ndarray]:
  """The digits and labels of an MNIST source (local ArraySource or TFDS data source)."""
  if isinstance(source, sources.ArraySource):
    return source.arrays["image"], source.arrays["label"]
  records = [source[i] for i in range(len(source))]
  return (np.stack([np.asarray(r["image"]) for r in records]),
          np.asarray([r["label"] for r in records], np.int64))


def build_variant(config, name: str) -> Dataset:
  """The train/test sources of variant ``name`` of ``VARIANTS``."""
  spec = VARIANTS[name]
  kwargs = check_kwargs(config.get("dataset_kwargs", {}) or {}, {"seed": 0}, dataset=name)
  seed = kwargs["seed"]
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ConfigError(f"config.dataset_kwargs.seed: expected an int >= 0, got {seed!r}")
  if config.get("augment", "none") != "none":
    raise ConfigError(f"config.augment: dataset {name!r} takes no augmentation (its translations "
                      f"are part of the data); expected 'none', got {config.get('augment')!r}")
  kw = dict(data_dir=config.get("data_dir"), kind=config.get("data_source", "auto"),
            download=config.get("tfds_download", False))
  splits = {}
  for split in ("train", "test"):
    base = sources.get_source("mnist", split, **kw)
    sources.check_source(base, sources.DATASETS["mnist"], split=split)
    images, labels = _base_arrays(base)
    splits[split] = MnistVariantSource(images, labels, spec, seed=seed, split=split, name=name)
  preprocess = Normalize((0.0,), (1.0,))
  shape = (spec.canvas, spec.canvas, 1)
  example = preprocess({"image": np.zeros((1,) + shape, np.uint8), "label": np.zeros(1, np.int64)})
  return Dataset(name=name, train=splits["train"], eval={"test": splits["test"]},
                 preprocess=preprocess, example=example, model_kwargs={"num_classes": 10},
                 info={"image_shape": shape, "seed": seed, **dataclasses.asdict(spec)})


for _name in VARIANTS:
  register_dataset(_name)(lambda config, _name=_name: build_variant(config, _name))
