"""Tests for aila_jax.attention.glimpse against a loop-based numpy reference."""

from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.attention import glimpse

extract_glimpses = glimpse.extract_glimpses


def reference_glimpses(images, locations, size, num_scales):
  """Pixel-by-pixel numpy reference of the documented convention."""
  images = np.asarray(images, np.float64)
  locations = np.clip(np.asarray(locations, np.float32), -1.0, 1.0)
  b, h, w, c = images.shape
  out = np.zeros((b, num_scales, size, size, c))
  for n in range(b):
    # Same float32 arithmetic as the library, so floor() agrees exactly.
    row = int(np.floor((locations[n, 0] + np.float32(1)) * np.float32(0.5) *
                       np.float32(h)))
    col = int(np.floor((locations[n, 1] + np.float32(1)) * np.float32(0.5) *
                       np.float32(w)))
    for k in range(num_scales):
      block = 2**k
      side = size * block
      top, left = row - side // 2, col - side // 2
      for i in range(size):
        for j in range(size):
          total = np.zeros(c)
          for u in range(block):
            for v in range(block):
              r, q = top + i * block + u, left + j * block + v
              if 0 <= r < h and 0 <= q < w:
                total += images[n, r, q]
          out[n, k, i, j] = total / block**2
  return out


class GlimpseTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_computed_example(self):
    images = jnp.arange(16.0).reshape(1, 4, 4, 1)
    fn = self.variant(lambda x, l: extract_glimpses(x, l, size=2,
                                                    num_scales=2))
    out = fn(images, jnp.zeros((1, 2)))
    chex.assert_shape(out, (1, 2, 2, 2, 1))
    np.testing.assert_array_equal(out[0, 0, :, :, 0], [[5, 6], [9, 10]])
    np.testing.assert_array_equal(out[0, 1, :, :, 0],
                                  [[2.5, 4.5], [10.5, 12.5]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_corners_and_zero_padding(self):
    images = jnp.ones((2, 6, 8, 3))
    locations = jnp.array([[-1.0, -1.0], [1.0, 1.0]])
    out = self.variant(lambda x, l: extract_glimpses(x, l, size=2,
                                                     num_scales=1))(images,
                                                                    locations)
    # Top-left corner: centre (0, 0), patch rows/cols -1..0, one pixel inside.
    np.testing.assert_array_equal(out[0, 0, :, :, 0], [[0, 0], [0, 1]])
    # Bottom-right (1, 1): centre (6, 8), patch rows 5..6, cols 7..8.
    np.testing.assert_array_equal(out[1, 0, :, :, 0], [[1, 0], [0, 0]])

  @chex.variants(with_jit=True, without_jit=True)
  @hypothesis.settings(max_examples=10, deadline=None, derandomize=True)
  @hypothesis.given(
      batch=st.integers(1, 3), height=st.integers(1, 13),
      width=st.integers(1, 13), channels=st.integers(1, 3),
      size=st.integers(1, 5), num_scales=st.integers(1, 3),
      seed=st.integers(0, 2**16))
  def test_matches_numpy_reference(self, batch, height, width, channels, size,
                                   num_scales, seed):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, height, width, channels),
                                 dtype=np.float32)
    # Includes locations outside [-1, 1], which are clipped.
    locations = rng.uniform(-1.3, 1.3, (batch, 2)).astype(np.float32)
    fn = self.variant(lambda x, l: extract_glimpses(
        x, l, size=size, num_scales=num_scales))
    out = fn(images, locations)
    chex.assert_shape(out, (batch, num_scales, size, size, channels))
    np.testing.assert_allclose(
        out, reference_glimpses(images, locations, size, num_scales),
        rtol=1e-5, atol=1e-5)

  def test_clipping_outside_range(self):
    images = np.random.default_rng(0).standard_normal((1, 9, 9, 2),
                                                     dtype=np.float32)
    far = extract_glimpses(images, jnp.array([[-7.0, 3.5]]), size=3,
                           num_scales=2)
    edge = extract_glimpses(images, jnp.array([[-1.0, 1.0]]), size=3,
                            num_scales=2)
    chex.assert_trees_all_close(far, edge)

  def test_vmapped_over_batch_equals_per_example(self):
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4, 10, 12, 1), dtype=np.float32)
    locations = rng.uniform(-1, 1, (4, 2)).astype(np.float32)
    batched = extract_glimpses(images, locations, size=4, num_scales=2)
    for n in range(4):
      single = extract_glimpses(images[n:n + 1], locations[n:n + 1], size=4,
                                num_scales=2)
      chex.assert_trees_all_close(batched[n:n + 1], single)

  def test_gradient_with_respect_to_images(self):
    images = jnp.ones((1, 8, 8, 1))
    locations = jnp.zeros((1, 2))
    grad = jax.grad(lambda x: extract_glimpses(
        x, locations, size=2, num_scales=2).sum())(images)
    # Scale 0 covers rows/cols 3..4 with weight 1, scale 1 covers 2..5 with
    # weight 1/4; everything else gets no gradient.
    expected = np.zeros((8, 8))
    expected[2:6, 2:6] += 0.25
    expected[3:5, 3:5] += 1.0
    np.testing.assert_allclose(grad[0, :, :, 0], expected)

  def test_traced_nan_location_maps_to_centre(self):
    images = np.random.default_rng(3).standard_normal((1, 8, 8, 1),
                                                     dtype=np.float32)
    fn = jax.jit(lambda x, l: extract_glimpses(x, l, size=2, num_scales=2))
    out = fn(images, jnp.array([[jnp.nan, jnp.nan]]))
    self.assertTrue(bool(jnp.all(jnp.isfinite(out))))
    chex.assert_trees_all_close(out, fn(images, jnp.zeros((1, 2))))

  def test_locations_to_pixels(self):
    pixels = glimpse.locations_to_pixels(
        jnp.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0], [0.5, -0.5]]), 28,
        10)
    np.testing.assert_array_equal(pixels, [[0, 0], [14, 5], [28, 10],
                                           [21, 2]])
    self.assertEqual(pixels.dtype, jnp.int32)


class GlimpseErrorTest(parameterized.TestCase):

  @parameterized.parameters(
      dict(size=0, num_scales=1, match="size must be a positive"),
      dict(size=-2, num_scales=1, match="size must be a positive"),
      dict(size=2.0, num_scales=1, match="size must be a positive Python int"),
      dict(size=2, num_scales=0, match="num_scales must be a positive"),
      dict(size=2, num_scales=True, match="num_scales must be a positive"),
  )
  def test_bad_size_or_scales(self, size, num_scales, match):
    with pytest.raises(ValueError, match=match):
      extract_glimpses(jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 2)), size=size,
                       num_scales=num_scales)

  @parameterized.parameters(
      dict(images=np.zeros((8, 8, 1), np.float32), locations=np.zeros((1, 2)),
           match=r"images must have shape \[batch, H, W, C\]"),
      dict(images=np.zeros((1, 8, 8, 1), np.uint8), locations=np.zeros((1, 2)),
           match="images must have a floating dtype"),
      dict(images=np.zeros((1, 8, 8, 1), np.float32),
           locations=np.zeros((1, 3)),
           match=r"locations must have shape \[batch, 2\]"),
      dict(images=np.zeros((1, 8, 8, 1), np.float32), locations=np.zeros(2),
           match=r"locations must have shape \[batch, 2\]"),
      dict(images=np.zeros((2, 8, 8, 1), np.float32),
           locations=np.zeros((3, 2)), match="batch size 3 but images"),
      dict(images=np.zeros((1, 8, 8, 1), np.float32),
           locations=np.zeros((1, 2), np.int32),
           match="locations must have a floating dtype"),
      dict(images=np.zeros((1, 8, 8, 1), np.float32),
           locations=np.array([[0.0, np.nan]]),
           match="locations must be finite"),
      dict(images=np.zeros((1, 8, 8, 1), np.float32),
           locations=np.array([[np.inf, 0.0]]),
           match="locations must be finite"),
  )
  def test_bad_arrays(self, images, locations, match):
    with pytest.raises(ValueError, match=match):
      extract_glimpses(images, locations, size=2, num_scales=2)

  def test_shape_errors_raised_under_jit(self):
    fn = jax.jit(lambda x, l: extract_glimpses(x, l, size=2, num_scales=2))
    with pytest.raises(ValueError, match="locations must have shape"):
      fn(jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 3)))
