r"""Daily price forecasting, the LSTM baseline: 2 stacked LSTM layers, the same data and recipe as prices_aila.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/prices_lstm.py \
      --workdir=runs/prices_lstm_sp500 --config.dataset_kwargs.series=sp500
"""

import ml_collections

from configs import prices_aila


def get_config() -> ml_collections.ConfigDict:
  config = prices_aila.get_config()
  config.model_name = "depth_lstm"
  config.model = ml_collections.ConfigDict(dict(
      width=64,                        # LSTM hidden size
      depth=2,                         # stacked LSTM layers
      mixer="none",                    # plain stack (the classic LSTM); any depth mixer works
      mixer_kwargs=ml_collections.ConfigDict(),
  ))
  return config
