r"""Daily price forecasting with an AILA MLP (architecture 2 by default) over a 32-day lookback.

Chronological 70/15/15 splits, statistics fitted on the train rows only,
next-day close. The set-up is the residual-to-naive one
(``aila_jax.data.prices``): the target is the change of the log close from
the last observed close, scaled by the train std of daily changes
(``target='change'``), so a zero output *is* the naive last-value forecast;
the head starts at zero (``model.zero_head``), so training starts from the
random walk and learns a correction to it. Inputs: the window relative to the
last close and the daily log returns inside it (``features``), both in units of
the train std. Eval reports MSE/MAE/RMSE/directional accuracy on de-scaled
prices with the naive baseline beside them (``eval/naive_*``) and the
Diebold-Mariano loss differential (``eval/mse_diff``); val is evaluated every
``eval_every`` steps so the run can be early-stopped on val
(``aila_jax.tasks.forecasting.select_by_val``; ``bench/depth_train.py`` does).
Series: sp500, gold, usd, coffee, wheat. Sizes are small (width 32): on these
series anything larger only overfits sooner, and the runs stay CPU-friendly.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/prices_aila.py \
      --workdir=runs/prices_aila_sp500 --config.dataset_kwargs.series=sp500

(AILA-1: ``--config.model.mixer=aila1 --config.model.mixer_kwargs='{}'``. The
earlier level-scaled set-up: ``--config.dataset_kwargs.target=level``,
``features=level``, ``transform=standard``.)
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "prices"
  config.dataset_kwargs = ml_collections.ConfigDict(dict(
      series="sp500",                  # sp500, gold, usd, coffee, wheat
      lookback=32,                     # days of input
      horizon=1,                       # days predicted
      split=(0.7, 0.15, 0.15),         # train, val, test fractions in time order
      transform="log_return",          # the space: 'log_return' (log close) or 'standard' (close)
      target="change",                 # 'change' (from the last close: 0 = naive) or 'level'
      features=("relative", "returns"),  # input channels: of 'relative', 'returns', 'level'
  ))
  config.task = "forecasting"
  config.task_kwargs = ml_collections.ConfigDict(dict(
      loss="mse",                      # 'mse' or 'huber' (on the scaled target)
  ))
  config.model_name = "depth_mlp"
  config.model = ml_collections.ConfigDict(dict(
      width=32,                        # hidden width of every layer
      depth=4,                         # MLP blocks
      mixer="aila2",                   # the depth mixer (aila_jax.nn.depth.MIXERS)
      mixer_kwargs=ml_collections.ConfigDict(dict(num_heads=4)),  # the mixer's options
      dropout_rate=0.3,
      zero_head=True,                  # start at the naive forecast (with target='change')
  ))
  config.batch_size = 256
  config.eval_batch_size = 1024
  config.num_train_steps = 600
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-4
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "warmup_cosine"
  config.schedule.warmup_steps = 20
  config.log_every = 50
  config.eval_every = 50               # val and test at every eval: early stopping on val
  config.checkpoint_every = 600
  return config
