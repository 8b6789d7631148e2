r"""RAM on cluttered MNIST 100x100 (8 fragments of 8x8): 8 glimpses of 4 scales of 12x12 (Mnih et al. 2014).

The set-up of the row "RAM, 8 glimpses, 12x12, 4 scales" of the paper's 100x100 Cluttered
Translated MNIST table (Table 2); the schedule is this project's for cluttered 60x60
(configs/ram_cluttered60.py: 90,000 steps of 256, Adam 1e-3 with warmup and cosine decay): we found
no number of training steps in the paper. Not trained on a GPU yet. The same run through the
benchmark script (test error against steps and seconds into bench/results; with ``--deadline_s`` it
stops with a checkpoint, and the same command on the same ``--workdir`` resumes it):

  python3 bench/ram_wsram_mnist.py --data_dir .carry/ram --workdir .carry/ram/runs/c100 --models ram \
      --steps 90000 --eval_every 2500 --deadline_s 530 --set dataset=cluttered_mnist_100 \
      --set model.glimpse_size=12 --set model.num_scales=4 --set model.num_glimpses=8 \
      --set task_kwargs.eval_samples=5 --set worker_count=12 --tag ram_cluttered100_90k

  AILA_DATA_DIR=../shared/data python train.py --config=configs/ram_cluttered100.py \
      --workdir=runs/ram_cluttered100
"""

from configs import ram_mnist


def get_config():
  config = ram_mnist.get_config()
  config.dataset = "cluttered_mnist_100"  # 100x100 canvas, digit + 8 random 8x8 fragments
  config.dataset_kwargs.seed = 0          # generation seed of the canvases
  config.worker_count = 4                 # canvases are composed on the fly: use worker processes
  config.model.glimpse_size = 12          # 12x12 retina
  config.model.num_scales = 4             # 12, 24, 48 and 96 pixels wide
  config.model.num_glimpses = 8
  config.task_kwargs.eval_samples = 5     # also report the error averaging 5 sampled glimpse sequences
  return config
