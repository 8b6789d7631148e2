r"""Transformer on Multi30k En->De: 4 + 4 pre-LN layers of width 128, sized for <= 10 min on one H100.

The paper's recipe (Vaswani et al. 2017, sec. 5) at the size that suits a
29,000-pair corpus: the "Transformer-tiny" of Wu et al. 2021 (arXiv
2105.14462; d_model 128, 4 heads, FFN 256, 4 + 4 layers, dropout 0.3, lr 5e-3
with 2,000 warm-up steps), here with pre-LN sub-layers; a shared 8,000-piece
BPE vocabulary trained on the training split only, tied embeddings scaled by
sqrt(d_model), Adam(0.9, 0.98, 1e-9) with the warmup-rsqrt schedule, label
smoothing 0.1. Batches of 256 sentences (about 3,800 target tokens), bf16.
test2016 is the eval split ``eval/*``, val is ``eval_val/*``; BLEU (sacrebleu,
cased, detokenized) is computed after training by translate.py with greedy and
beam-4 (alpha 0.6) search, optionally on the average of the last 5 checkpoints.

Measured (bench/results/multi30k_sweep_NVIDIA-H100-80GB-HBM3.json, variant
``tiny_preln``, one H100, seed 0, ``bench/multi30k_sweep.py``): 8,951 steps in
332 s of training while three other runs shared the GPU; test2016 BLEU with
beam 4: 40.2 (cased), 40.6 (case-insensitive); on the average of the last 5
checkpoints 40.4 / 40.8; greedy 38.3. The paper's base sizes (d_model 512,
6 + 6 layers, ``--config.model.preset=transformer_base``) overfit this corpus:
21.3 after 253 s (bench/results/multi30k_bleu_h100.json).

  AILA_DATA_DIR=../shared/data python train.py --config=configs/multi30k_transformer.py \
      --workdir=runs/multi30k_transformer
  AILA_DATA_DIR=../shared/data python translate.py --config=configs/multi30k_transformer.py \
      --workdir=runs/multi30k_transformer --beam_sizes=1,4 --average_last=5
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  # --- data ---
  config.dataset = "multi30k_en_de"    # Multi30k task 1 (files of github.com/multi30k/dataset; no TFDS)
  config.dataset_kwargs = ml_collections.ConfigDict(dict(
      max_len=64,                      # tokens per sentence incl. EOS; every Multi30k sentence fits
      vocab_size=8000,                 # shared source/target sentencepiece vocabulary
      model_type="bpe",                # 'bpe' (the paper's) or 'unigram'
      lowercase=False,                 # cased, as sacrebleu scores
      direction="en-de",               # or 'de-en'
      vocab_dir=ml_collections.config_dict.placeholder(str),  # vocabulary cache; None: $AILA_CACHE_DIR
  ))
  # --- model and task ---
  config.model_name = "transformer"    # aila_jax.models.transformer.EncoderDecoder
  config.model = ml_collections.ConfigDict(dict(
      preset="transformer_small",      # the sizes below override it
      d_model=128,                     # Transformer-tiny of Wu et al. 2021
      num_heads=4,
      d_ff=256,
      num_encoder_layers=4,
      num_decoder_layers=4,
      dropout_rate=0.3,                # residual/embedding dropout (base: 0.1; small data wants more)
      share_embeddings=True,           # one embedding for source, target and the output projection
      pre_ln=True,                     # pre-LN (False: the paper's post-LN; 38.2 BLEU in the same sweep)
  ))
  config.task = "seq2seq"              # label-smoothed token cross-entropy; eval: per-token NLL, accuracy
  config.label_smoothing = 0.1         # epsilon_ls of the paper
  # --- optimisation ---
  config.batch_size = 256              # sentences per step (global)
  config.eval_batch_size = 512
  config.num_train_steps = 9000        # about 80 epochs of 29,000 pairs
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 5e-3  # peak of warmup_rsqrt, reached at warmup_steps (Wu et al.)
  config.optimizer.b1 = 0.9            # the paper's Adam betas and epsilon
  config.optimizer.b2 = 0.98
  config.optimizer.eps = 1e-9
  config.optimizer.grad_clip_norm = 1.0  # not in the paper; guards the first post-LN steps
  config.schedule.name = "warmup_rsqrt"  # lr * min(step / warmup, sqrt(warmup / step))
  config.schedule.warmup_steps = 2000
  config.dtype = "bfloat16"            # compute dtype on GPU (params stay float32)
  # --- bookkeeping ---
  config.log_every = 100
  config.eval_every = 1000             # token NLL / accuracy on test2016 and val
  config.checkpoint_every = 1000
  config.keep_checkpoints = 5          # for translate.py --average_last=5 (the paper averages the last 5)
  return config
