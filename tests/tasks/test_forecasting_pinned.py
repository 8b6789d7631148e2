"""ForecastingTask eval sums the existing tests leave open: the Diebold-Mariano loss differential (model minus
naive, and its square, per window) and the naive directional accuracy, against numpy."""
import jax.numpy as jnp
import numpy as np

from aila_jax.data.prices import PriceScaler
from aila_jax.tasks.forecasting import ForecastingTask, add_derived


def test_loss_differential_and_naive_direction_against_numpy():
  task = ForecastingTask(scaler=PriceScaler("log_return", sigma=0.02), horizon=3)
  rng = np.random.default_rng(1)
  b = 6
  pred = rng.normal(size=(b, 3)).astype(np.float32)
  last = np.array([100.0, 50.0, 20.0, 10.0, 30.0, 40.0], np.float32)
  target_price = (last[:, None] * np.exp(0.02 * rng.normal(size=(b, 3)))).astype(np.float32)
  target_price[0, 1] = last[0]  # an unchanged close: the naive forecast gets its direction right there
  target_price[3, :] = last[3]
  target = (np.log(target_price) - np.log(last)[:, None]) / 0.02
  mask = np.array([1, 1, 0, 1, 1, 1], np.float32)
  batch = {"inputs": np.zeros((b, 2, 1), np.float32), "target": target.astype(np.float32), "last": last,
           "target_price": target_price, "mask": mask}
  sums = task.eval_sums(lambda v, x, train, rngs: (jnp.asarray(pred), {}), {}, batch)

  p = last[:, None].astype(np.float64) * np.exp(0.02 * pred)
  tp = target_price.astype(np.float64)
  d = ((p - tp) ** 2).mean(1) - ((last[:, None] - tp) ** 2).mean(1)  # model minus naive, per window
  np.testing.assert_allclose(sums["mse_diff"], (d * mask).sum(), rtol=1e-4)
  np.testing.assert_allclose(sums["mse_diff_sq"], (d ** 2 * mask).sum(), rtol=1e-4)
  naive_dir = (np.sign(tp - last[:, None]) == 0).mean(1)  # sign(p_s - p_s) = 0
  np.testing.assert_allclose(sums["naive_directional_accuracy"], (naive_dir * mask).sum(), rtol=1e-6)
  assert abs(float(sums["naive_directional_accuracy"]) - (1 / 3 + 1.0)) < 1e-6

  # the statistic of these sums: negative exactly where the model's squared error is the smaller one
  n = mask.sum()
  m = add_derived({"eval/mse_diff": float(sums["mse_diff"]) / n, "eval/mse_diff_sq": float(sums["mse_diff_sq"]) / n,
                   "eval/count": float(n)})
  dd = d[mask > 0]
  np.testing.assert_allclose(m["eval/dm_stat"], dd.mean() / np.sqrt(dd.var() / n), rtol=1e-3)


def test_train_loss_is_the_mean_over_batch_and_horizon():
  rng = np.random.default_rng(3)
  pred, target = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
  batch = {"inputs": np.zeros((4, 2, 1), np.float32), "target": target}
  for loss, ref in (("mse", (pred - target) ** 2),
                    ("huber", np.where(np.abs(pred - target) <= 0.5, 0.5 * (pred - target) ** 2,
                                       0.5 * (np.abs(pred - target) - 0.25)))):
    task = ForecastingTask(scaler=None, horizon=3, loss=loss, huber_delta=0.5)
    got, _, _ = task.train_loss(lambda v, x, train, rngs: (jnp.asarray(pred), {}), {}, batch, rngs=None)
    np.testing.assert_allclose(got, ref.mean(), rtol=1e-6, err_msg=loss)


def test_naive_row_logs_the_naive_direction_as_accuracy():
  from aila_jax.tasks.forecasting import naive_row  # pylint: disable=g-import-not-at-top
  row = {"step": 40, "eval/mse": 1.0, "eval/naive_mse": 2.0, "eval/naive_directional_accuracy": 0.03,
         "eval/directional_accuracy": 0.6, "eval/accuracy": 0.6, "eval/count": 10.0, "eval/mse_diff": -1.0}
  out = naive_row(row)
  assert out["eval/accuracy"] == 0.03 and out["eval/directional_accuracy"] == 0.03 and out["eval/mse"] == 2.0
  assert out["eval/mse_diff"] == 0.0 and out["eval/count"] == 10.0 and out["step"] == 0
