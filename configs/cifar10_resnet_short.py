r"""CIFAR-10 ResNet with a depth mixer, short schedule: 15 epochs (a few minutes on one GPU).

The CIFAR recipe of configs/cifar10_resnet.py (SGD momentum 0.9, weight decay
1e-4, crop + flip) scaled down in time: batch 256, peak learning rate 0.2
(linear scaling), one epoch of linear warm-up then linear decay to zero
(better than step decay when the run is short), bfloat16 compute.

Measured with ``get_config(epochs=12)`` (ResNet-20, one H200, six runs sharing it, seeds 0 / 1;
bench/results/depth_train_cifar12_NVIDIA-H200.json, ``python3 bench/depth_train.py --skip prices
--epochs 12 --mixers MIXER --seed S --set worker_count=2``): residual 82.57 / 82.39% test accuracy,
MRLA-light 83.07 / 83.01% (with the initialisation of that time, today
``mixer_kwargs.mrla_init='flax'``), AILA-1 82.98 / 82.88% (on the JPEG copy of CIFAR-10).
Alone on the H200 with ``--set worker_count=8`` (bench/results/depth_train_cifar_halftime_NVIDIA-H200.json)
the residual's 12 epochs trained in 10-17 s after a 15-23 s first (compiling) step: 82.78 / 82.59%.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/cifar10_resnet_short.py \
      --workdir=runs/cifar10_short_aila1 --config.model.mixer=aila1
"""

from configs import cifar10_resnet


def get_config(epochs: int = 15):
  config = cifar10_resnet.get_config()
  steps = 50_000 // 256                  # 195 steps per epoch
  config.batch_size = 256
  config.optimizer.learning_rate = 0.2
  config.num_train_steps = epochs * steps
  config.schedule.name = "linear"        # warm-up then linear decay to 0
  config.schedule.warmup_steps = steps
  config.schedule.boundaries = ()
  config.eval_every = 5 * steps
  config.checkpoint_every = 5 * steps
  config.dtype = "bfloat16"
  return config
