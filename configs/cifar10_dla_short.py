r"""CIFAR-10 DLA, short schedule: the peer's recipe (configs/cifar10_dla.py) over 30 epochs.

Everything as ``cifar10_dla`` (SGD 0.1, momentum 0.9, weight decay 5e-4,
per-epoch cosine, batch 128, crop + flip, bf16 compute), with the cosine
annealed over 30 epochs instead of 200 and the test set evaluated every 5
epochs (and at the end).

  AILA_DATA_DIR=../shared/data python train.py --config=configs/cifar10_dla_short.py \
      --workdir=runs/cifar10_dla_short
"""

from configs import cifar10_dla


def get_config(epochs: int = 30):
  config = cifar10_dla.get_config(epochs=epochs)
  config.eval_every = 5 * cifar10_dla.STEPS_PER_EPOCH
  config.checkpoint_every = 5 * cifar10_dla.STEPS_PER_EPOCH
  return config
