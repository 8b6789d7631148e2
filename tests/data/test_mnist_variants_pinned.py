"""Translated / cluttered MNIST details the dataset tests leave loose: the layout stream depends on the
variant's name (checked on random 28x28 arrays), and pixels scale to [0, 1]."""

import ml_collections
import numpy as np

from aila_jax.data import datasets, mnist_variants


def _source(name, n=64):
  """A train split of ``n`` random 28x28 "digits" (the layout does not read the pixels)."""
  images = np.random.default_rng(0).integers(1, 256, size=(n, 28, 28), dtype=np.uint8)
  return mnist_variants.MnistVariantSource(images, np.arange(n) % 10, mnist_variants.VARIANTS[name], seed=0,
                                           split="train", name=name)


def test_layout_stream_depends_on_the_variant_name():
  # record i is a function of (seed, variant, split, i): two variants of the same canvas and seed do not
  # share their digit positions (otherwise cluttered_mnist_60 = translated_mnist + clutter, digit for digit)
  a, b = _source("translated_mnist"), _source("cluttered_mnist_60")
  assert a.spec.canvas == b.spec.canvas
  assert (a.digit_offsets != b.digit_offsets).any(axis=1).mean() > 0.5


def test_preprocess_scales_pixels_to_unit_interval(data_dir):
  # background 0 -> exactly 0.0 (the value the glimpse sensor reads outside the image), 255 -> 1.0
  config = ml_collections.ConfigDict(dict(dataset="translated_mnist", data_dir=str(data_dir)))
  ds = datasets.build_dataset(config)
  out = ds.preprocess({"image": np.array([[[[0], [51], [255]]]], np.uint8), "label": np.zeros(1, np.int64)})
  np.testing.assert_allclose(out["image"][0, 0, :, 0], [0.0, 0.2, 1.0], rtol=1e-6)
  np.testing.assert_array_equal(ds.example["image"], np.zeros((1, 60, 60, 1)))
