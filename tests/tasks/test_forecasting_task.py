"""Forecasting task: eval sums against numpy, the naive baseline in the same sums, end to end on real prices."""

import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.data.prices import PriceScaler
from aila_jax.errors import ConfigError
from aila_jax.tasks.forecasting import ForecastingTask, add_rmse

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
  config.dataset_kwargs = dict(series="gold", lookback=8, horizon=2)
  result = train_and_evaluate(config, tmp_path / "w")
  for key in ("eval/mse", "eval/mae", "eval/naive_mse", "eval_val/mse", "eval/directional_accuracy"):
    assert np.isfinite(result[key]), key
  assert 0.3 < result["eval/directional_accuracy"] < 0.7
  assert result["eval/naive_directional_accuracy"] < 0.05
  with pytest.raises(ConfigError, match="'forecasting' needs a dataset with a price scaler"):
    bad = make_testing_config(data_dir, task="forecasting", num_train_steps=1)
    train_and_evaluate(bad, tmp_path / "bad")
