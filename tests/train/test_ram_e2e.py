"""RAM and WS-RAM train end to end through train_and_evaluate on tiny settings."""
import json

import pytest

from aila_jax.errors import ConfigError
from aila_jax.train import train_and_evaluate
from configs import ram_mnist, wsram_mnist


def _tiny(module, data_dir, **task):
  c = module.get_config()
  c.data_dir = str(data_dir)
  c.model.update(glimpse_size=4, num_glimpses=2, glimpse_hidden=8, location_hidden=8,
                 glimpse_features=16, hidden=16)
  if "inference_hidden" in c.model:
    c.model.inference_hidden = 16
  c.task_kwargs.update(task)
  c.batch_size, c.eval_batch_size, c.num_train_steps = 32, 2000, 30
  c.log_every, c.eval_every, c.checkpoint_every = 10, 0, 30
  c.schedule.warmup_steps = 5
  c.progress = False
  return c


@pytest.mark.parametrize("module,extra", [(ram_mnist, {}), (wsram_mnist, {"sleep_weight": 1.0})])
def test_trains_end_to_end(module, extra, data_dir, tmp_path):
  result = train_and_evaluate(_tiny(module, data_dir, **extra), tmp_path)
  assert result["step"] == 30
  assert result["eval/count"] == 10000
  correct = result["eval/accuracy"] * 10000
  assert abs(correct - round(correct)) < 1e-6  # a whole number of the 10,000 test digits
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if "train/loss" in r]
  assert len(train_rows) == 3
  if module is wsram_mnist:
    assert "train/ess" in train_rows[-1] and "train/sleep_loss" in train_rows[-1]
    assert "eval/accuracy_sampled" in result
  else:
    assert "train/reinforce" in train_rows[-1]


def test_bad_k_fails_before_compiling(data_dir, tmp_path):
  c = _tiny(wsram_mnist, data_dir)
  c.task_kwargs.num_samples = 0
  with pytest.raises(ConfigError, match="config.task_kwargs.num_samples"):
    train_and_evaluate(c, tmp_path)


def test_wrong_channels_is_a_clear_error(data_dir, tmp_path):
  c = _tiny(ram_mnist, data_dir)
  c.model.channels = 3
  with pytest.raises(ValueError, match=r"config.model.channels = 3"):
    train_and_evaluate(c, tmp_path)
