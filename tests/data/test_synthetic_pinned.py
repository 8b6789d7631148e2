"""Pinned behaviour of the synthetic copy/reverse datasets (aila_jax.data.synthetic) that the format tests
leave open: the option checks of the test set size and the independence of the train and test streams."""

import ml_collections
import numpy as np
import pytest

from aila_jax.data import datasets
from aila_jax.errors import ConfigError


def _config(name, **kwargs):
  config = ml_collections.ConfigDict()
  config.dataset = name
  config.dataset_kwargs = ml_collections.ConfigDict(kwargs)
  return config


def test_num_test_below_one_is_a_config_error():
  # num_test is checked like num_train: an empty test set is a ConfigError naming the key, not an empty eval.
  with pytest.raises(ConfigError, match=r"config.dataset_kwargs.num_test: expected an int >= 1, got 0"):
    datasets.build_dataset(_config("copy", num_test=0))


@pytest.mark.parametrize("task", ["copy", "reverse"])
def test_train_and_test_come_from_independent_streams(task):
  # Same sizes for both splits: were they drawn from one seed (not two spawned streams), the test set would
  # repeat the train set example for example. The docstring promises independent streams of one seed sequence.
  ds = datasets.build_dataset(_config(task, num_train=32, num_test=32, seed=5))
  train, test = ds.train.arrays["inputs"], ds.eval["test"].arrays["inputs"]
  assert train.shape == test.shape == (32, 9)
  same_rows = sum(np.array_equal(a, b) for a, b in zip(train, test))
  assert same_rows < 4, same_rows  # 32 random strings of length 1..8 over 13 ids: a handful at most coincide
  # and the streams are the spawned children of SeedSequence(seed), in that order
  train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(5).spawn(2))
  lengths = train_rng.integers(1, 9, size=32)
  np.testing.assert_array_equal((train == 2).argmax(1), lengths)  # EOS sits at the drawn length
  np.testing.assert_array_equal((test == 2).argmax(1), test_rng.integers(1, 9, size=32))
