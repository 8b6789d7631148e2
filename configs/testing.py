r"""Tiny config for tests: a small MLP on MNIST, 300 steps in seconds on CPU, 3 checkpoints.

  python train.py --config=configs/testing.py --workdir=/tmp/aila_testing
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model_name = "mlp"
  config.model = dict(hidden=(32,), dropout_rate=0.1)
  config.batch_size = 32
  config.eval_batch_size = 2000
  config.num_train_steps = 300
  config.optimizer.learning_rate = 1e-3
  config.schedule.warmup_steps = 10
  config.log_every = 25
  config.eval_every = 150
  config.checkpoint_every = 100
  config.keep_checkpoints = 5
  return config
