r"""Daily price forecasting, the LSTM baseline: 2 stacked LSTM layers, the same data and recipe as prices_aila.

The same residual-to-naive target, inputs, zero-initialised head, optimiser,
schedule, steps and val evaluations as ``configs/prices_aila.py``; only the
model differs.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/prices_lstm.py \
      --workdir=runs/prices_lstm_sp500 --config.dataset_kwargs.series=sp500
"""

import ml_collections

from configs import prices_aila


def get_config() -> ml_collections.ConfigDict:
  config = prices_aila.get_config()
  config.model_name = "depth_lstm"
  config.model = ml_collections.ConfigDict(dict(
      width=32,                        # LSTM hidden size
      depth=2,                         # stacked LSTM layers
      mixer="none",                    # plain stack (the classic LSTM); any depth mixer works
      mixer_kwargs=ml_collections.ConfigDict(),
      zero_head=True,                  # start at the naive forecast (with target='change')
  ))
  return config
