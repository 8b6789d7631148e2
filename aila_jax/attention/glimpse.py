"""Glimpse sensor of the Recurrent Attention Model: multi-resolution patches.

The retina of "Recurrent Models of Visual Attention" (Mnih, Heess, Graves and
Kavukcuoglu, NIPS 2014, arXiv 1406.6247), section 4 and appendix: around a
location :math:`l` it extracts ``num_scales`` square patches, the first of side
``size`` and each next one twice as wide, and brings every patch down to
``size x size``. The exact pixel convention follows the common PyTorch ports
(e.g. kevinzakka/recurrent-visual-attention), so that trajectories and
accuracies are comparable with them.

Pure functions on arrays, no parameters; ``jax.jit`` and ``jax.vmap`` safe.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["extract_glimpses", "locations_to_pixels"]


def _check_positive_int(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise ValueError(f"{name} must be a positive Python int, got {value!r} "
                     f"of type {type(value).__name__}.")
  if value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value}.")
  return int(value)


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_locations(locations, batch: int | None) -> None:
  """Validates the shape, dtype and (when concrete) finiteness of locations."""
  shape = jnp.shape(locations)
  if len(shape) != 2 or shape[1] != 2:
    raise ValueError(
        "locations must have shape [batch, 2] holding (row, col) in [-1, 1], "
        f"got shape {tuple(shape)}.")
  if batch is not None and shape[0] != batch:
    raise ValueError(
        f"locations has batch size {shape[0]} but images has batch size "
        f"{batch}; expected locations of shape [{batch}, 2].")
  dtype = jnp.result_type(locations)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"locations must have a floating dtype, got {dtype}; cast them with "
        "locations.astype(jnp.float32).")
  if _is_concrete(locations):
    values = np.asarray(locations)
    if not np.all(np.isfinite(values)):
      bad = np.argwhere(~np.isfinite(values))[:4].tolist()
      raise ValueError(
          "locations must be finite; found NaN or infinity at [batch, axis] "
          f"indices {bad} (first 4 shown).")


def locations_to_pixels(locations: jax.Array, height: int,
                        width: int) -> jax.Array:
  r"""Maps normalised (row, col) locations to integer centre pixels.

  .. math::

    c = \left\lfloor \frac{\mathrm{clip}(l, -1, 1) + 1}{2}
        \odot (H, W) \right\rfloor

  so that :math:`(-1, -1)` is the top-left pixel :math:`(0, 0)`,
  :math:`(0, 0)` is pixel :math:`(\lfloor H/2 \rfloor, \lfloor W/2 \rfloor)`
  and :math:`(1, 1)` is :math:`(H, W)`, one step beyond the last pixel (the
  convention of the PyTorch RAM ports; a patch around it is still defined, as
  everything outside the image reads zero).

  Locations outside :math:`[-1, 1]` are clipped. Non-finite values are
  rejected by :func:`extract_glimpses` when the locations are concrete; under
  ``jax.jit`` they cannot be inspected, and this function maps NaN to 0 (the
  image centre), :math:`+\infty` to 1 and :math:`-\infty` to -1 before
  clipping, so a traced NaN never produces an out-of-range index.

  Args:
    locations: ``[..., 2]`` floating array of (row, col) in :math:`[-1, 1]`.
    height: image height :math:`H`.
    width: image width :math:`W`.

  Returns:
    ``[..., 2]`` int32 array of (row, col) centre pixels in
    :math:`[0, H] \times [0, W]`.
  """
  loc = jnp.nan_to_num(locations, nan=0.0, posinf=1.0, neginf=-1.0)
  loc = jnp.clip(loc, -1.0, 1.0)
  extent = jnp.asarray([height, width], dtype=loc.dtype)
  # (l + 1) * 0.5 is exact in floating point, so the floor matches a numpy
  # reference computed in the same dtype.
  return jnp.floor((loc + 1.0) * 0.5 * extent).astype(jnp.int32)


def extract_glimpses(images: jax.Array, locations: jax.Array, *, size: int,
                     num_scales: int) -> jax.Array:
  r"""Extracts multi-resolution glimpses :math:`\rho(x_t, l_{t-1})`.

  For every image :math:`x` of the batch and its location :math:`l`
  (row, col) in :math:`[-1, 1]`, with centre pixel :math:`c` from
  :func:`locations_to_pixels`, patch :math:`k = 0, \dots, S - 1` is the square
  of side :math:`s_k = g \, 2^k` (:math:`g` = ``size``, :math:`S` =
  ``num_scales``) whose top-left pixel is

  .. math::

    o_k = c - \lfloor s_k / 2 \rfloor

  in each axis, reading zero outside the image, and it is reduced to
  :math:`g \times g` by averaging non-overlapping :math:`2^k \times 2^k`
  blocks:

  .. math::

    \rho_k[i, j, :] = \frac{1}{4^k} \sum_{u, v = 0}^{2^k - 1}
        \tilde x[o_k + (2^k i + u, 2^k j + v), :],

  where :math:`\tilde x` is :math:`x` extended by zeros. Patch 0 is the
  highest resolution. This is the retina of Mnih et al. (2014) with the pixel
  convention of the PyTorch ports (kevinzakka/recurrent-visual-attention).

  Locations outside :math:`[-1, 1]` are clipped to it. Concrete non-finite
  locations raise ``ValueError``; traced ones (under ``jax.jit``) cannot be
  checked and are mapped as documented in :func:`locations_to_pixels` (NaN to
  the image centre). The output is differentiable in ``images``; its
  gradient with respect to ``locations`` is zero (hard attention: locations
  are trained with a score-function estimator, see ``aila_jax.stochastic``).

  Implementation: one zero-padding of the batch (by half the widest patch),
  then per example and per scale a ``lax.dynamic_slice`` and a reshape-mean,
  ``jax.vmap``-ed over the batch; the loop over scales is a static Python
  loop.

  Args:
    images: ``[batch, H, W, C]`` floating array.
    locations: ``[batch, 2]`` floating array of (row, col) in
      :math:`[-1, 1]`, :math:`(-1, -1)` the top-left corner.
    size: side :math:`g` of the first patch and of every output patch, a
      positive Python int.
    num_scales: number of patches :math:`S`, a positive Python int.

  Returns:
    ``[batch, num_scales, size, size, C]`` array of the dtype of ``images``.

  Raises:
    ValueError: non-positive or non-int ``size`` / ``num_scales``; ``images``
      not rank 4 or not floating; ``locations`` not ``[batch, 2]`` floating;
      batch sizes that differ; concrete non-finite locations.

  Example:

    >>> import jax.numpy as jnp
    >>> images = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> g = extract_glimpses(images, jnp.zeros((1, 2)), size=2, num_scales=2)
    >>> g.shape
    (1, 2, 2, 2, 1)
    >>> g[0, 0, :, :, 0].tolist()  # rows 1-2, cols 1-2 around centre (2, 2)
    [[5.0, 6.0], [9.0, 10.0]]
    >>> g[0, 1, :, :, 0].tolist()  # the whole 4x4 image, 2x2-averaged
    [[2.5, 4.5], [10.5, 12.5]]
  """
  size = _check_positive_int(size, "size")
  num_scales = _check_positive_int(num_scales, "num_scales")
  images_shape = jnp.shape(images)
  if len(images_shape) != 4:
    raise ValueError("images must have shape [batch, H, W, C] (rank 4), got "
                     f"shape {tuple(images_shape)} (rank {len(images_shape)}).")
  images_dtype = jnp.result_type(images)
  if not jnp.issubdtype(images_dtype, jnp.floating):
    raise ValueError(
        f"images must have a floating dtype, got {images_dtype}; cast them "
        "with images.astype(jnp.float32) (and scale to [0, 1] if wanted).")
  _check_locations(locations, images_shape[0])
  return _extract_glimpses(images, locations, size=size, num_scales=num_scales)


@functools.partial(jax.jit, static_argnames=("size", "num_scales"))
def _extract_glimpses(images, locations, *, size, num_scales):
  """Validated core of :func:`extract_glimpses`, compiled once per shape."""
  _, height, width, channels = images.shape
  max_side = size * 2**(num_scales - 1)
  # The lowest top-left corner is 0 - max_side // 2; the highest bottom-right
  # end is H + max_side - max_side // 2 (centre at most H), likewise in W.
  pad_lo = max_side // 2
  pad_hi = max_side - pad_lo
  padded = jnp.pad(images, ((0, 0), (pad_lo, pad_hi), (pad_lo, pad_hi),
                            (0, 0)))  # (B, H + max_side, W + max_side, C)
  centres = locations_to_pixels(locations, height, width)  # (B, 2)

  def one_example(image, centre):
    # image: (H + max_side, W + max_side, C); centre: (2,) int32.
    patches = []
    for k in range(num_scales):
      block = 2**k
      side = size * block
      start = centre - side // 2 + pad_lo  # (2,), >= 0 by construction
      patch = jax.lax.dynamic_slice(image, (start[0], start[1], 0),
                                    (side, side, channels))  # (s, s, C)
      patch = patch.reshape(size, block, size, block, channels)
      patches.append(patch.mean(axis=(1, 3)))  # (g, g, C)
    return jnp.stack(patches)  # (S, g, g, C)

  return jax.vmap(one_example)(padded, centres)  # (B, S, g, g, C)
