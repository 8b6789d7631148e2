r"""RAM on cluttered MNIST 60x60 (4 fragments of 8x8): 8 glimpses of 3 scales of 12x12 (Mnih et al. 2014).

Measured (one H200, seed 0, batch 256, LSTM core, four runs sharing the GPU): on this
config's 90,000-step schedule, 4.19% test error at step 80,000 after 439 s of training
(the run's 520 s deadline stopped it at step 80,480, still falling;
bench/results/ram_wsram_mnist_NVIDIA-H200_ram_cluttered60_90k.json; paper 4.04%, target
4.1% not yet met); with std 0.15, 4.54% at step 80,000 (``..._std015_90k.json``); on a
40,000-step schedule 4.59% after 168 s (``..._40k.json``). WS-RAM on the same data:
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
  return config
