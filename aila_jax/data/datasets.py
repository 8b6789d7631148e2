"""Datasets by name: ``build_dataset(config) -> Dataset``, the one thing the trainer asks of data.

A :class:`Dataset` bundles random-access sources (train and eval splits), the
batch-level numpy preprocessing and augmentation that the grain pipeline
applies, one preprocessed example (to initialise models and check shapes
before compiling), and the keyword arguments the data imposes on the model
(``num_classes``, vocabulary sizes, ...). New datasets register a builder:

    @register_dataset("my_data")
    def _build(config) -> Dataset: ...

Builders read ``config.data_dir`` / ``$AILA_DATA_DIR`` through
:func:`aila_jax.data.sources.resolve_data_dir` and their own options from
``config.dataset_kwargs``, and raise ConfigError/DataError naming the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from aila_jax.data import sources
from aila_jax.errors import ConfigError

Batch = dict[str, np.ndarray]


@dataclasses.dataclass
class Dataset:
  name: str
  train: Any                                   # random-access source of raw records
  eval: Mapping[str, Any]                      # eval split name -> source
  preprocess: Callable[[Batch], Batch]         # raw batch -> model-ready batch (numpy)
  example: Batch                               # one preprocessed example, batch axis of size 1
  model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  augment: Callable[[Batch, np.random.Generator], Batch] | None = None  # on raw batches
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # config.augment_on='device': augmentation and normalisation in the jitted step
  # (aila_jax/data/device_augment.py); the pipeline then applies its ``host_preprocess`` only
  device_transform: Any = None


_BUILDERS: dict[str, Callable[[Any], Dataset]] = {}


def register_dataset(name: str):
  def wrap(fn):
    _BUILDERS[name] = fn
    return fn
  return wrap


def dataset_names() -> list[str]:
  return sorted(_BUILDERS)


def build_dataset(config) -> Dataset:
  name = config.dataset
  if name not in _BUILDERS:
    raise ConfigError(f"config.dataset: unknown dataset {name!r}; expected one of {dataset_names()}")
  dataset = _BUILDERS[name](config)
  if config.get("augment_on", "host") == "device" and dataset.device_transform is None:
    raise ConfigError(f"config.augment_on='device': dataset {name!r} has no device augmentation; the image "
                      f"datasets have it ({', '.join(sorted(sources.DATASETS))}); use 'host'")
  return dataset


def check_kwargs(kwargs: Mapping[str, Any], allowed: Mapping[str, Any], *, dataset: str) -> dict:
  """``config.dataset_kwargs`` merged over ``allowed`` defaults; unknown keys are an error."""
  unknown = sorted(set(kwargs) - set(allowed))
  if unknown:
    raise ConfigError(f"config.dataset_kwargs: dataset {dataset!r} takes no option(s) {unknown}; "
                      f"it takes {sorted(allowed)}")
  return {**allowed, **kwargs}


# --- image classification (MNIST, CIFAR-10) ---

@dataclasses.dataclass(frozen=True)
class Normalize:
  """uint8 images -> float32 ``(x / 255 - mean) / std``; labels -> int32."""
  mean: tuple[float, ...]
  std: tuple[float, ...]

  def __call__(self, batch: Batch) -> Batch:
    out = dict(batch)
    out["image"] = self.normalise(batch["image"])
    out["label"] = np.asarray(batch["label"]).astype(np.int32)
    return out

  def normalise(self, image, xp=np):
    """``(image / 255 - mean) / std`` in float32, in numpy (the host pipeline) or ``xp=jax.numpy`` (the step)."""
    image = image.astype(xp.float32) / 255.0
    return (image - xp.asarray(self.mean, xp.float32)) / xp.asarray(self.std, xp.float32)


def uint8_images(batch: Batch) -> Batch:
  """What the pipeline does with ``config.augment_on='device'``: images stay uint8, labels become int32."""
  out = dict(batch)
  out["image"] = np.asarray(batch["image"], np.uint8)
  out["label"] = np.asarray(batch["label"]).astype(np.int32)
  return out


def crop_flip_at(images, dy, dx, flip, pad: int, xp=np):
  """``images [B, H, W, C]`` zero-padded by ``pad``, cropped back to ``H x W`` at offsets ``dy, dx [B]`` and
  mirrored along W where ``flip [B]``: one gather, in numpy (the host pipeline) or ``xp=jax.numpy`` (the step)."""
  b, h, w, _ = images.shape
  padded = xp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  rows = dy[:, None] + xp.arange(h)[None, :]  # (B, H)
  cols = dx[:, None] + xp.arange(w)[None, :]  # (B, W)
  cols = xp.where(flip[:, None], cols[:, ::-1], cols)
  return padded[xp.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_crop_flip(batch: Batch, rng: np.random.Generator, *, pad: int = 4) -> Batch:
  """Standard CIFAR augmentation on a uint8 batch: pad by ``pad`` (zeros), random crop, random h-flip."""
  b = batch["image"].shape[0]
  dy = rng.integers(0, 2 * pad + 1, size=b)
  dx = rng.integers(0, 2 * pad + 1, size=b)
  flip = rng.random(b) < 0.5
  out = dict(batch)
  out["image"] = crop_flip_at(batch["image"], dy, dx, flip, pad)
  return out


IMAGE_AUGMENTATIONS: dict[str, Callable[[Batch, np.random.Generator], Batch] | None] = {
    "none": None, "crop_flip": random_crop_flip}


def _channel_stats(config, key: str, default, spec: sources.DatasetSpec) -> tuple[float, ...]:
  """``config.image_mean`` / ``config.image_std`` (one number per channel), or the dataset's own when None."""
  value = config.get(key)
  if value is None:
    return tuple(float(v) for v in default)
  channels = spec.image_shape[-1]
  stats = tuple(float(v) for v in value)  # numbers: config_check has checked the types
  if len(stats) != channels or (key == "image_std" and any(not v > 0 for v in stats)):
    raise ConfigError(f"config.{key}: expected {channels} {'positive ' if key == 'image_std' else ''}number(s), one "
                      f"per channel of {spec.name} {spec.image_shape}, got {value!r} (None: the dataset's own, "
                      f"{tuple(default)})")
  return stats


def image_classification(config, spec: sources.DatasetSpec) -> Dataset:
  """Train/test sources of an image dataset, checked, with normalisation and augmentation."""
  check_kwargs(config.get("dataset_kwargs", {}) or {}, {}, dataset=spec.name)
  augment = config.get("augment", "none")
  if augment not in IMAGE_AUGMENTATIONS:
    raise ConfigError(f"config.augment: expected one of {sorted(IMAGE_AUGMENTATIONS)}, got {augment!r}")
  kw = dict(data_dir=config.get("data_dir"), kind=config.get("data_source", "auto"),
            download=config.get("tfds_download", False))
  train = sources.get_source(spec.name, "train", **kw)
  test = sources.get_source(spec.name, "test", **kw)
  sources.check_source(train, spec, split="train")
  sources.check_source(test, spec, split="test")
  mean = _channel_stats(config, "image_mean", spec.mean, spec)
  std = _channel_stats(config, "image_std", spec.std, spec)
  preprocess = Normalize(mean, std)
  example = preprocess({"image": np.zeros((1,) + spec.image_shape, np.uint8), "label": np.zeros(1, np.int64)})
  device_transform = None
  where = config.get("augment_on", "host")
  if where not in ("host", "device"):
    raise ConfigError(f"config.augment_on: expected 'host' (numpy, in the input pipeline) or 'device' (in the "
                      f"jitted step), got {where!r}")
  if where == "device":  # jax is imported here only: grain's workers never need it
    from aila_jax.data import device_augment  # pylint: disable=g-import-not-at-top
    device_transform = device_augment.DeviceImageTransform(
        mean=mean, std=std, crop_pad=4 if augment == "crop_flip" else None,
        host_preprocess=uint8_images)
  return Dataset(name=spec.name, train=train, eval={"test": test}, preprocess=preprocess,
                 example=example, model_kwargs={"num_classes": spec.num_classes},
                 augment=IMAGE_AUGMENTATIONS[augment], device_transform=device_transform)


for _name, _spec in sources.DATASETS.items():
  register_dataset(_name)(lambda config, _spec=_spec: image_classification(config, _spec))
