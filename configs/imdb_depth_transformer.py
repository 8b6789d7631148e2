r"""The IMDB Transformer classifier with a depth mixer between its encoder layers.

configs/imdb_transformer.py (same data, sizes, optimiser and schedule) with
``depth_transformer_classifier`` (aila_jax/models/depth_text.py): layer t's
update EncoderLayer_t(x_{t-1}) - x_{t-1} goes to the mixer, which adds its
combination of the earlier layers' token states ``[B, L, D]``.
``--config.model.mixer=residual`` is exactly the plain encoder (same parameters).

  AILA_DATA_DIR=../shared/data python train.py --config=configs/imdb_depth_transformer.py \
      --workdir=runs/imdb_depth_transformer_aila1 --config.model.mixer=aila1
"""

import ml_collections

from configs import imdb_transformer


def get_config() -> ml_collections.ConfigDict:
  config = imdb_transformer.get_config()
  config.model_name = "depth_transformer_classifier"  # aila_jax.models.depth_text.DepthTransformerClassifier
  config.model.mixer = "aila1"         # residual (the plain encoder), dense, aila1, aila2, mrla_base, mrla_light
  config.model.mixer_kwargs = ml_collections.ConfigDict()  # e.g. pooling='per_token', num_heads=4 (aila2)
  config.model.drop_path = 0.0         # stochastic depth on each layer's update
  return config
