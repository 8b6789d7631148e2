r"""Daily price forecasting with AILA on the LSTM backbone: the 2-layer LSTM of prices_lstm, layers joined by AILA-1.

The same data, residual-to-naive target, zero-initialised head, optimiser,
schedule, steps and val evaluations as ``configs/prices_lstm.py`` (and
``configs/prices_aila.py``); the only change from the LSTM baseline is the
depth mixer: layer :math:`t` adds a learned softmax mix of the input embedding
and every earlier LSTM layer's output (AILA architecture 1,
``aila_jax.nn.depth.AILA1Mixer``) instead of reading only the layer below.
6 more parameters than the LSTM (16,775 vs 16,769); ``--config.model.mixer=aila2``
for architecture 2 (21,121).

Measured (5 series x seeds 0, 1, 2, on the 2-core CPU; test MSE at the best
validation step, step 0 = the untrained model = the naive forecast;
bench/results/depth_train_prices_lstm_aila_cpu.json): on gold 1620.94 (AILA-2
1620.88) vs the LSTM's 1622.33 and the naive 1628.86 (Diebold-Mariano -2.1 to
-2.7); on S&P 500, USD, coffee and wheat validation keeps the naive forecast for
every seed, so the MSE equals the naive one, while the LSTM is worse than naive
on coffee (9.298 vs 9.291) and wheat (208.67 vs 208.43).

  AILA_DATA_DIR=../shared/data python train.py --config=configs/prices_aila_lstm.py \
      --workdir=runs/prices_aila_lstm_gold --config.dataset_kwargs.series=gold
  python3 bench/depth_train.py --skip cifar --price_models lstm,lstm_aila1,lstm_aila2 \
      --price_jobs 2 --price_platform cpu --budget_s 1700      # all series and seeds, ~15 min on 2 cores
"""

import ml_collections

from configs import prices_lstm


def get_config() -> ml_collections.ConfigDict:
  config = prices_lstm.get_config()
  config.model.mixer = "aila1"           # the depth mixer joining the LSTM layers (aila1, aila2, residual, ...)
  config.model.mixer_kwargs = ml_collections.ConfigDict()  # e.g. {'num_heads': 4} for aila2
  return config
