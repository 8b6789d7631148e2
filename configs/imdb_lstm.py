r"""LSTM baseline on IMDB sentiment: embedding, a bidirectional LSTM over the true lengths, max pooling.

The data, batch, optimiser and schedule of configs/imdb_transformer.py (so that
the LSTM, the Transformer and AILA, configs/imdb_aila.py, share one recipe);
``lstm_classifier`` (aila_jax/models/depth_text.py): a 128-wide embedding, one
bidirectional LSTM layer of 128 units per direction that never reads padding,
the max over the real tokens' outputs, dropout 0.1 and a linear head.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/imdb_lstm.py \
      --workdir=runs/imdb_lstm
"""

import ml_collections

from configs import imdb_transformer


def get_config() -> ml_collections.ConfigDict:
  config = imdb_transformer.get_config()
  config.model_name = "lstm_classifier"  # aila_jax.models.depth_text.LSTMClassifier
  config.model = ml_collections.ConfigDict(dict(
      embed_dim=128,                   # token embedding width
      hidden=128,                      # LSTM units per direction
      num_layers=1,                    # stacked (bi)LSTM layers
      bidirectional=True,
      pooling="max",                   # 'max' / 'mean' over real tokens, or 'last' (final states)
      dropout_rate=0.1,                # embeddings, between layers, pooled vector
      unroll=8,                        # scan steps per loop iteration (speed only)
  ))
  config.optimizer.learning_rate = 1e-3
  return config
