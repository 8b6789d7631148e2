r"""WS-RAM (Ba et al. 2015) with the glimpses of configs/ram_cluttered100.py: reweighted wake-sleep, K samples.

The same network as RAM plus the inference network q(a | y, x); trained with the
wake updates of predictor, prior and inference network (normalised importance
weights over K trajectories from q), the control variates of wsram_mnist.wsram() and no sleep update.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/wsram_cluttered100.py --workdir=runs/wsram_cluttered100
"""

from configs import ram_cluttered100, wsram_mnist


def get_config():
  return wsram_mnist.wsram(ram_cluttered100.get_config())
