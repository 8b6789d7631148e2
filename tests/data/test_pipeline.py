"""grain pipeline: deterministic per-epoch order, exact resume from state, process sharding, eval cover."""
import numpy as np
import pytest

from aila_jax.data import datasets, pipeline, sources
from aila_jax.errors import ConfigError
from helpers import RecordSource

SPEC = sources.get_spec("mnist")
PRE = datasets.Normalize(SPEC.mean, SPEC.std)


def _source(n=50, kind="array"):
  images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 28, 28, 1), np.uint8)
  src = sources.ArraySource({"image": images, "label": np.arange(n) % 10})
  return src if kind == "array" else RecordSource(src)


KINDS = pytest.mark.parametrize("kind", ["array", "records"])


def _ids(batch):  # recover the record index from the normalised image
  return np.rint((batch["image"][:, 0, 0, 0] * SPEC.std[0] + SPEC.mean[0]) * 255).astype(int)


@KINDS
def test_epochs_cover_every_record_once_and_reshuffle(kind):
  ds = pipeline.train_dataset(_source(50, kind), preprocess=PRE, batch_size=10, seed=1)
  it = pipeline.make_iterator(ds)
  epoch1 = np.concatenate([_ids(next(it)) for _ in range(5)])
  epoch2 = np.concatenate([_ids(next(it)) for _ in range(5)])
  assert sorted(epoch1) == list(range(50)) and sorted(epoch2) == list(range(50))
  assert list(epoch1) != list(epoch2)
  assert list(epoch1) != list(range(50))


@KINDS
def test_same_seed_same_order_other_seed_other_order(kind):
  def first(seed):
    return _ids(next(pipeline.make_iterator(pipeline.train_dataset(
        _source(kind=kind), preprocess=PRE, batch_size=10, seed=seed))))
  a, b, c = first(3), first(3), first(4)
  np.testing.assert_array_equal(a, b)
  assert list(a) != list(c)


@KINDS
def test_iterator_state_resumes_exactly(kind):
  ds = pipeline.train_dataset(_source(kind=kind), preprocess=PRE, batch_size=8, seed=0,
                              augment=datasets.random_crop_flip)
  it = pipeline.make_iterator(ds)
  for _ in range(7):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  it2 = pipeline.make_iterator(ds)
  it2.set_state(state)
  for want in expected:
    got = next(it2)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])


@KINDS
def test_processes_read_disjoint_shares(kind):
  src = _source(40, kind)
  shares = [np.concatenate([_ids(b) for b in pipeline.eval_batches(src, preprocess=PRE, batch_size=8,
                                                                    process_index=p, process_count=2)])
            for p in range(2)]
  train = [_ids(next(pipeline.make_iterator(pipeline.train_dataset(
      src, preprocess=PRE, batch_size=8, seed=0, process_index=p, process_count=2)))) for p in range(2)]
  assert all(len(t) == 4 for t in train)  # each process builds its half of the global batch
  assert not set(train[0]) & set(train[1])
  assert set(train[0]) <= set(range(0, 40, 2)) and set(train[1]) <= set(range(1, 40, 2))
  assert shares[0].shape == shares[1].shape


def test_in_memory_epochs_drop_a_different_remainder_each_epoch():
  ds = pipeline.train_dataset(_source(53), preprocess=PRE, batch_size=10, seed=2)
  it = pipeline.make_iterator(ds)
  epochs = [np.concatenate([_ids(next(it)) for _ in range(5)]) for _ in range(3)]
  for e in epochs:  # 5 full batches per epoch, no record twice within an epoch
    assert len(set(e)) == 50 and set(e) <= set(range(53))
  assert len({tuple(sorted(set(range(53)) - set(e))) for e in epochs}) > 1


@KINDS
def test_eval_batches_cover_all_records_once_with_padding_mask(kind):
  src = _source(23, kind)
  batches = list(pipeline.eval_batches(src, preprocess=PRE, batch_size=10))
  assert len(batches) == 3
  assert all(b["image"].shape == (10, 28, 28, 1) for b in batches)
  masks = np.concatenate([b["mask"] for b in batches])
  assert masks.sum() == 23 and masks[23:].sum() == 0
  ids = np.concatenate([_ids(b) for b in batches])[:23]
  np.testing.assert_array_equal(ids, np.arange(23))


def test_crop_flip_keeps_shape_and_content():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
  out = datasets.random_crop_flip({"image": images, "label": np.zeros(6)}, rng)["image"]
  assert out.shape == images.shape and out.dtype == np.uint8
  for i in range(6):  # every output is a shifted / flipped window of the zero-padded input
    padded = np.pad(images[i], ((4, 4), (4, 4), (0, 0)))
    found = any(np.array_equal(out[i], w) or np.array_equal(out[i], w[:, ::-1])
                for dy in range(9) for dx in range(9) for w in [padded[dy:dy + 32, dx:dx + 32]])
    assert found


def test_bad_batch_sizes():
  with pytest.raises(ConfigError, match=r"config.batch_size: per-process batch 64 exceeds"):
    pipeline.train_dataset(_source(50), preprocess=PRE, batch_size=64, seed=0)
  with pytest.raises(ConfigError, match=r"config.batch_size: 10 is not divisible by the 4 processes"):
    pipeline.train_dataset(_source(50), preprocess=PRE, batch_size=10, seed=0, process_count=4)


def test_worker_processes_give_the_same_batches_and_state():
  ds = pipeline.train_dataset(_source(), preprocess=PRE, batch_size=8, seed=5,
                              augment=datasets.random_crop_flip)
  inline = pipeline.make_iterator(ds)
  want = [next(inline) for _ in range(6)]
  workers = pipeline.make_iterator(ds, worker_count=2)
  got = [next(workers) for _ in range(3)]
  state = workers.get_state()
  resumed = pipeline.make_iterator(ds, worker_count=2)
  resumed.set_state(state)
  got += [next(resumed) for _ in range(3)]
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w["image"], g["image"])
