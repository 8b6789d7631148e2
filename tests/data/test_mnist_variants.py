"""Translated / cluttered MNIST: determinism, shapes, test fragments from test images only."""
import ml_collections
import numpy as np
import pytest

from aila_jax.data import datasets, mnist_variants
from aila_jax.errors import ConfigError


def _build(name, data_dir, **kw):
  config = ml_collections.ConfigDict(dict(dataset=name, data_dir=str(data_dir), dataset_kwargs=kw))
  return datasets.build_dataset(config)


@pytest.mark.parametrize("name,size", [("translated_mnist", 60), ("cluttered_mnist_60", 60),
                                       ("cluttered_mnist_100", 100)])
def test_shapes_and_determinism(name, size, data_dir):
  a, b = _build(name, data_dir), _build(name, data_dir)
  assert len(a.train) == 60000 and len(a.eval["test"]) == 10000
  for i in (0, 123, 59999):
    ra, rb = a.train[i], b.train[i]
    assert ra["image"].shape == (size, size, 1) and ra["image"].dtype == np.uint8
    np.testing.assert_array_equal(ra["image"], rb["image"])
    assert int(ra["label"]) == int(b.train[i]["label"])
  other = _build(name, data_dir, seed=1)
  assert not np.array_equal(a.train[5]["image"], other.train[5]["image"])
  assert a.example["image"].shape == (1, size, size, 1)


def test_digit_is_placed_unchanged_and_fragments_come_from_the_same_split(data_dir):
  ds = _build("cluttered_mnist_60", data_dir)
  test = ds.eval["test"]
  with np.load(data_dir / "mnist.npz") as npz:
    x_test = npz["x_test"]
  i = 17
  r, c = test.digit_offsets[i]
  canvas = test[i]["image"][..., 0]
  # the digit is there (max-composited: never darkened)
  assert np.all(canvas[r:r + 28, c:c + 28] >= x_test[i])
  assert test.fragment_sources.shape == (10000, 4)
  assert test.fragment_sources.max() < 10000 and np.all(test.fragment_sources != np.arange(10000)[:, None])
  (sr, sc), (fr, fc) = test.fragment_crops[i, 0], test.fragment_offsets[i, 0]
  piece = x_test[test.fragment_sources[i, 0], sr:sr + 8, sc:sc + 8]
  assert np.all(canvas[fr:fr + 8, fc:fc + 8] >= piece)
  # splits draw different layouts
  assert not np.array_equal(ds.train.digit_offsets[:100], test.digit_offsets[:100])


def test_translated_has_no_clutter(data_dir):
  ds = _build("translated_mnist", data_dir)
  rec = ds.train[3]
  r, c = ds.train.digit_offsets[3]
  img = rec["image"][..., 0].copy()
  img[r:r + 28, c:c + 28] = 0
  assert img.sum() == 0


def test_bad_kwargs(data_dir):
  with pytest.raises(ConfigError, match=r"config.dataset_kwargs: dataset 'translated_mnist' takes no option"):
    _build("translated_mnist", data_dir, canvas=80)
  with pytest.raises(ConfigError, match="config.dataset_kwargs.seed"):
    _build("translated_mnist", data_dir, seed=-1)


def test_bad_base_images():
  with pytest.raises(ValueError, match=r"uint8 \[N, 28, 28\]"):
    mnist_variants.MnistVariantSource(np.zeros((4, 32, 32), np.uint8), np.zeros(4),
                                      mnist_variants.VARIANTS["translated_mnist"], seed=0,
                                      split="train", name="translated_mnist")


@pytest.mark.parametrize("name", sorted(mnist_variants.VARIANTS))
def test_batched_composition_equals_record_by_record(name, data_dir):
  ds = _build(name, data_dir)
  for source in (ds.train, ds.eval["test"]):
    rows = np.random.default_rng(0).choice(len(source), 64, replace=False)
    rows[:2] = [0, len(source) - 1]
    batch = source.get_batch(rows)
    np.testing.assert_array_equal(batch["image"], np.stack([source[int(i)]["image"] for i in rows]))
    np.testing.assert_array_equal(batch["label"], [int(source[int(i)]["label"]) for i in rows])
    assert batch["image"].dtype == np.uint8


def _reference_canvas(source, i):
  """Record ``i`` rebuilt independently: each piece placed on its own zero canvas, then the pixelwise max."""
  c, f = source.spec.canvas, source.spec.fragment_size
  layers = [np.zeros((c, c), np.uint8)]
  pieces = [(source.images[i], source.digit_offsets[i])]
  for j in range(source.spec.num_fragments):
    sr, sc = source.fragment_crops[i, j]
    pieces.append((source.images[source.fragment_sources[i, j], sr:sr + f, sc:sc + f], source.fragment_offsets[i, j]))
  for piece, (r, col) in pieces:
    h, w = piece.shape
    layers.append(np.pad(piece, ((r, c - r - h), (col, c - col - w))))  # np.pad fails if it does not fit
  return np.max(layers, axis=0)


@pytest.mark.parametrize("name,canvas,fragments", [("cluttered_mnist_100", 100, 8), ("cluttered_mnist_60", 60, 4),
                                                   ("translated_mnist", 60, 0)])
def test_layout_as_the_paper_describes(name, canvas, fragments, data_dir):
  """Mnih et al. 2014: the 28x28 digit fully inside the canvas; 8x8 fragments of other digits (8 on 100x100)."""
  test = _build(name, data_dir).eval["test"]
  assert (test.spec.canvas, test.spec.num_fragments, test.spec.fragment_size) == (canvas, fragments, 8)
  assert test.fragment_sources.shape == (10000, fragments) and test.fragment_offsets.shape == (10000, fragments, 2)
  # every top-left offset keeps its piece inside, and the whole range is used (uniform positions)
  for offsets, extent in ((test.digit_offsets, canvas - 28), (test.fragment_offsets, canvas - 8),
                          (test.fragment_crops, 28 - 8)):
    if offsets.size:
      assert offsets.min() == 0 and offsets.max() == extent
  for i in (0, 4321, 9999):
    np.testing.assert_array_equal(test[i]["image"][..., 0], _reference_canvas(test, i))
    r, c = test.digit_offsets[i]
    assert test[i]["image"][r:r + 28, c:c + 28, 0].sum() >= test.images[i].sum()  # the whole digit is there
