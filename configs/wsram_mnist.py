r"""WS-RAM (Ba et al. 2015) with the glimpses of configs/ram_mnist.py: reweighted wake-sleep, K samples.

The same network as RAM plus the inference network q(a | y, x); trained with the
wake updates of predictor, prior and inference network (normalised importance
weights over K trajectories from q), the control variates below and no sleep update.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/wsram_mnist.py --workdir=runs/wsram_mnist
"""

import ml_collections

from configs import ram_mnist


def wsram(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Turns a RAM config into its WS-RAM counterpart (same glimpses, data and optimiser)."""
  config.model_name = "wsram"            # RAM + inference network, no REINFORCE baseline
  config.model.inference_hidden = 256    # hidden width of q(a | y, x)
  config.task_kwargs = ml_collections.ConfigDict(dict(
      estimator="wake_sleep",            # reweighted wake-sleep
      num_samples=5,                     # K trajectories from q per image
      prior_control_variate="self_normalized",  # c_k = r_k / sum_j r_j for the prior (location) network
      proposal_control_variate="uniform",       # c_k = 1/K for the inference network
      sleep_weight=0.0,                  # weight of the (true-label) sleep update of q; 0: off
      eval_samples=5,                    # also report the K-sample prediction from the prior
  ))
  return config


def get_config():
  return wsram(ram_mnist.get_config())
