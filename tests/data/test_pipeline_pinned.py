"""Pinned pipeline behaviour (mutation testing): the documented batch order ``perm_e[j*B:(j+1)*B]`` of the
process's share ``p, p+n, ...``, uneven shares in eval, a batch equal to the whole share, zero padding."""
import numpy as np
import pytest

from aila_jax.data import pipeline, sources


def _ident(batch):
  return batch


def _src(n):  # record i carries id i (and a second field to check that padding is per field)
  return sources.ArraySource({"id": np.arange(n, dtype=np.int64), "x": np.arange(n, dtype=np.float32) + 0.5})


@pytest.mark.parametrize("n,gbs,pcount", [(53, 10, 1), (41, 8, 2), (30, 6, 3)])
def test_batch_order_is_the_documented_permutation_of_the_share(n, gbs, pcount):
  seed = 7
  bs = gbs // pcount
  for p in range(pcount):
    share = np.arange(p, n, pcount)  # the rows p, p + n, ... of this process
    per_epoch = len(share) // bs
    it = pipeline.make_iterator(pipeline.train_dataset(_src(n), preprocess=_ident, batch_size=gbs, seed=seed,
                                                       process_index=p, process_count=pcount))
    for i in range(2 * per_epoch + 1):  # two whole epochs and the first batch of the third
      e, j = divmod(i, per_epoch)
      perm = np.random.default_rng([seed, e]).permutation(len(share))
      np.testing.assert_array_equal(next(it)["id"], share[perm[j * bs:(j + 1) * bs]], err_msg=f"p={p} i={i}")


def test_eval_uneven_shares_cover_every_record_and_yield_equal_batch_counts():
  n, gbs = 41, 8  # process 0 reads 21 records (0, 2, ..., 40), process 1 reads 20: 6 batches of 4 each
  out = [list(pipeline.eval_batches(_src(n), preprocess=_ident, batch_size=gbs, process_index=p,
                                    process_count=2)) for p in range(2)]
  assert [len(o) for o in out] == [6, 6]
  for p, batches in enumerate(out):
    ids = np.concatenate([b["id"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(ids[mask == 1], np.arange(p, n, 2))
    assert mask.sum() == len(range(p, n, 2))


def test_eval_padding_is_zero_in_every_field():
  batches = list(pipeline.eval_batches(_src(7), preprocess=_ident, batch_size=5))
  last = batches[-1]
  np.testing.assert_array_equal(last["mask"], [1, 1, 0, 0, 0])
  np.testing.assert_array_equal(last["id"], [5, 6, 0, 0, 0])
  np.testing.assert_array_equal(last["x"], [5.5, 6.5, 0, 0, 0])


def test_batch_as_large_as_the_share_is_allowed_and_is_a_permutation():
  it = pipeline.make_iterator(pipeline.train_dataset(_src(10), preprocess=_ident, batch_size=10, seed=3))
  for e in range(2):
    np.testing.assert_array_equal(next(it)["id"], np.random.default_rng([3, e]).permutation(10))


def test_a_process_without_eval_records_yields_padding_like_the_others():
  # fewer eval records than processes: process 1's share is empty; it still yields the same number of batches
  # (all padding, the fields' shapes and dtypes of the data), so a multi-process eval does not wait on it
  source = sources.ArraySource({"id": np.arange(1), "x": np.full((1, 3), 7.0, np.float32)})
  out = [list(pipeline.eval_batches(source, preprocess=lambda b: b, batch_size=2, process_index=p,
                                    process_count=2)) for p in (0, 1)]
  assert len(out[0]) == len(out[1]) == 1  # one batch each, of the per-process size 2 / 2 = 1
  np.testing.assert_array_equal(out[0][0]["mask"], [1.0])
  np.testing.assert_array_equal(out[0][0]["x"], np.full((1, 3), 7.0, np.float32))
  np.testing.assert_array_equal(out[1][0]["mask"], [0.0])
  np.testing.assert_array_equal(out[1][0]["x"], np.zeros((1, 3), np.float32))
  assert out[1][0]["x"].dtype == np.float32 and out[1][0]["id"].shape == (1,)
