r"""CIFAR-10 ResNet with a depth mixer: a standard CIFAR ResNet recipe (ours, not MRLA's).

SGD 0.1 with momentum 0.9 and weight decay 1e-4, batch 128, 180 epochs, the
learning rate divided by 10 at epochs 100 and 150, pad-4 crop + flip (the
usual CIFAR ResNet schedule after He et al. 2016, sec. 4.2), drop-path on the
layer-attention branch as an option. The official MRLA code
(github joyfang1106/MRLA) trains on ImageNet only (ResNet-50/101: batch 256,
100 epochs, 3 warm-up epochs; EfficientNet and DeiT with drop-path 0.2) and
publishes no CIFAR recipe, so nothing here is theirs beyond the MRLA mixers,
which start as the official code initialises them (``mixer_kwargs.mrla_init``,
default ``'official'``: the last BN of each residual branch at zero, the value
conv He fan-out normal, the query/key convs PyTorch's default).
Any mixer: residual (the plain ResNet), dense, aila1, aila2, mrla_base, mrla_light.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/cifar10_resnet.py \
      --workdir=runs/cifar10_resnet20_mrla_light --config.model.mixer=mrla_light \
      --config.model.drop_path=0.2 --config.model.depth=20

(ResNet-56/110: ``--config.model.depth=56``; Bottleneck: ``--config.model.block=bottleneck``.)

Crop and flip are drawn in the jitted step (``augment_on='device'``, since 2026-12-05: the same
distribution, other draws; the host's numpy crop made ~50k img/s per process on 2 CPU cores, and a
mixer's savings are measured on the step). The stored CIFAR results before that date used
``--config.augment_on=host`` with grain worker processes (their commands give ``worker_count``).
"""

import ml_collections

from aila_jax.train import ela
from configs import default

STEPS_PER_EPOCH = 50_000 // 128  # 390


def get_config(epochs: int = 180, decay_epochs=(100, 150)) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset = "cifar10"           # offline copy (JPEG q75) or TFDS
  config.augment = "crop_flip"         # pad 4, random 32x32 crop, horizontal flip
  config.augment_on = "device"         # drawn in the jitted step; the host only gathers uint8 rows
  config.model_name = "cifar_resnet"
  config.model = ml_collections.ConfigDict(dict(
      depth=20,                        # 6n + 2 (basic: 20, 56, 110) or 9n + 2 (bottleneck)
      block="basic",                   # 'basic' or 'bottleneck'
      widths=(16, 32, 64),             # stage widths (bottleneck outputs 4x)
      mixer="residual",                # none, residual, dense, aila1, aila2, mrla_base, mrla_light
      mixer_kwargs=ml_collections.ConfigDict(),  # the mixer's options (aila_jax.nn.depth), e.g. num_heads
      drop_path=0.0,                   # stochastic depth rate (MRLA's ImageNet EfficientNet/DeiT runs use 0.2)
      skip_layers=(),                  # a fixed ELA skip set, e.g. ('stage_1/block_4',) (mixers aila1, aila2,
                                       # mrla_base); empty with config.ela.enabled=True (the controller's)
  ))
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_train_steps = epochs * STEPS_PER_EPOCH
  config.optimizer.name = "momentum"   # SGD with momentum
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4  # coupled L2, as torch.optim.SGD
  config.schedule.name = "piecewise"
  config.schedule.boundaries = tuple(e * STEPS_PER_EPOCH for e in decay_epochs)
  config.schedule.factor = 0.1
  config.schedule.warmup_steps = 0
  config.log_every = 100
  config.eval_every = 10 * STEPS_PER_EPOCH
  config.checkpoint_every = 5 * STEPS_PER_EPOCH
  config.ela = ela.default_config()    # ELA's controller, off (--config.ela.enabled=True; keys: aila_jax/train/ela.py,
                                       # configs/cifar10_resnet56_ela.py for the paired runs' settings)
  return config
