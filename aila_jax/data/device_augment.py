"""Image augmentation and normalisation inside the jitted step (``config.augment_on = 'device'``).

With ``augment_on = 'host'`` (the default) the grain pipeline pads, crops, flips
and normalises each batch in numpy (:func:`aila_jax.data.datasets.random_crop_flip`,
:class:`~aila_jax.data.datasets.Normalize`) and ships float32 images. With
``'device'`` the pipeline only gathers the raw uint8 rows (4x fewer bytes to
move, no per-pixel work on the host: one process feeds the step without worker
processes) and the train step draws the same augmentation on the accelerator:

- offsets ``dy, dx`` uniform on ``{0, ..., 2 pad}`` and a horizontal flip with
  probability 1/2, per example, as the host version;
- ``crop_i = pad(x_i)[dy_i : dy_i + H, dx_i : dx_i + W]`` (zero padding of the
  uint8 image, i.e. black, as ``torchvision.RandomCrop(padding=4)`` before
  ``ToTensor``), mirrored along W where the flip is drawn;
- then ``(crop / 255 - mean) / std``.

The draws come from ``fold_in(fold_in(state.rng, AUGMENT_STREAM), step)``: a rerun
or a resumed run sees the same crops at the same step, on any number of
devices (the draws do not depend on how the batch is sharded). They differ from
the host pipeline's numpy draws, so the two settings train on different (equally
distributed) crops. Evaluation applies the normalisation only.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from aila_jax.data import datasets

AUGMENT_STREAM = 0xA06  # folded into the train state's rng, then the step

Batch = dict[str, Any]


def crop_flip_draws(key: jax.Array, batch_size: int, pad: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-example offsets ``dy, dx`` (int32, uniform on ``0..2*pad``) and flips (bool, probability 1/2)."""
  k_y, k_x, k_f = jax.random.split(key, 3)
  dy = jax.random.randint(k_y, (batch_size,), 0, 2 * pad + 1)
  dx = jax.random.randint(k_x, (batch_size,), 0, 2 * pad + 1)
  return dy, dx, jax.random.bernoulli(k_f, 0.5, (batch_size,))


# crop_flip(images, dy, dx, flip, pad): the host pipeline's crop and flip (datasets.crop_flip_at), in jax.numpy
crop_flip = functools.partial(datasets.crop_flip_at, xp=jnp)


@dataclasses.dataclass(frozen=True)
class DeviceImageTransform:
  """What the trainer applies in its jitted steps when ``config.augment_on = 'device'``.

  ``host_preprocess`` is what the grain pipeline still does (numpy: uint8 images kept, labels to int32);
  calling the transform with a key augments (``crop_pad`` set: crop + flip) and normalises, without a key
  (evaluation) only normalises."""
  mean: tuple[float, ...]
  std: tuple[float, ...]
  crop_pad: int | None
  host_preprocess: Callable[[Batch], Batch]

  def __call__(self, batch: Batch, key: jax.Array | None = None) -> Batch:
    out = dict(batch)
    image = batch["image"]
    if key is not None and self.crop_pad:
      image = crop_flip(image, *crop_flip_draws(key, image.shape[0], self.crop_pad), self.crop_pad)
    out["image"] = datasets.Normalize(self.mean, self.std).normalise(image, jnp)
    return out


def step_key(rng: jax.Array, step: jax.Array) -> jax.Array:
  """The augmentation key of one training step (see the module docstring)."""
  return jax.random.fold_in(jax.random.fold_in(rng, AUGMENT_STREAM), step)
