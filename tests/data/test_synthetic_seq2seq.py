"""Tests for the synthetic copy/reverse datasets (aila_jax.data.synthetic)."""

import hypothesis
from hypothesis import strategies as st
import ml_collections
import numpy as np
import pytest

from aila_jax.data import datasets, pipeline
from aila_jax.data.synthetic import EOS_ID, make_examples
from aila_jax.errors import ConfigError


def _config(name, **kwargs):
  config = ml_collections.ConfigDict()
  config.dataset = name
  config.dataset_kwargs = ml_collections.ConfigDict(kwargs)
  return config


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(task=st.sampled_from(["copy", "reverse"]), lo=st.integers(1, 6),
                  extra=st.integers(0, 5), vocab=st.integers(4, 30), seed=st.integers(0, 99))
def test_examples_follow_the_translation_batch_format(task, lo, extra, vocab, seed):
  hi = lo + extra
  ex = make_examples(task, 50, min_length=lo, max_length=hi, vocab_size=vocab,
                     rng=np.random.default_rng(seed))
  for key in ("inputs", "targets"):
    assert ex[key].dtype == np.int32 and ex[key].shape == (50, hi + 1)
  for x, y in zip(ex["inputs"], ex["targets"]):
    n = int(np.argmax(x == EOS_ID))
    assert lo <= n <= hi and x[n] == EOS_ID and y[n] == EOS_ID
    assert (x[n + 1:] == 0).all() and (y[n + 1:] == 0).all()
    content = x[:n]
    assert ((content >= 3) & (content < vocab)).all()  # no padding, BOS or EOS inside
    want = content if task == "copy" else content[::-1]
    np.testing.assert_array_equal(y[:n], want)  # targets do not start with BOS


def test_registered_datasets_are_deterministic_and_split():
  a = datasets.build_dataset(_config("reverse", num_train=64, num_test=16, seed=3))
  b = datasets.build_dataset(_config("reverse", num_train=64, num_test=16, seed=3))
  c = datasets.build_dataset(_config("reverse", num_train=64, num_test=16, seed=4))
  np.testing.assert_array_equal(a.train.arrays["inputs"], b.train.arrays["inputs"])
  assert not np.array_equal(a.train.arrays["inputs"], c.train.arrays["inputs"])
  assert not np.array_equal(a.train.arrays["inputs"][:16], a.eval["test"].arrays["inputs"])
  assert len(a.train) == 64 and len(a.eval["test"]) == 16
  assert dict(a.model_kwargs) == {"vocab_size": 16, "max_len": 9}
  assert a.example["inputs"].shape == (1, 9) and a.example["targets"].dtype == np.int32
  ds = pipeline.train_dataset(a.train, preprocess=a.preprocess, batch_size=8, seed=0)
  batch = ds[0]
  assert batch["inputs"].shape == (8, 9) and batch["targets"].shape == (8, 9)
  copy = datasets.build_dataset(_config("copy", num_train=8, num_test=8))
  np.testing.assert_array_equal(copy.train.arrays["inputs"], copy.train.arrays["targets"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(vocab_size=3), r"config.dataset_kwargs.vocab_size: expected >= 4"),
    (dict(min_length=5, max_length=4), r"config.dataset_kwargs.min_length: expected 1 <= min_length"),
    (dict(min_length=0), r"config.dataset_kwargs.min_length"),
    (dict(num_train=0), r"config.dataset_kwargs.num_train: expected an int >= 1"),
    (dict(seed=-1), r"config.dataset_kwargs.seed"),
    (dict(max_length=2.5), r"config.dataset_kwargs.max_length: expected an int"),
    (dict(length=3), r"config.dataset_kwargs: dataset 'copy' takes no option\(s\) \['length'\]"),
])
def test_bad_options_name_the_key(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    datasets.build_dataset(_config("copy", **kwargs))
