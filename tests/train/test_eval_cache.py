"""config.eval_cache_mb: eval sets kept on the devices after the first eval give the same metrics, read once."""
import pytest

from aila_jax.data import pipeline
from aila_jax.train import train_and_evaluate
from aila_jax.train.metrics import read_metrics


def _prices_config(data_dir, cache_mb):
  from configs import prices_aila  # pylint: disable=g-import-not-at-top
  config = prices_aila.get_config()
  config.data_dir = str(data_dir)
  config.model.width, config.model.depth = 16, 2
  config.num_train_steps, config.log_every, config.eval_every, config.checkpoint_every = 30, 10, 10, 30
  config.progress = False
  config.eval_cache_mb = cache_mb
  return config


def _eval_rows(workdir):
  return [{k: v for k, v in r.items() if k.startswith("eval") and not k.endswith("seconds")}
          for r in read_metrics(workdir) if "eval/loss" in r]


@pytest.mark.parametrize("cache_mb, reads_per_split", [(512, 1), (0.01, 3)])
def test_cached_evals_equal_fresh_ones_and_read_each_split_once(cache_mb, reads_per_split, tmp_path, data_dir,
                                                               monkeypatch):
  reads = []
  original = pipeline.eval_batches

  def counting(source, **kw):
    reads.append(id(source))
    return original(source, **kw)

  train_and_evaluate(_prices_config(data_dir, 0), tmp_path / "fresh")
  fresh = _eval_rows(tmp_path / "fresh")
  monkeypatch.setattr(pipeline, "eval_batches", counting)
  train_and_evaluate(_prices_config(data_dir, cache_mb), tmp_path / "cached")
  cached = _eval_rows(tmp_path / "cached")
  assert len(cached) == 3 and {"eval/loss", "eval_val/loss"} <= set(cached[0])  # two splits, three evals
  assert cached == fresh  # exactly: the same batches, the same compiled eval step
  assert len(set(reads)) == 2 and all(reads.count(s) == reads_per_split for s in set(reads))
