"""configs/cifar10_dla.py and cifar10_dla_short.py: the kuangliu/pytorch-cifar recipe, valid, and training."""
import io

import numpy as np
import pytest

from aila_jax.train import config_check, optim, train_and_evaluate
from aila_jax.train.metrics import read_metrics
from configs import cifar10_dla, cifar10_dla_short


def test_recipe_is_the_peers():
  for config in (cifar10_dla.get_config(), cifar10_dla_short.get_config()):
    config_check.check_config(config)
    assert (config.dataset, config.augment, config.model_name, config.batch_size) == (
        "cifar10", "crop_flip", "cifar_dla", 128)
    assert config.augment_on == "device"  # drawn in the step (tests/data/test_device_augment.py)
    opt = config.optimizer
    assert (opt.name, opt.learning_rate, opt.momentum, opt.weight_decay) == ("momentum", 0.1, 0.9, 5e-4)
    assert config.schedule.name == "epoch_cosine" and config.schedule.steps_per_epoch == 390
    # 10 updates a call (12.3k -> 19.7k img/s, H100); every log/eval/checkpoint step and the last ends a call,
    # so the recipe never compiles the single-step program beside the 10-step one
    k = config.steps_per_call
    assert k == 10 and all(n % k == 0 for n in (config.log_every, config.eval_every, config.checkpoint_every,
                                                config.num_train_steps))
  assert cifar10_dla.get_config().num_train_steps == 200 * 390
  assert cifar10_dla_short.get_config().num_train_steps == 30 * 390
  config = cifar10_dla.get_config()
  sched = optim.make_schedule(config.schedule, num_train_steps=config.num_train_steps,
                              base_lr=config.optimizer.learning_rate)
  # PyTorch 2.14 CosineAnnealingLR(T_max=200), stepped once per epoch, at epochs 50 and 100
  np.testing.assert_allclose([float(sched(50 * 390)), float(sched(100 * 390 + 389))],
                             [0.0853553390593274, 0.050000000000000024], rtol=1e-5)


def _tiny_cifar(folder, n_train=16, n_test=16):
  """A cifar10_jpeg_bytes.npz of random JPEG images in the offline layout (aila_jax.data.sources)."""
  from PIL import Image
  rng = np.random.default_rng(0)
  arrays = {}
  for split, n in (("train", n_train), ("test", n_test)):
    blobs = []
    for _ in range(n):
      buf = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=75)
      blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    arrays[f"{split}_jpeg"] = np.concatenate(blobs)
    arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    arrays[f"y_{split}"] = rng.integers(0, 10, n).astype(np.int64)
  np.savez(folder / "cifar10_jpeg_bytes.npz", **arrays)


@pytest.mark.parametrize("module", [cifar10_dla, cifar10_dla_short])
def test_config_trains_two_steps(module, tmp_path):
  """The config's data (crop + flip), optimizer, per-epoch schedule, bf16 and eval path, with a tiny model
  (the DLA models' compilation alone takes over 30 s on a 2-core CPU; they are tested in tests/models)."""
  _tiny_cifar(tmp_path)
  config = module.get_config()
  config.data_dir = str(tmp_path)
  config.model_name, config.model = "cifar_resnet", {"depth": 8, "widths": (4, 4, 4)}
  config.batch_size = config.eval_batch_size = 8
  config.num_train_steps = 2
  config.schedule.steps_per_epoch = 1  # 2 epochs: the second step at lr 0.1 * (1 + cos(pi / 2)) / 2
  config.worker_count, config.progress = 0, False
  config.log_every = config.eval_every = config.checkpoint_every = 1
  result = train_and_evaluate(config, tmp_path / "run")
  assert result["step"] == 2 and np.isfinite(result["eval/loss"]) and result["eval/count"] == 16
  lrs = [r["train/learning_rate"] for r in read_metrics(tmp_path / "run") if "train/learning_rate" in r]
  np.testing.assert_allclose(lrs, [0.1, 0.05], rtol=1e-6)
