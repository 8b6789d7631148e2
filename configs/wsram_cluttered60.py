r"""WS-RAM (Ba et al. 2015) with the glimpses of configs/ram_cluttered60.py: reweighted wake-sleep, K samples.

The same network as RAM plus the inference network q(a | y, x); trained with the
wake updates of predictor, prior and inference network (normalised importance
weights over K trajectories from q), the control variates of wsram_mnist.wsram() and no sleep update.

Measured (one H200, seed 0, 60,000 steps of 256, LSTM core, four runs sharing the GPU;
bench/results/ram_wsram_mnist_NVIDIA-H200_wsram_cluttered60_60k.json): 4.63% test error with
the prior's mean locations, 3.13% averaging K=5 glimpse sequences sampled from the prior;
420 s of training (145 steps/s while sharing). RAM's 90,000-step run reached 4.19% (mean
locations) at step 80,000.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/wsram_cluttered60.py --workdir=runs/wsram_cluttered60
"""

from configs import ram_cluttered60, wsram_mnist


def get_config():
  return wsram_mnist.wsram(ram_cluttered60.get_config())
