"""Pinned per-process data shares (mutation testing): process p of n reads exactly the rows p, p + n, ...,
in training and in eval, for in-memory and record-at-a-time sources; the per-process batch is checked against
this process's share (not the whole source); errors name the right config key."""
import numpy as np
import pytest

from aila_jax.data import pipeline, sources
from aila_jax.errors import ConfigError
from helpers import RecordSource


def _ident(batch):
  return batch


def _src(n, kind):
  src = sources.ArraySource({"id": np.arange(n, dtype=np.int64)})
  return src if kind == "array" else RecordSource(src)


KINDS = pytest.mark.parametrize("kind", ["array", "records"])


@KINDS
def test_local_batch_size_and_its_error_keys(kind):
  assert pipeline.local_batch_size(12, 3) == 4 and pipeline.local_batch_size(12, 1) == 12
  with pytest.raises(ConfigError, match=r"^config.eval_batch_size: 10 is not divisible by the 4 processes$"):
    list(pipeline.eval_batches(_src(40, kind), preprocess=_ident, batch_size=10, process_index=0, process_count=4))
  with pytest.raises(ConfigError, match=r"^config.batch_size: 10 is not divisible by the 4 processes$"):
    pipeline.train_dataset(_src(40, kind), preprocess=_ident, batch_size=10, seed=0, process_count=4)


@KINDS
def test_per_process_batch_is_checked_against_this_process_s_share(kind):
  # 11 records over 2 processes: process 0 reads 6 (0, 2, ..., 10), process 1 reads 5; per-process batch 6
  pipeline.train_dataset(_src(11, kind), preprocess=_ident, batch_size=12, seed=0, process_index=0,
                         process_count=2)
  with pytest.raises(ConfigError, match=r"^config.batch_size: per-process batch 6 exceeds the 5 training "
                     r"records this process reads$"):
    pipeline.train_dataset(_src(11, kind), preprocess=_ident, batch_size=12, seed=0, process_index=1,
                           process_count=2)


@KINDS
@pytest.mark.parametrize("n,pcount", [(17, 2), (20, 3)])
def test_each_process_trains_on_exactly_its_rows_every_epoch(kind, n, pcount):
  bs = 2
  seen = []
  for p in range(pcount):
    share = list(range(p, n, pcount))
    per_epoch = len(share) // bs
    it = pipeline.make_iterator(pipeline.train_dataset(_src(n, kind), preprocess=_ident, batch_size=bs * pcount,
                                                       seed=1, process_index=p, process_count=pcount))
    epoch = np.concatenate([next(it)["id"] for _ in range(per_epoch)])
    assert len(epoch) == len(set(epoch)) == per_epoch * bs  # each row of the share at most once
    assert set(epoch) <= set(share) and len(set(share) - set(epoch)) == len(share) % bs
    seen.append(set(epoch))
  assert not set.intersection(*seen) and len(set.union(*seen)) == sum(map(len, seen))


@KINDS
@pytest.mark.parametrize("n,pcount,gbs", [(41, 2, 8), (31, 3, 6), (5, 4, 8)])
def test_each_process_evaluates_exactly_its_rows_in_order(kind, n, pcount, gbs):
  bs = gbs // pcount
  num_batches = -(-(-(-n // pcount)) // bs)  # batches of the largest share, for every process
  for p in range(pcount):
    batches = list(pipeline.eval_batches(_src(n, kind), preprocess=_ident, batch_size=gbs, process_index=p,
                                         process_count=pcount))
    assert len(batches) == num_batches and all(len(b["id"]) == bs for b in batches)
    ids = np.concatenate([b["id"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    share = np.arange(p, n, pcount)
    np.testing.assert_array_equal(mask, np.arange(num_batches * bs) < len(share))
    np.testing.assert_array_equal(ids, np.concatenate([share, np.zeros(num_batches * bs - len(share), int)]))
