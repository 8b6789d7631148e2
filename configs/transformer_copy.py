r"""A tiny Transformer learns to reverse strings (synthetic, in memory): CI-sized, seconds on CPU.

The paper's recipe at toy size: post-LN encoder-decoder with tied embeddings,
Adam(0.9, 0.98, 1e-9) with the warmup-rsqrt schedule, label smoothing 0.1.
Reaches about 99% test token accuracy in 400 steps (about 20 s on 2 CPU cores).
``dataset='copy'`` gives the copy task.

  python train.py --config=configs/transformer_copy.py --workdir=/tmp/transformer_copy
  python train.py --config=configs/transformer_copy.py --config.dataset=copy
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  # --- data ---
  config.dataset = "reverse"           # 'reverse' or 'copy' (aila_jax.data.synthetic)
  config.dataset_kwargs = ml_collections.ConfigDict(dict(
      min_length=1,                    # shortest string (content tokens, EOS not counted)
      max_length=8,                    # longest string; sequences are max_length + 1 with EOS
      vocab_size=16,                   # including 0 = padding, 1 = BOS, 2 = EOS
      num_train=10_000,                # generated training pairs
      num_test=1_000,                  # generated test pairs (an independent stream)
      seed=0,                          # data seed (config.seed seeds the model and the order)
  ))
  # --- model and task ---
  config.model_name = "transformer"    # aila_jax.models.transformer.EncoderDecoder
  config.model = ml_collections.ConfigDict(dict(
      preset="transformer_tiny",       # d_model 64, 4 heads, d_ff 128, 2 + 2 layers
      dropout_rate=0.0,                # residual dropout (nothing to overfit here)
  ))
  config.task = "seq2seq"              # label-smoothed token cross-entropy; eval: token NLL, accuracy
  config.label_smoothing = 0.1
  # --- optimisation ---
  config.batch_size = 64
  config.eval_batch_size = 1000
  config.num_train_steps = 400
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3  # peak of warmup_rsqrt
  config.optimizer.b1 = 0.9            # the paper's Adam
  config.optimizer.b2 = 0.98
  config.optimizer.eps = 1e-9
  config.schedule.name = "warmup_rsqrt"  # lr * min(step / warmup, sqrt(warmup / step))
  config.schedule.warmup_steps = 100
  # --- bookkeeping ---
  config.log_every = 50
  config.eval_every = 0                # eval at the end only
  config.checkpoint_every = 100
  config.keep_checkpoints = 4          # the last 4 can be averaged (aila_jax.train.averaging)
  return config
