r"""RAM on translated MNIST (60x60): 6 glimpses of 3 scales of 12x12 (Mnih et al. 2014, table 1b).

Measured (one H200, seed 0, 40,000 steps of 256, LSTM core, four runs sharing the GPU;
bench/results/ram_wsram_mnist_NVIDIA-H200_ram_translated_40k.json): 1.22% test error
(the paper: 1.22% with 6 glimpses, 1.20% with 8) after 157 s of training:

  python3 bench/ram_wsram_mnist.py --data_dir ../shared/data --models ram --steps 40000 \
      --eval_every 2500 --set dataset=translated_mnist --set model.glimpse_size=12 \
      --set model.num_scales=3 --tag ram_translated_40k

  AILA_DATA_DIR=../shared/data python train.py --config=configs/ram_translated.py \
      --workdir=runs/ram_translated
"""

from configs import ram_mnist


def get_config():
  config = ram_mnist.get_config()
  config.dataset = "translated_mnist"    # 28x28 digit at a random position of a 60x60 canvas
  config.dataset_kwargs.seed = 0         # generation seed of the canvases
  config.worker_count = 4                # canvases are composed on the fly: use worker processes
  config.model.glimpse_size = 12         # 12x12 retina
  config.model.num_scales = 3            # 12, 24 and 48 pixels wide
  config.model.num_glimpses = 6
  config.num_train_steps = 40000         # 1.22% test error on one H200 (see above)
  return config
