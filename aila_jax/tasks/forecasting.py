r"""Forecasting: a loss on scaled values for training; price-space metrics and the naive baseline for eval.

The model maps ``batch['inputs']`` (``[B, L, F]`` scaled history) to ``[B, H]``
scaled forecasts :math:`\hat z`. Training minimises, on the scaled values
(``config.task_kwargs.loss``),

* ``mse`` (default): :math:`\ell = \frac{1}{BH} \sum_{b,h} (\hat z_{bh} - z_{bh})^2`;
* ``huber``: the Huber loss with ``huber_delta`` (default 1.0, in units of the
  scaled target: one train standard deviation of the change with
  ``target='change'``), robust to the fat tails of daily returns.

With the dataset's ``target='change'`` (:mod:`aila_jax.data.prices`) the
model predicts the change from the last observed close, so :math:`\hat z = 0`
is the naive last-value forecast exactly and the model learns a correction to
it (with ``config.model.zero_head`` it starts there).

Evaluation de-scales the forecasts with the dataset's train-fitted scaler
(``dataset.info['scaler']``) to prices :math:`\hat p` and reports, per window
averaged over the horizon and then over windows (the trainer divides every sum
by ``count``):

* ``mse``, ``mae``: :math:`\frac1H \sum_h (\hat p_h - p_h)^2`, :math:`\frac1H \sum_h |\hat p_h - p_h|`;
  ``rmse`` is :math:`\sqrt{\text{mse}}` (:func:`add_rmse`, since a root does not add over batches);
* ``directional_accuracy`` (also logged as ``accuracy``):
  :math:`\frac1H \sum_h [\mathrm{sign}(\hat p_h - p_s) = \mathrm{sign}(p_h - p_s)]`, the share of
  horizons whose direction of change from the last close :math:`p_s` is right;
* ``loss``: the training loss on the scaled values;
* ``naive_mse``, ``naive_mae``, ``naive_directional_accuracy``: the same for the
  naive last-value forecast :math:`\hat p_h = p_s`, computed in the same sums.
  The naive forecast predicts no change, so its directional accuracy is the
  (small) share of unchanged closes; a coin flip scores 0.5;
* ``mse_diff``, ``mse_diff_sq``: the mean of the per-window loss differential
  :math:`d = \frac1H\sum_h (\hat p_h - p_h)^2 - \frac1H\sum_h (p_s - p_h)^2`
  and of :math:`d^2`; :func:`add_derived` turns them into the Diebold-Mariano
  statistic ``dm_stat`` :math:`= \bar d / \sqrt{\widehat{\mathrm{var}}(d) / n}`
  (negative: the model beats the naive forecast; :math:`|{\rm dm}| > 1.96`:
  significant at 5% for ``H = 1``; overlapping windows of ``H > 1`` are
  autocorrelated and this plain variance understates the error).

Model selection (:func:`select_by_val`): train with ``config.eval_every`` > 0
so the trainer evaluates val and test at each eval step (``metrics.jsonl``),
then report the test metrics of the eval step with the lowest *validation*
MSE: early stopping on the chronological val split, test never consulted.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Sequence

import jax.numpy as jnp

from aila_jax.errors import ConfigError
from aila_jax.tasks.base import apply_model, check_task_kwargs

LOSSES = ("mse", "huber")


def add_rmse(metrics: dict[str, Any]) -> dict[str, Any]:
  """Adds ``<prefix>/rmse`` and ``<prefix>/naive_rmse`` = sqrt of the matching ``mse`` entries."""
  out = dict(metrics)
  for key, value in metrics.items():
    if key.endswith("/mse") or key.endswith("/naive_mse"):
      out[key[:-3] + "rmse"] = math.sqrt(value)
  return out


def add_derived(metrics: dict[str, Any]) -> dict[str, Any]:
  """:func:`add_rmse` plus ``<prefix>/dm_stat`` (Diebold-Mariano, model vs naive; see the module docstring)."""
  out = add_rmse(metrics)
  for key, mean in metrics.items():
    if not key.endswith("/mse_diff"):
      continue
    prefix = key[:-len("/mse_diff")]
    second, count = metrics.get(prefix + "/mse_diff_sq"), metrics.get(prefix + "/count")
    if second is None or not count:
      continue
    var = max(second - mean ** 2, 0.0)
    out[prefix + "/dm_stat"] = mean / math.sqrt(var / count) if var > 0 else 0.0
  return out


def naive_row(row: dict[str, Any], step: int = 0) -> dict[str, Any]:
  """The eval metrics of the naive forecast, from the ``*/naive_*`` entries of an eval ``row``.

  They are the metrics of an untrained model with ``model.zero_head`` and the
  dataset's ``target='change'``: its output is exactly 0, i.e. exactly the naive
  forecast (tested), so this is the step-0 eval the trainer does not run.
  """
  out = {"step": step, "initial_naive": True}
  for key, value in row.items():
    prefix, _, name = key.rpartition("/")
    if not prefix.startswith("eval"):
      continue
    if name.startswith("naive_"):
      out[key] = value
      out[f"{prefix}/{name[len('naive_'):]}"] = value
      if name == "naive_directional_accuracy":
        out[f"{prefix}/accuracy"] = value
    elif name in ("count", "mse_diff", "mse_diff_sq"):
      out[key] = 0.0 if name != "count" else value
  return out


def select_by_val(rows: Sequence[dict] | str | pathlib.Path, *, key: str = "eval_val/mse",
                  initial_naive: bool = False) -> dict[str, Any]:
  """The eval row with the lowest validation ``key`` (ties: the earliest step), with :func:`add_derived`.

  ``rows``: the rows of a workdir's ``metrics.jsonl`` or the workdir itself.
  The row holds the test metrics (``eval/*``) measured at that step: the
  early-stopped model's test score; the test metrics never enter the choice.
  ``initial_naive``: the untrained model (step 0) is a candidate too, with the
  metrics of :func:`naive_row`; only valid for a zero-initialised head and
  ``target='change'`` (the caller checks). Early stopping then keeps the
  initial state, the naive forecast, when no trained step is better on val.
  Raises ValueError when no row has ``key`` (set ``config.eval_every`` > 0
  and keep a val split).
  """
  if isinstance(rows, (str, pathlib.Path)):
    from aila_jax.train.metrics import read_metrics  # pylint: disable=g-import-not-at-top
    rows = read_metrics(rows)
  evals = [r for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
  if not evals:
    raise ValueError(f"select_by_val: no eval row holds {key!r}; train with config.eval_every > 0 and a "
                     "non-empty val split")
  if initial_naive:
    evals = [naive_row(evals[0])] + evals
  best = min(evals, key=lambda r: (r[key], r["step"]))
  return add_derived(best)


@dataclasses.dataclass(frozen=True)
class ForecastingTask:
  """Regression of a horizon of scaled values; see the module docstring."""
  scaler: Any
  horizon: int
  loss: str = "mse"
  huber_delta: float = 1.0
  input_key: str = "inputs"
  target_key: str = "target"

  def __post_init__(self):
    if self.loss not in LOSSES:
      raise ConfigError(f"config.task_kwargs.loss: expected one of {LOSSES}, got {self.loss!r}")
    if not self.huber_delta > 0:
      raise ConfigError(f"config.task_kwargs.huber_delta: expected a number > 0, got {self.huber_delta!r}")

  @classmethod
  def from_config(cls, config, dataset) -> "ForecastingTask":
    if "scaler" not in dataset.info:
      raise ConfigError(f"config.task: 'forecasting' needs a dataset with a price scaler (dataset 'prices'); "
                        f"config.dataset is {dataset.name!r}")
    kwargs = check_task_kwargs(cls, config, task="forecasting",
                               reserved=tuple(f.name for f in dataclasses.fields(cls)
                                              if f.name not in ("input_key", "target_key", "loss",
                                                                "huber_delta")))
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

  def _pointwise_loss(self, pred, target):
    err = pred - target
    if self.loss == "huber":
      a, d = jnp.abs(err), self.huber_delta
      return jnp.where(a <= d, 0.5 * err ** 2, d * (a - 0.5 * d))
    return err ** 2

  def train_loss(self, apply_fn, variables, batch, *, rngs, mutable=()):
    pred, new_state = self._predict(apply_fn, variables, batch, train=True, rngs=rngs, mutable=mutable)
    loss = jnp.mean(self._pointwise_loss(pred, batch[self.target_key]))
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
    diff = mse - n_mse  # per window, before summing: no cancellation between two large sums
    total = lambda v: (v * mask).sum()  # noqa: E731
    return {"loss": total(self._pointwise_loss(pred, target).mean(-1)), "mse": total(mse), "mae": total(mae),
            "directional_accuracy": total(dacc), "accuracy": total(dacc),
            "naive_mse": total(n_mse), "naive_mae": total(n_mae), "naive_directional_accuracy": total(n_dacc),
            "mse_diff": total(diff), "mse_diff_sq": total(diff ** 2), "count": mask.sum()}
