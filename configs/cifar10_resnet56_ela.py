r"""CIFAR-10 ResNet-56 with MRLA-base or AILA-2, with and without ELA: the same recipe and seed, ELA the only change.

ELA (arXiv 2503.06473) is reconstructed here from its abstract (aila_jax.train.ela): every
``config.ela`` key below is our choice, with its default. The recipe is configs/cifar10_resnet.py's
(SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, 180 epochs, lr / 10 at epochs 100 and 150, pad-4
crop + flip) at depth 56. The argument after ``:`` is ``MIXER,ela|noela[,epochs=N]``; a shorter
schedule (``epochs=N``) scales the decay epochs with it.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/cifar10_resnet56_ela.py:mrla_base,ela \
      --workdir=runs/c10_r56_mrla_base_ela --config.seed=0
  AILA_DATA_DIR=../shared/data python train.py --config=configs/cifar10_resnet56_ela.py:mrla_base,noela \
      --workdir=runs/c10_r56_mrla_base --config.seed=0
  AILA_DATA_DIR=../shared/data python train.py --config=configs/cifar10_resnet56_ela.py:aila2,ela \
      --workdir=runs/c10_r56_aila2_ela --config.seed=0
  AILA_DATA_DIR=../shared/data python train.py --config=configs/cifar10_resnet56_ela.py:aila2,noela \
      --workdir=runs/c10_r56_aila2 --config.seed=0

(seeds 0, 1, 2 for a mean of three; ``final_metrics.json`` holds ``train_seconds``, ``first_step_seconds``,
``ela/skip_set`` and ``ela/recompiles``; ``metrics.jsonl`` the per-block KLs ``train/ela/kl/...`` at every
log step and, at every ELA evaluation, ``ela/kl_ema/...``, ``ela/quantile/...``, ``ela/skipped/...``.)
Measured so far (README's ELA section): paired runs of 8 epochs (``epochs=8``), seeds 0-2, one H100 shared by six
runs (bench/ela_accuracy.py): MRLA-base 52.7% with ELA against 56.3% without (its seeds spread by 8-10 points),
AILA-2 80.19% against 80.66% over
three paired seeds (lower on each). The full 180 epochs have not been run. MRLA-base's ResNet-56 starts with
twice the residual network's activations under the official initialisation (README, ELA row);
``--config.model.mixer_kwargs.norm_init=zero`` starts each MRLA branch silent (not yet measured on a GPU).
"""

from configs import cifar10_resnet
from aila_jax.errors import ConfigError

MIXERS = ("mrla_base", "aila2")


def get_config(arg: str = "mrla_base,ela"):
  parts = [p.strip() for p in arg.split(",") if p.strip()]
  if len(parts) < 2 or parts[0] not in MIXERS or parts[1] not in ("ela", "noela"):
    raise ConfigError(f"configs/cifar10_resnet56_ela.py: expected 'MIXER,ela|noela[,epochs=N]' with MIXER one of "
                      f"{MIXERS}, got {arg!r}")
  epochs = 180
  for extra in parts[2:]:
    key, _, value = extra.partition("=")
    if key != "epochs" or not value.isdigit() or int(value) < 1:
      raise ConfigError(f"configs/cifar10_resnet56_ela.py: unknown option {extra!r} (expected epochs=N)")
    epochs = int(value)
  decay = tuple(max(1, round(e * epochs / 180)) for e in (100, 150))
  config = cifar10_resnet.get_config(epochs=epochs, decay_epochs=decay)
  config.model.depth = 56
  config.model.mixer = parts[0]
  if parts[0] == "aila2":
    config.model.mixer_kwargs.num_heads = 4
  steps_per_epoch = cifar10_resnet.STEPS_PER_EPOCH
  config.ela = dict(
      enabled=parts[1] == "ela",  # the only difference between the paired runs
      tau=0.2,                    # EBQM: blocks whose Beta quantile of the squashed KL is below tau are redundant
      squash="ratio",             # KL -> (0, 1): 'ratio' KL/(1+KL), 'exp' 1-exp(-KL), 'minmax'
      eps=1e-6,                   # clip of the squashed KLs to [eps, 1 - eps]
      kl_support="pad",           # KL(P_{t-1} + 0 || P_t) ('pad') or KL(P_{t-1} || P_t renormalised) ('renormalize')
      ema_decay=0.95,             # EMA of each block's KL over the steps where it is measured
      warmup_steps=5 * steps_per_epoch,   # no decision during the first 5 epochs
      eval_every=500,             # steps between EBQM evaluations (a multiple of log_every=100)
      hysteresis=3,               # consecutive redundant evaluations before a block's retrieval is skipped
      max_skip_fraction=0.5,      # at most half of the eligible blocks (blocks 3..9 of each stage: 21) skipped
      protect_first=2,            # blocks 1 and 2 of each stage are never skipped
      probe_every=0,              # no full-attention probe steps: a skip is final
      compile_ahead=0,            # a new skip set trains from the next step (compiled first; N > 0: N steps later,
                                  # compiled meanwhile in a background thread)
  )
  import ml_collections  # pylint: disable=g-import-not-at-top
  config.ela = ml_collections.ConfigDict(config.ela)
  return config
