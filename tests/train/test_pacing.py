"""The trainer keeps at most ``_IN_FLIGHT`` calls queued ahead of the devices (train steps and eval batches).

More than 32 queued programs per device can deadlock XLA's runtime when programs share an all-reduce over
several devices (see ``trainer._IN_FLIGHT``); CI's 2 cores with 8 forced devices aborted on it."""
import jax
import jax.numpy as jnp
import numpy as np

from aila_jax.train import trainer


def _recording(monkeypatch):
  waited = []
  real = jax.block_until_ready
  monkeypatch.setattr(jax, "block_until_ready", lambda x: (waited.append(x), real(x))[1])
  return waited


def test_evaluate_waits_for_the_sum_eight_batches_back_and_sums_every_batch(monkeypatch):
  waited = _recording(monkeypatch)
  batches = [{"x": np.float32(i)} for i in range(20)]
  result = trainer.evaluate(None, lambda state, b: {"loss": jnp.float32(b["x"]) * 2, "count": jnp.float32(1)},
                            iter(batches))
  assert result == {"eval/loss": 2 * sum(range(20)) / 20, "eval/count": 20.0}
  # before batch i's sum is kept, the running sum after batch i - 8 is waited for: sums 0, 0+2, 0+2+4, ...
  assert [float(w["loss"]) for w in waited] == [2.0 * sum(range(j + 1)) for j in range(20 - trainer._IN_FLIGHT)]


def test_training_waits_for_the_metrics_eight_calls_back(monkeypatch, tmp_path, data_dir):
  from configs import testing  # pylint: disable=import-outside-toplevel
  config = testing.get_config()
  config.data_dir = str(data_dir)
  config.num_train_steps, config.log_every, config.eval_every, config.checkpoint_every = 20, 20, 0, 20
  config.eval_batch_size = 1000  # 10 eval batches
  config.progress = False
  waited = _recording(monkeypatch)
  trainer.train_and_evaluate(config, tmp_path)
  steps = [w for w in waited if isinstance(w, dict) and "grad_norm" in w]
  assert len(steps) == 20 - trainer._IN_FLIGHT
  sums = [w for w in waited if isinstance(w, dict) and "count" in w]
  assert [float(w["count"]) for w in sums] == [1000.0 * (j + 1) for j in range(10 - trainer._IN_FLIGHT)]
