r"""RAM on cluttered MNIST 60x60 (4 fragments of 8x8): 8 glimpses of 3 scales of 12x12 (Mnih et al. 2014).

Measured (one H200, seed 0, 40,000 steps of 256, LSTM core, four runs sharing the GPU;
bench/results/ram_wsram_mnist_NVIDIA-H200_ram_cluttered60_40k.json): 4.59% test error after
168 s of training (paper 4.04%; still falling slowly at the end). This config keeps the
90,000-step schedule of configs/ram_mnist.py, not yet run on this data.

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
  return config
