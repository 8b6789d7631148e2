r"""Daily price forecasting with an AILA MLP (architecture 2 by default) over a 32-day lookback.

Chronological 70/15/15 splits, scaling fitted on train only, next-day close;
eval reports MSE/MAE/directional accuracy on prices with the naive last-value
baseline beside them (eval/naive_*). Series: sp500, gold, usd, coffee, wheat.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/prices_aila.py \
      --workdir=runs/prices_aila_sp500 --config.dataset_kwargs.series=sp500

(AILA-1: ``--config.model.mixer=aila1``.)
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
      transform="log_return",          # 'log_return' (relative to the last close) or 'standard'
  ))
  config.task = "forecasting"
  config.model_name = "depth_mlp"
  config.model = ml_collections.ConfigDict(dict(
      width=64,                        # hidden width of every layer
      depth=4,                         # MLP blocks
      mixer="aila2",                   # the depth mixer (aila_jax.nn.depth.MIXERS)
      mixer_kwargs=ml_collections.ConfigDict(dict(num_heads=4)),  # the mixer's options
      dropout_rate=0.1,
  ))
  config.batch_size = 256
  config.eval_batch_size = 1024
  config.num_train_steps = 2000
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "warmup_cosine"
  config.schedule.warmup_steps = 100
  config.log_every = 200
  config.eval_every = 1000
  config.checkpoint_every = 1000
  return config
