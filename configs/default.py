r"""Default: a LeNet-style CNN with BatchNorm on MNIST, two epochs, Adam.

Trains offline on CPU in about a minute on 2 cores and reaches about 99% test
accuracy; writes checkpoints, metrics.jsonl and TensorBoard events to the workdir.

  AILA_DATA_DIR=../shared/data python train.py                      # this config
  python train.py --config=configs/default.py --workdir=runs/mnist \
      --config.data_dir=/path/to/data --config.optimizer.learning_rate=3e-3
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0                      # seeds parameters, dropout and the data order
  # --- data ---
  config.dataset = "mnist"             # a name of aila_jax.data.DATASETS: mnist, cifar10
  config.data_dir = ml_collections.config_dict.placeholder(str)  # None -> $AILA_DATA_DIR -> TFDS default
  config.data_source = "auto"          # 'local' offline files, 'tfds' tfds.data_source, 'auto' local if present
  config.tfds_download = False         # let TFDS download the dataset (online)
  config.augment = "none"              # 'none' or 'crop_flip' (pad 4, random crop, horizontal flip)
  config.augment_on = "host"           # images: 'host' (numpy pipeline) or 'device' (in the jitted step)
  config.image_mean = ml_collections.config_dict.placeholder(tuple)  # images: None -> the dataset's channel means
  config.image_std = ml_collections.config_dict.placeholder(tuple)   # images: None -> the dataset's channel stds
  config.eval_cache_mb = 512.0         # eval sets up to this size (per process) stay on the devices after the first eval
  config.worker_count = 0              # grain worker processes (0: in the main process)
  config.dataset_kwargs = ml_collections.ConfigDict()  # options of the dataset's builder (none for images)
  # --- model and task ---
  config.model_name = "cnn"            # a name of aila_jax.models.MODELS
  config.model = ml_collections.ConfigDict(dict(  # keyword arguments of the model
      widths=(16, 32), hidden=128, batch_norm=True, dropout_rate=0.1))
  config.task = "classification"
  config.label_smoothing = 0.0
  config.task_kwargs = ml_collections.ConfigDict()     # extra options of the task
  # --- optimisation ---
  config.batch_size = 128              # global batch, split over all devices and processes
  config.eval_batch_size = 1000
  config.num_train_steps = 938         # 2 epochs of 60,000 images
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam",                     # sgd, momentum, nesterov, adam, adamw, lamb
      learning_rate=2e-3,              # peak learning rate
      momentum=0.9,                    # for momentum / nesterov
      b1=0.9, b2=0.999, eps=1e-8,      # for adam / adamw / lamb
      weight_decay=0.0,
      grad_clip_norm=ml_collections.config_dict.placeholder(float),  # global-norm clipping; None: off
  ))
  config.schedule = ml_collections.ConfigDict(dict(
      name="warmup_cosine",            # constant, cosine, warmup_cosine, piecewise, warmup_rsqrt, linear
      warmup_steps=50,
      end_factor=0.0,                  # final lr / peak lr for cosine schedules
      boundaries=(),                   # piecewise: steps at which lr is multiplied by factor
      factor=0.1,
  ))
  config.dtype = "float32"             # compute dtype: float32 or bfloat16 (params stay float32)
  # --- bookkeeping ---
  config.log_every = 50                # steps between metric rows / progress lines
  config.eval_every = 469              # steps between evals (0: only at the end)
  config.checkpoint_every = 200        # steps between checkpoints (and one at the end)
  config.keep_checkpoints = 3          # keep the last K checkpoints
  config.multihost = False             # call jax.distributed.initialize() (multi-host TPU/GPU/CPU)
  config.coordinator_address = ml_collections.config_dict.placeholder(str)  # 'host:port'; None: auto
  config.num_processes = ml_collections.config_dict.placeholder(int)        # None: auto-detect
  config.process_id = ml_collections.config_dict.placeholder(int)           # None: auto-detect
  config.coordinator_timeout_s = 300   # seconds to wait for the coordinator / the other processes, then an error
  config.progress = True               # print progress lines
  config.compilation_cache = True      # keep compiled steps on disk (JAX's persistent cache): reruns skip compiling
  config.compilation_cache_dir = ml_collections.config_dict.placeholder(str)  # None: $AILA_CACHE_DIR/... or ~/.cache/aila_jax/...
  config.xla_command_buffers = True    # GPU: record the steps into CUDA graphs (aila_jax/train/xla_options.py)
  config.xla_graph_loops = False       # GPU: also record loops (a steps_per_call scan becomes one graph)
  config.steps_per_call = 1            # training updates per jitted call (a lax.scan; see the README)
  config.log_wall_clock = False        # add `wall` (seconds since the first logged row) to metrics rows
  return config
