r"""RAM on cluttered MNIST 60x60 (4 fragments of 8x8): 8 glimpses of 3 scales of 12x12 (Mnih et al. 2014).

Measured (one H200, seed 0, batch 256, LSTM core, several runs sharing the GPU): on this
config's 90,000-step schedule with ``task_kwargs.eval_samples=5``, 4.31% test error with the
prior's mean locations at step 85,000 (4.18% at 70,000) and **2.80%** averaging 5 glimpse
sequences sampled from the prior (paper 4.04%; the issue's 4.1% is met by the sampled error, not by
the mean-location one); the run's 525 s deadline stopped it at step 87,060
(bench/results/ram_wsram_mnist_NVIDIA-H200_ram_cluttered60_90k_sampled.json). An earlier run
without sampled evals: 4.19% at step 80,000 (``..._cluttered60_90k.json``); with std 0.15, 4.54%
(``..._std015_90k.json``); on a 40,000-step schedule 4.59% (``..._40k.json``). WS-RAM on the same data:
configs/wsram_cluttered60.py.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/ram_cluttered60.py \
      --workdir=runs/ram_cluttered60
"""

from configs import ram_mnist


def get_config():
  config = ram_mnist.get_config()
  config.dataset = "cluttered_mnist_60"  # 60x60 canvas, digit + 4 random 8x8 fragments
  config.dataset_kwargs.seed = 0         # generation seed of the canvases
  config.worker_count = 4                # canvases are composed on the fly: use worker processes
  config.model.glimpse_size = 12         # 12x12 retina
  config.model.num_scales = 3            # 12, 24 and 48 pixels wide
  config.model.num_glimpses = 8
  config.task_kwargs.eval_samples = 5    # also report the error averaging 5 sampled glimpse sequences
  return config
