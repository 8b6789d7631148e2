r"""Forecasting: MSE on scaled values for training; price-space metrics and the naive baseline for eval.

The model maps ``batch['inputs']`` (``[B, L, 1]`` scaled history) to ``[B, H]``
scaled forecasts :math:`\hat z`. Training minimises

.. math:: \ell = \frac{1}{BH} \sum_{b,h} (\hat z_{bh} - z_{bh})^2

on the scaled values. Evaluation de-scales the forecasts with the dataset's
train-fitted scaler (``dataset.info['scaler']``, :mod:`aila_jax.data.prices`)
to prices :math:`\hat p` and reports, per window averaged over the horizon and
then over windows (the trainer divides every sum by ``count``):

* ``mse``, ``mae``: :math:`\frac1H \sum_h (\hat p_h - p_h)^2`, :math:`\frac1H \sum_h |\hat p_h - p_h|`;
  ``rmse`` is :math:`\sqrt{\text{mse}}` (:func:`add_rmse`, since a root does not add over batches);
* ``directional_accuracy`` (also logged as ``accuracy``):
  :math:`\frac1H \sum_h [\mathrm{sign}(\hat p_h - p_s) = \mathrm{sign}(p_h - p_s)]`, the share of
  horizons whose direction of change from the last close :math:`p_s` is right;
* ``loss``: the scaled MSE;
* ``naive_mse``, ``naive_mae``, ``naive_directional_accuracy``: the same for the
  naive last-value forecast :math:`\hat p_h = p_s`, computed in the same sums.
  The naive forecast predicts no change, so its directional accuracy is the
  (small) share of unchanged closes; a coin flip scores 0.5.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp

from aila_jax.errors import ConfigError
from aila_jax.tasks.base import apply_model, check_task_kwargs


def add_rmse(metrics: dict[str, Any]) -> dict[str, Any]:
  """Adds ``<prefix>/rmse`` and ``<prefix>/naive_rmse`` = sqrt of the matching ``mse`` entries."""
  out = dict(metrics)
  for key, value in metrics.items():
    if key.endswith("/mse") or key.endswith("/naive_mse"):
      out[key[:-3] + "rmse"] = math.sqrt(value)
  return out


@dataclasses.dataclass(frozen=True)
class ForecastingTask:
  """Regression of a horizon of scaled values; see the module docstring."""
  scaler: Any
  horizon: int
  input_key: str = "inputs"
  target_key: str = "target"

  @classmethod
  def from_config(cls, config, dataset) -> "ForecastingTask":
    if "scaler" not in dataset.info:
      raise ConfigError(f"config.task: 'forecasting' needs a dataset with a price scaler (dataset 'prices'); "
                        f"config.dataset is {dataset.name!r}")
    kwargs = check_task_kwargs(cls, config, task="forecasting",
                               reserved=tuple(f.name for f in dataclasses.fields(cls)
                                              if f.name not in ("input_key", "target_key")))
    return cls(scaler=dataset.info["scaler"], horizon=int(dataset.model_kwargs["num_classes"]), **kwargs)

  def model_inputs(self, batch) -> tuple:
    return (batch[self.input_key],)

  def _predict(self, apply_fn, variables, batch, *, train, rngs, mutable=()):
    (pred, _), new_state = apply_model(apply_fn, variables, self.model_inputs(batch), train=train, rngs=rngs,
                                       mutable=mutable)
    target = batch[self.target_key]
    if pred.shape != target.shape:
      raise ValueError(f"forecasting: model output shape {pred.shape} does not match batch['{self.target_key}'] "
                       f"{target.shape}; the model's num_classes must equal the horizon {self.horizon}")
    return pred.astype(jnp.float32), new_state

  def train_loss(self, apply_fn, variables, batch, *, rngs, mutable=()):
    pred, new_state = self._predict(apply_fn, variables, batch, train=True, rngs=rngs, mutable=mutable)
    loss = jnp.mean((pred - batch[self.target_key]) ** 2)
    return loss, {"loss": loss}, new_state

  def eval_sums(self, apply_fn, variables, batch, *, rngs=None):
    pred, _ = self._predict(apply_fn, variables, batch, train=False, rngs=rngs)
    target = batch[self.target_key]
    mask = batch.get("mask", jnp.ones(target.shape[:1], jnp.float32))
    last = batch["last"].astype(jnp.float32)  # (B,)
    price = batch["target_price"].astype(jnp.float32)  # (B, H)
    pred_price = self.scaler.unscale(pred, last, xp=jnp)  # (B, H)
    naive = jnp.broadcast_to(last[:, None], price.shape)
    true_dir = jnp.sign(price - last[:, None])

    def per_window(p):
      err = p - price
      return ((err ** 2).mean(-1), jnp.abs(err).mean(-1),
              (jnp.sign(p - last[:, None]) == true_dir).astype(jnp.float32).mean(-1))

    mse, mae, dacc = per_window(pred_price)
    n_mse, n_mae, n_dacc = per_window(naive)
    total = lambda v: (v * mask).sum()  # noqa: E731
    return {"loss": total(((pred - target) ** 2).mean(-1)), "mse": total(mse), "mae": total(mae),
            "directional_accuracy": total(dacc), "accuracy": total(dacc),
            "naive_mse": total(n_mse), "naive_mae": total(n_mae), "naive_directional_accuracy": total(n_dacc),
            "count": mask.sum()}
