"""Sources: local offline files and tfds.data_source give the same records; bad data fails clearly."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from aila_jax.data import sources
from aila_jax.errors import ConfigError, DataError


def test_local_mnist_is_the_real_dataset(data_dir):
  train = sources.get_source("mnist", "train", data_dir=data_dir, kind="local")
  test = sources.get_source("mnist", "test", data_dir=data_dir, kind="local")
  assert (len(train), len(test)) == (60000, 10000)
  spec = sources.get_spec("mnist")
  sources.check_source(train, spec, split="train")
  assert [int(train[i]["label"]) for i in range(5)] == [5, 0, 4, 1, 9]
  assert [int(test[i]["label"]) for i in range(5)] == [7, 2, 1, 0, 4]
  assert train[0]["image"].shape == (28, 28, 1) and train[0]["image"].dtype == np.uint8
  mean = train.arrays["image"].mean() / 255
  np.testing.assert_allclose(mean, 0.1307, atol=1e-3)


def test_auto_picks_local_when_file_present(data_dir):
  src = sources.get_source("mnist", "test", data_dir=data_dir)
  assert isinstance(src, sources.ArraySource)


def test_data_dir_from_environment(data_dir, monkeypatch):
  monkeypatch.setenv(sources.DATA_DIR_ENV, str(data_dir))
  assert sources.resolve_data_dir(None) == data_dir
  assert len(sources.get_source("mnist", "test", kind="local")) == 10000
  # config wins over the environment
  assert sources.resolve_data_dir("/elsewhere") != data_dir


def test_tfds_source_gives_the_same_record_format(tmp_path):
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    src = sources.get_source("mnist", "train", data_dir=tmp_path, kind="tfds")
    assert len(src) == 12
    sources.check_source(src, sources.get_spec("mnist"), split="train")


def test_cifar10_local_decodes(data_dir):
  if not (data_dir / "cifar10_jpeg_bytes.npz").exists():
    pytest.fail("cifar10_jpeg_bytes.npz missing from the data dir")
  test = sources.get_source("cifar10", "test", data_dir=data_dir, kind="local")
  assert len(test) == 10000
  sources.check_source(test, sources.get_spec("cifar10"), split="test")
  counts = np.bincount(test.arrays["label"], minlength=10)
  np.testing.assert_array_equal(counts, [1000] * 10)


def test_unknown_dataset():
  with pytest.raises(ConfigError, match=r"config.dataset: unknown dataset 'mnits'"):
    sources.get_source("mnits", "train")


def test_missing_data_dir(tmp_path):
  with pytest.raises(ConfigError, match=r"config.data_dir: .* is not a directory"):
    sources.get_source("mnist", "train", data_dir=tmp_path / "nope", kind="local")
  with pytest.raises(ConfigError, match=r"config.data_dir: .* holds no mnist.npz"):
    sources.get_source("mnist", "train", data_dir=tmp_path, kind="local")


def test_no_data_dir_for_local(monkeypatch):
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  with pytest.raises(ConfigError, match=r"config.data_dir: no data directory"):
    sources.get_source("mnist", "train", data_dir=None, kind="local")


@pytest.mark.parametrize("arrays,match", [
    (dict(x_train=np.zeros((4, 32, 32), np.uint8), y_train=np.zeros(4, np.int64)),
     r"array 'x_train' has shape \(4, 32, 32\) .* expected shape \(N, 28, 28\)"),
    (dict(x_train=np.zeros((4, 28, 28), np.float32), y_train=np.zeros(4, np.int64)),
     r"array 'x_train' .* dtype float32"),
    (dict(x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.zeros(5, np.int64)),
     r"array 'y_train' has shape \(5,\)"),
    (dict(x_train=np.zeros((4, 28, 28), np.uint8)), r"missing arrays \['y_train'\]"),
    (dict(x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.full(4, 11)), r"must lie in \[0, 9\]"),
])
def test_wrong_shapes_and_dtypes_are_named(tmp_path, arrays, match):
  np.savez(tmp_path / "mnist.npz", **arrays)
  with pytest.raises(DataError, match=match):
    sources.get_source("mnist", "train", data_dir=tmp_path, kind="local")


def test_check_source_rejects_wrong_record_shape():
  src = sources.ArraySource({"image": np.zeros((3, 28, 28, 3), np.uint8), "label": np.zeros(3, np.int64)})
  with pytest.raises(DataError, match=r"'image' has shape \(28, 28, 3\) .* expected \(28, 28, 1\) uint8"):
    sources.check_source(src, sources.get_spec("mnist"), split="train")
