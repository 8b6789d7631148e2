"""Forecasting task: eval sums against numpy, the naive baseline in the same sums, a zero-head model is the
naive forecast exactly, early stopping on val, end to end on real prices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aila_jax import models
from aila_jax.data import datasets
from aila_jax.data.prices import PriceScaler
from aila_jax.errors import ConfigError
from aila_jax.tasks.forecasting import ForecastingTask, add_derived, add_rmse, select_by_val

from helpers import make_testing_config


def test_eval_sums_match_numpy():
  scaler = PriceScaler("log_return", sigma=0.02)
  task = ForecastingTask(scaler=scaler, horizon=2)
  rng = np.random.default_rng(0)
  pred = rng.normal(size=(4, 2)).astype(np.float32)
  last = np.array([100.0, 50.0, 20.0, 10.0], np.float32)
  target_price = (last[:, None] * np.exp(0.02 * rng.normal(size=(4, 2)))).astype(np.float32)
  target = (np.log(target_price) - np.log(last)[:, None]) / 0.02
  batch = {"inputs": np.zeros((4, 3, 1), np.float32), "target": target.astype(np.float32), "last": last,
           "target_price": target_price, "mask": np.array([1, 1, 1, 0], np.float32)}
  apply_fn = lambda v, x, train, rngs: (jnp.asarray(pred), {})  # noqa: E731
  sums = task.eval_sums(apply_fn, {}, batch)
  m = batch["mask"]
  p = last[:, None] * np.exp(0.02 * pred)
  np.testing.assert_allclose(sums["mse"], (((p - target_price) ** 2).mean(1) * m).sum(), rtol=1e-4)
  np.testing.assert_allclose(sums["mae"], ((np.abs(p - target_price)).mean(1) * m).sum(), rtol=1e-4)
  np.testing.assert_allclose(sums["loss"], (((pred - target) ** 2).mean(1) * m).sum(), rtol=1e-4)
  np.testing.assert_allclose(sums["naive_mse"], (((last[:, None] - target_price) ** 2).mean(1) * m).sum(),
                             rtol=1e-4)
  dacc = ((np.sign(p - last[:, None]) == np.sign(target_price - last[:, None])).mean(1) * m).sum()
  np.testing.assert_allclose(sums["directional_accuracy"], dacc, rtol=1e-6)
  assert float(sums["count"]) == 3.0
  # a model that predicts zero change is the naive baseline
  zero = task.eval_sums(lambda v, x, train, rngs: (jnp.zeros((4, 2)), {}), {}, batch)
  np.testing.assert_allclose(zero["mse"], zero["naive_mse"], rtol=1e-5)
  np.testing.assert_allclose(zero["mae"], zero["naive_mae"], rtol=1e-5)
  assert add_rmse({"eval/mse": 4.0, "eval/naive_mse": 9.0}) == {
      "eval/mse": 4.0, "eval/naive_mse": 9.0, "eval/rmse": 2.0, "eval/naive_rmse": 3.0}


def test_shape_mismatch_names_the_horizon():
  task = ForecastingTask(scaler=PriceScaler("standard"), horizon=2)
  batch = {"inputs": np.zeros((2, 3, 1)), "target": np.zeros((2, 2), np.float32)}
  with pytest.raises(ValueError, match="num_classes must equal the horizon 2"):
    task.train_loss(lambda v, x, train, rngs: (jnp.zeros((2, 3)), {}), {}, batch, rngs=None)


def test_end_to_end_on_real_prices(tmp_path, data_dir):
  from aila_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  config = make_testing_config(
      data_dir, dataset="prices", task="forecasting", model_name="depth_mlp",
      model=dict(width=16, depth=2, mixer="aila1"), num_train_steps=30, batch_size=64, eval_batch_size=512,
      log_every=10, eval_every=0, checkpoint_every=30)
  config.dataset_kwargs = dict(series="gold", lookback=8, horizon=2, target="change",
                               features=("relative", "returns"))
  config.model.zero_head = True
  config.eval_every = 10
  result = train_and_evaluate(config, tmp_path / "w")
  best = select_by_val(tmp_path / "w", initial_naive=True)
  assert best["step"] in (0, 10, 20, 30) and np.isfinite(best["eval/dm_stat"])
  assert best["eval_val/mse"] <= min(result["eval_val/mse"], result["eval_val/naive_mse"])
  for key in ("eval/mse", "eval/mae", "eval/naive_mse", "eval_val/mse", "eval/directional_accuracy"):
    assert np.isfinite(result[key]), key
  assert 0.3 < result["eval/directional_accuracy"] < 0.7
  assert result["eval/naive_directional_accuracy"] < 0.05
  with pytest.raises(ConfigError, match="'forecasting' needs a dataset with a price scaler"):
    bad = make_testing_config(data_dir, task="forecasting", num_train_steps=1)
    train_and_evaluate(bad, tmp_path / "bad")


@pytest.mark.parametrize("model_name,model_kw", [("depth_mlp", dict(width=8, depth=2, mixer="aila2",
                                                                     mixer_kwargs={"num_heads": 2})),
                                                  ("depth_lstm", dict(width=8, depth=1)),
                                                  ("depth_lstm", dict(width=8, depth=2, mixer="aila1"))])
def test_zero_head_model_is_the_naive_forecast_exactly(data_dir, model_name, model_kw):
  tasks, batches = [], []
  for transform in ("log_return", "standard"):
    config = ml_collections.ConfigDict(dict(dataset="prices", data_dir=str(data_dir), dataset_kwargs=dict(
        series="coffee", lookback=6, horizon=2, transform=transform, target="change",
        features=("relative", "returns"))))
    data = datasets.build_dataset(config)
    tasks.append(ForecastingTask.from_config(config, data))
    batches.append(data.preprocess({k: v[-128:] for k, v in data.eval["test"].arrays.items()}))
  zero = models.get_model(model_name, num_classes=2, zero_head=True, **model_kw)
  plain = models.get_model(model_name, num_classes=2, **model_kw)

  @jax.jit  # one compile: init and eval of both models on both transforms
  def sums(batches):
    out = []
    for task, batch in zip(tasks, batches):
      for model in (zero, plain):
        out.append(task.eval_sums(model.apply, model.init(jax.random.PRNGKey(1), batch["inputs"]), batch))
    return out

  (zero_log, plain_log, zero_std, _) = jax.device_get(sums(batches))
  for transform, s in (("log_return", zero_log), ("standard", zero_std)):
    for name in ("mse", "mae", "directional_accuracy"):  # bit for bit, not approximately
      np.testing.assert_array_equal(s[name], s["naive_" + name], err_msg=f"{transform} {name}")
    assert float(s["mse_diff"]) == 0.0 and float(s["mse_diff_sq"]) == 0.0 and float(s["naive_mse"]) > 0
  assert float(plain_log["mse"]) != float(plain_log["naive_mse"])  # the default head is not the naive forecast


def _row(step, val, test, naive_val=10.0, naive_test=20.0):
  return {"step": step, "eval_val/mse": val, "eval_val/naive_mse": naive_val, "eval/mse": test,
          "eval/naive_mse": naive_test, "eval/mae": test / 10, "eval/naive_mae": naive_test / 10,
          "eval/directional_accuracy": 0.5, "eval/naive_directional_accuracy": 0.01, "eval/count": 100.0,
          "eval/mse_diff": test - naive_test, "eval/mse_diff_sq": 4.0 + (test - naive_test) ** 2}


def test_select_by_val_uses_val_only():
  rows = [{"step": 5, "train/loss": 1.0}, _row(10, 10.5, 1.0), _row(20, 9.0, 30.0), _row(30, 9.0, 25.0),
          _row(40, 9.5, 0.5)]
  best = select_by_val(rows)
  assert best["step"] == 20 and best["eval/mse"] == 30.0  # the lowest val (earliest on a tie), whatever test says
  assert best["eval/rmse"] == pytest.approx(30.0 ** 0.5)
  # with the step-0 candidate (the naive forecast): chosen only where no trained step beats it on val
  assert select_by_val(rows, initial_naive=True)["step"] == 20
  worse = [_row(10, 10.5, 1.0), _row(20, 11.0, 2.0)]
  init = select_by_val(worse, initial_naive=True)
  assert init["step"] == 0 and init["initial_naive"]
  assert init["eval/mse"] == 20.0 and init["eval_val/mse"] == 10.0 and init["eval/mae"] == 2.0
  assert init["eval/directional_accuracy"] == 0.01 and init["eval/dm_stat"] == 0.0
  with pytest.raises(ValueError, match="no eval row holds 'eval_val/mse'"):
    select_by_val([{"step": 1, "eval/mse": 1.0}])


def test_dm_stat_and_huber_loss():
  rng = np.random.default_rng(0)
  d = rng.normal(0.3, 2.0, size=500)
  m = add_derived({"eval/mse_diff": d.mean(), "eval/mse_diff_sq": (d ** 2).mean(), "eval/count": 500.0})
  np.testing.assert_allclose(m["eval/dm_stat"], d.mean() / np.sqrt(d.var() / 500), rtol=1e-9)
  task = ForecastingTask(scaler=PriceScaler("log_return", sigma=0.01), horizon=1, loss="huber", huber_delta=0.5)
  pred, target = np.array([[0.2], [2.0], [-1.0]], np.float32), np.zeros((3, 1), np.float32)
  batch = {"inputs": np.zeros((3, 2, 1), np.float32), "target": target}
  loss, _, _ = task.train_loss(lambda v, x, train, rngs: (jnp.asarray(pred), {}), {}, batch, rngs=None)
  np.testing.assert_allclose(loss, np.mean([0.5 * 0.04, 0.5 * (2.0 - 0.25), 0.5 * (1.0 - 0.25)]), rtol=1e-6)
  with pytest.raises(ConfigError, match="config.task_kwargs.loss: expected one of"):
    ForecastingTask(scaler=None, horizon=1, loss="mae")
