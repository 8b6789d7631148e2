r"""WS-RAM (Ba et al. 2015) with the glimpses of configs/ram_cluttered60.py: reweighted wake-sleep, K samples.

The same network as RAM plus the inference network q(a | y, x); trained with the
wake updates of predictor, prior and inference network (normalised importance
weights over K trajectories from q), the control variates below and no sleep update.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/wsram_cluttered60.py --workdir=runs/wsram_cluttered60
"""

import ml_collections

from configs import ram_cluttered60


def get_config():
  config = ram_cluttered60.get_config()
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
