r"""WS-RAM (Ba et al. 2015) with the glimpses of configs/ram_mnist.py: reweighted wake-sleep, K samples.

The same network as RAM plus the inference network q(a | y, x); trained with the
wake updates of predictor, prior and inference network (normalised importance
weights over K trajectories from q), the control variates below and no sleep update.

Measured (one H100, seed 0, 90,000 steps of 256, LSTM core, four runs sharing the
GPU; bench/results/ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_wsram_lstm_90k.json):
0.89% test error with the prior's mean locations, 0.61% averaging K=5 sampled
glimpse sequences; 452 s of training (5.0 ms/step vs RAM's 4.1). It reaches RAM's
final 1.00% (same eval) at step 35,000: 0.39x RAM's steps, 0.50x its training
wall-clock (``python3 bench/ram_wsram_mnist.py --compare RAM_JSON WSRAM_JSON``). Against
the H200 RAM run that ended at 0.87% / 0.55% sampled (configs/ram_mnist.py), WS-RAM reaches
0.87% at step 55,000 (0.65x) and the sampled 0.55% at step 32,500 (0.38x), and ends above
both (0.89% / 0.61%): the issue's 1/3 target is not met with this RAM baseline (LSTM core,
Adam), which is much stronger than the paper's. On 30,000-step schedules (one H200, four runs sharing it,
``..._NVIDIA-H200_wsram_*_30k_*.json``): with ``model.inference_input='image'`` and
``model.inference_std_scale=2.0`` 0.98% / 0.57% sampled (LSTM core), and 2.18-2.76% / 1.35-1.86%
with the paper's ReLU core over four variants of q (RAM's ReLU-core 90k run: 1.87% / 0.79%).
In every run the effective sample size is 4.3-4.7 of K=5 after a thousand steps and 4.86-4.98 at the end:
the normalised weights are nearly uniform, so the wake updates carry little more than RAM's.

  AILA_DATA_DIR=../shared/data python train.py --config=configs/wsram_mnist.py --workdir=runs/wsram_mnist
"""

import ml_collections

from configs import ram_mnist


def wsram(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Turns a RAM config into its WS-RAM counterpart (same glimpses, data and optimiser)."""
  config.model_name = "wsram"            # RAM + inference network, no REINFORCE baseline
  config.model.inference_hidden = 256    # hidden width of q(a | y, x)
  config.model.inference_input = "history"  # q reads the label and the glimpse history; 'image': also the image
  config.model.inference_std_scale = 1.0    # q's initial std as a multiple of the prior's (1: q starts as p)
  config.task_kwargs = ml_collections.ConfigDict(dict(
      estimator="wake_sleep",            # reweighted wake-sleep
      num_samples=5,                     # K trajectories from q per image
      prior_control_variate="self_normalized",  # c_k = r_k / sum_j r_j for the prior (location) network;
                                                # 'none', 'unnormalized' (r_k / K) or 'optimal' (alpha * r_k / K,
                                                # Paisley et al. 2012's coefficient estimated per batch)
      proposal="inference",              # K trajectories from q(a | y, x); 'prior': from p(a | x), no q
      proposal_control_variate="uniform",       # c_k = 1/K for the inference network
      sleep_weight=0.0,                  # weight of the sleep update of q; 0: off
      sleep_labels="true",               # sleep update with the true label, or 'dreamed' (labels from the model)
      eval_samples=5,                    # also report the K-sample prediction from the prior
  ))
  return config


def get_config():
  return wsram(ram_mnist.get_config())
