r"""Encoder-only Transformer classifier on IMDB sentiment (25k train / 25k test reviews).

Reviews lower-cased, ``<br />`` removed, 16,000-piece BPE trained on the
training reviews, the first 256 pieces kept; a 3-layer d_model-256 encoder
with sinusoidal positions and mean pooling over non-padding tokens;
AdamW with warmup-cosine. The AILA issue reuses this config with a depth mixer.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/imdb_transformer.py \
      --workdir=runs/imdb_transformer
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  # --- data ---
  config.dataset = "imdb"              # imdb.jsonl.gz in the data dir, or TFDS 'imdb_reviews'
  config.dataset_kwargs = ml_collections.ConfigDict(dict(
      max_len=256,                     # pieces kept per review (the head); ~40% of reviews are longer
      vocab_size=16000,                # sentencepiece vocabulary trained on the training reviews
      model_type="bpe",                # 'bpe' or 'unigram'
      lowercase=True,                  # case-folded inside the tokenizer
      vocab_dir=ml_collections.config_dict.placeholder(str),  # vocabulary/encoding cache; None: $AILA_CACHE_DIR
  ))
  # --- model and task ---
  config.model_name = "transformer_classifier"  # aila_jax.models.transformer.TransformerClassifier
  config.model = ml_collections.ConfigDict(dict(
      preset="transformer_small",      # d_model 256, 4 heads, d_ff 1024, 3 encoder layers
      pooling="mean",                  # mean over non-padding tokens, or 'cls'
      dropout_rate=0.1,
  ))
  config.task = "text_classification"  # cross-entropy on batch['tokens'] -> 2 classes
  config.label_smoothing = 0.0
  # --- optimisation ---
  config.batch_size = 64
  config.eval_batch_size = 1000
  config.num_train_steps = 3910        # 10 epochs of 25,000 reviews
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-4
  config.optimizer.weight_decay = 0.01
  config.optimizer.grad_clip_norm = 1.0
  config.schedule.name = "warmup_cosine"
  config.schedule.warmup_steps = 300
  config.dtype = "float32"             # 'bfloat16' on GPU
  # --- bookkeeping ---
  config.log_every = 100
  config.eval_every = 782              # every 2 epochs
  config.checkpoint_every = 782
  return config
