"""Data sources: random-access records from TFDS or from local offline files.

Both kinds of source yield the same records (``{'image': uint8 [H, W, C],
'label': int64}``), so everything downstream -- the grain pipeline, batching,
sharding -- is one code path:

* ``tfds``: ``tfds.data_source(name, split=..., data_dir=..., download=...)``,
  array_record files read without TensorFlow (for users online, or with a
  prepared TFDS directory).
* ``local``: the compact offline copies described in ``shared/data/README.md``
  (``mnist.npz``, ``cifar10_jpeg_bytes.npz``), read from ``data_dir``.

The data directory comes from ``config.data_dir`` or, when that is unset, from
the environment variable ``AILA_DATA_DIR``; it is never a path baked into the
library.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import zipfile
from typing import Any, Callable, Mapping

import numpy as np

from aila_jax.errors import ConfigError, DataError

DATA_DIR_ENV = "AILA_DATA_DIR"


class ArraySource:
  """A random-access source over equally long numpy arrays (one record per row).

  Implements the ``RandomAccessDataSource`` protocol that grain reads
  (``__len__`` and ``__getitem__``), like ``tfds.data_source`` does, and
  ``get_batch(rows)``, the batched read the pipeline prefers.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], *, name: str = "arrays"):
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise DataError(f"{name}: arrays have different lengths {lengths}")
    self._arrays = dict(arrays)
    self._len = next(iter(lengths.values()))
    self.name = name

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in self._arrays.items()}

  def get_batch(self, rows) -> dict[str, np.ndarray]:
    """The records ``rows`` (an int array) stacked: one fancy-index gather per array."""
    rows = np.asarray(rows, np.int64)
    return {k: v[rows] for k, v in self._arrays.items()}

  @property
  def arrays(self) -> Mapping[str, np.ndarray]:
    return self._arrays

  def __repr__(self) -> str:
    shapes = {k: (v.shape, str(v.dtype)) for k, v in self._arrays.items()}
    return f"ArraySource({self.name}, {shapes})"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a dataset is: its TFDS name, its offline file and its record format."""
  name: str
  tfds_name: str
  splits: tuple[str, ...]
  image_shape: tuple[int, int, int]
  num_classes: int
  local_file: str
  load_local: Callable[[pathlib.Path, str], ArraySource]
  mean: tuple[float, ...]  # per-channel mean on [0, 1], from the train split
  std: tuple[float, ...]


def _require_keys(npz, path, keys):
  missing = [k for k in keys if k not in npz.files]
  if missing:
    raise DataError(f"{path}: missing arrays {missing}; expected arrays {list(keys)}, found {npz.files}")


def _check_array(path, key, arr, shape, dtype_kind):
  """`shape` may hold None for 'any length'."""
  ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
  if not ok or arr.dtype.kind not in dtype_kind:
    want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
    raise DataError(
        f"{path}: array '{key}' has shape {arr.shape} and dtype {arr.dtype}; expected shape {want} "
        f"and dtype kind {dtype_kind!r} (u=unsigned int, i=int)")


def _load_mnist(path: pathlib.Path, split: str) -> ArraySource:
  with np.load(path) as npz:
    _require_keys(npz, path, [f"x_{split}", f"y_{split}"])
    x, y = npz[f"x_{split}"], npz[f"y_{split}"]
  _check_array(path, f"x_{split}", x, (None, 28, 28), "u")
  _check_array(path, f"y_{split}", y, (len(x),), "iu")
  if y.size and (y.min() < 0 or y.max() > 9):
    raise DataError(f"{path}: labels 'y_{split}' must lie in [0, 9], found [{y.min()}, {y.max()}]")
  return ArraySource({"image": x[..., None].astype(np.uint8), "label": y.astype(np.int64)},
                     name=f"mnist:{split}")


def decode_jpeg_array(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """Decodes concatenated JPEG bytes into a uint8 [N, H, W, 3] array with Pillow."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = [np.asarray(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
            for i in range(len(offsets) - 1)]
  return np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8)


def _load_cifar10(path: pathlib.Path, split: str) -> ArraySource:
  with np.load(path) as npz:
    keys = [f"{split}_jpeg", f"{split}_offsets", f"y_{split}"]
    _require_keys(npz, path, keys)
    data, offsets, y = (npz[k] for k in keys)
  _check_array(path, f"{split}_jpeg", data, (None,), "u")
  _check_array(path, f"y_{split}", y, (None,), "iu")
  _check_array(path, f"{split}_offsets", offsets, (len(y) + 1,), "iu")
  x = decode_jpeg_array(data, offsets)
  _check_array(path, f"{split} (decoded)", x, (len(y), 32, 32, 3), "u")
  return ArraySource({"image": x, "label": y.astype(np.int64)}, name=f"cifar10:{split}")


def load_local_file(spec: DatasetSpec, path: pathlib.Path, split: str) -> ArraySource:
  """``spec.load_local(path, split)``, with a file that cannot be read (truncated, not an archive)
  reported as a :class:`DataError` naming the file, its size and what was expected."""
  try:
    return spec.load_local(path, split)
  except DataError:
    raise
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
    size = path.stat().st_size if path.exists() else 0
    raise DataError(
        f"{path}: cannot be read as the {spec.name!r} offline file ({type(e).__name__}: {e}); expected "
        f"{spec.local_file}, a numpy .npz archive as described in the data folder's README; found "
        f"{size:,} bytes (a truncated or partial copy?)") from None


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist", tfds_name="mnist", splits=("train", "test"), image_shape=(28, 28, 1),
        num_classes=10, local_file="mnist.npz", load_local=_load_mnist,
        mean=(0.1307,), std=(0.3081,)),
    "cifar10": DatasetSpec(
        name="cifar10", tfds_name="cifar10", splits=("train", "test"), image_shape=(32, 32, 3),
        num_classes=10, local_file="cifar10_jpeg_bytes.npz", load_local=_load_cifar10,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
}


def get_spec(name: str, *, key: str = "dataset") -> DatasetSpec:
  if name not in DATASETS:
    raise ConfigError(f"config.{key}: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
  return DATASETS[name]


def resolve_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path | None:
  """``config.data_dir`` if set, else ``$AILA_DATA_DIR``, else None (TFDS's default)."""
  if data_dir:
    return pathlib.Path(data_dir).expanduser()
  env = os.environ.get(DATA_DIR_ENV)
  return pathlib.Path(env).expanduser() if env else None


def get_source(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
               kind: str = "auto", download: bool = False) -> Any:
  """Returns a random-access source of ``{'image', 'label'}`` records.

  Args:
    name: dataset name, a key of ``DATASETS``.
    split: ``'train'`` or ``'test'``.
    data_dir: the data folder (``config.data_dir``); falls back to ``$AILA_DATA_DIR``.
    kind: ``'local'`` (offline files), ``'tfds'`` (``tfds.data_source``) or
      ``'auto'``: local when the data folder holds the dataset's offline file,
      TFDS otherwise.
    download: let TFDS download and prepare the dataset if it is not there.
  """
  spec = get_spec(name)
  if split not in spec.splits:
    raise ConfigError(f"dataset {name!r} has no split {split!r}; expected one of {spec.splits}")
  root = resolve_data_dir(data_dir)
  if kind not in ("auto", "local", "tfds"):
    raise ConfigError(f"config.data_source: expected 'auto', 'local' or 'tfds', got {kind!r}")
  auto = kind == "auto"
  if auto:
    kind = "local" if root is not None and (root / spec.local_file).exists() else "tfds"
  if kind == "local":
    if root is None:
      raise ConfigError(
          f"config.data_dir: no data directory given for the local {name!r} files; set "
          f"--config.data_dir=DIR or ${DATA_DIR_ENV} to the folder holding {spec.local_file}")
    if not root.is_dir():
      raise ConfigError(f"config.data_dir: {str(root)!r} is not a directory "
                        f"(expected the folder holding {spec.local_file})")
    path = root / spec.local_file
    if not path.exists():
      raise ConfigError(f"config.data_dir: {str(root)!r} holds no {spec.local_file} for dataset {name!r}")
    return load_local_file(spec, path, split)
  # TFDS: TensorFlow is not needed for data_source (array_record files).
  if root is not None and not root.is_dir():
    raise ConfigError(f"config.data_dir: {str(root)!r} is not a directory")
  if auto and root is not None and not download and not (root / spec.tfds_name).is_dir():
    raise DataError(
        f"config.data_dir: {str(root)!r} holds neither {spec.local_file} (the offline copy of {name!r}) "
        f"nor a TFDS-prepared {spec.tfds_name}/ folder; put {spec.local_file} there, point config.data_dir "
        f"(or ${DATA_DIR_ENV}) at the folder that holds it, or set --config.tfds_download=True online.")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.data_source(spec.tfds_name, split=split, data_dir=None if root is None else str(root),
                            download=download)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
        f"TFDS could not open {spec.tfds_name!r} split {split!r} in "
        f"{str(root) if root else 'the TFDS default directory'} (download={download}): {e}. "
        f"Offline, point config.data_dir or ${DATA_DIR_ENV} at a folder holding {spec.local_file}; "
        f"online, set --config.tfds_download=True.") from e


def check_source(source, spec: DatasetSpec, *, split: str) -> None:
  """Checks the first record's shapes and dtypes against the spec before anything compiles."""
  if len(source) == 0:
    raise DataError(f"{spec.name}:{split} is empty")
  record = source[0]
  for key in ("image", "label"):
    if key not in record:
      raise DataError(f"{spec.name}:{split}: records lack field {key!r}; found {sorted(record)}")
  image = np.asarray(record["image"])
  if image.shape != spec.image_shape or image.dtype != np.uint8:
    raise DataError(f"{spec.name}:{split}: 'image' has shape {image.shape} and dtype {image.dtype}; "
                    f"expected {spec.image_shape} uint8")
  label = np.asarray(record["label"])
  if label.shape != () or label.dtype.kind not in "iu":
    raise DataError(f"{spec.name}:{split}: 'label' has shape {label.shape} and dtype {label.dtype}; "
                    "expected an integer scalar")
