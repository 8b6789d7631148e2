r"""RAM training throughput: aila_jax vs the PyTorch port kevinzakka/recurrent-visual-attention.

Both train RAM on MNIST 28x28 with the port's defaults: 6 glimpses of one 8x8
patch, core 256, |h_g| = |h_l| = 128, policy std 0.05, Adam at 3e-4, batch 128,
hybrid loss (NLL + baseline MSE + 0.01 x REINFORCE). Measured in one process on
one GPU, images per second of training steps after warm-up:

* ``peer``: the port's own ``Trainer.train_one_epoch`` (its ``model.py``,
  ``modules.py``, ``trainer.py``, ``utils.py``, imported from ``--peer_dir``;
  never part of this repository), fed from MNIST tensors already on the GPU
  (faster than its torchvision loader, so the ratio is conservative). Its
  missing optional dependencies (tqdm, tensorboard_logger, matplotlib) are
  stubbed. Its loop calls ``.item()`` twice per step, as released.
* ``ours_memory``: ``aila_jax`` model ``'ram'`` and task ``'glimpse'`` through
  the trainer's own ``train_step`` under ``jax.jit`` (state donated), fed random
  batches gathered from the preprocessed train set in host memory (the peer's
  data is in GPU memory: this is the like-for-like row of the ratio);
* ``ours_pipeline``: the same step fed by the grain pipeline, exactly as
  ``train_and_evaluate`` runs it (without logging and checkpoints); on a fast
  GPU this row is bound by the per-record cost of the input pipeline;
* extra rows (not part of the ratio): ours at a large batch, and WS-RAM (K = 5).

Run on a GPU machine from the repository root (the peer's files copied into
``.carry/ram_peer`` beforehand)::

  python3 bench/ram.py --data_dir .carry --peer_dir .carry/ram_peer --out bench/results

It prints a table and writes ``ram_<device>.json`` into ``--out``. ``--quick``
runs a few steps (a smoke test; the peer is skipped where torch is missing).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pathlib
import platform
import re
import sys
import tempfile
import time
import types

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")  # room for torch
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from aila_jax import models, tasks  # noqa: E402
from aila_jax.data import datasets, pipeline  # noqa: E402
from aila_jax.train import optim, sharding, trainer  # noqa: E402
from bench.results_io import save_result  # noqa: E402  (JSON summary + .curves.npz for long tables)

PORT = dict(glimpse_size=8, num_scales=1, num_glimpses=6, glimpse_hidden=128, location_hidden=128,
            glimpse_features=256, hidden=256, std=0.05, learning_rate=3e-4, batch_size=128,
            reinforce_weight=0.01)


def _config(data_dir, *, model_name="ram", batch_size=128, num_samples=5):
  from configs import ram_mnist, wsram_mnist  # pylint: disable=g-import-not-at-top
  config = (wsram_mnist if model_name == "wsram" else ram_mnist).get_config()
  config.data_dir = str(data_dir)
  config.batch_size = batch_size
  for k in ("glimpse_size", "num_scales", "num_glimpses", "glimpse_hidden", "location_hidden",
            "glimpse_features", "hidden", "std"):
    config.model[k] = PORT[k]
  config.optimizer.learning_rate = PORT["learning_rate"]
  config.optimizer.grad_clip_norm = None
  config.schedule.name = "constant"
  if model_name == "ram":
    config.task_kwargs.reinforce_weight = PORT["reinforce_weight"]
  else:
    config.task_kwargs.num_samples = num_samples
  return config


def bench_ours(data_dir, *, model_name="ram", batch_size=128, steps=300, warmup=30, reps=3,
               feed="pipeline"):
  """Images/s of the trainer's jitted train_step.

  ``feed='pipeline'``: batches from the grain pipeline (as ``train_and_evaluate``);
  ``feed='memory'``: random batches gathered from the preprocessed train set held
  in host memory (the peer's treatment: its batches come from GPU-resident tensors).
  """
  config = _config(data_dir, model_name=model_name, batch_size=batch_size)
  dataset = datasets.build_dataset(config)
  mesh = sharding.make_mesh()
  model = models.get_model(config.model_name, **{**dataset.model_kwargs, **dict(config.model)})
  task = tasks.get_task(config.task, config, dataset)
  schedule = optim.make_schedule(config.schedule, num_train_steps=10**6,
                                 base_lr=config.optimizer.learning_rate)
  tx = optim.make_optimizer(config.optimizer, schedule)
  state = trainer._build_state(model, tx, task, dataset.example, 0, mesh)  # pylint: disable=protected-access
  repl, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  step_fn = jax.jit(functools.partial(trainer.train_step, task=task, schedule=schedule),
                    in_shardings=(repl, data_sharding), out_shardings=(repl, repl), donate_argnums=0)
  if feed == "pipeline":
    it = pipeline.make_iterator(pipeline.train_dataset(
        dataset.train, preprocess=dataset.preprocess, batch_size=batch_size, seed=0))
  else:
    arrays = dataset.preprocess(dict(dataset.train.arrays))
    images, labels = arrays["image"], arrays["label"]  # (N, 28, 28, 1), (N,)
    rng = np.random.default_rng(0)

    def _batches():
      while True:
        idx = rng.integers(0, len(labels), batch_size)
        yield {"image": images[idx], "label": labels[idx]}
    it = _batches()
  for _ in range(warmup):
    state, metrics = step_fn(state, sharding.to_global(next(it), data_sharding))
  jax.block_until_ready(metrics)
  rates = []
  for _ in range(reps):
    t = time.perf_counter()
    for _ in range(steps):
      state, metrics = step_fn(state, sharding.to_global(next(it), data_sharding))
    jax.block_until_ready(metrics)
    rates.append(steps * batch_size / (time.perf_counter() - t))
  return {"images_per_sec": float(np.median(rates)), "all": rates, "steps": steps,
          "batch_size": batch_size, "feed": feed, "final_loss": float(metrics["loss"])}


def _stub_missing(names):
  """Stand-ins for the port's optional imports that the device image lacks."""
  class _Tqdm:
    def __init__(self, *a, **k): pass
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def set_description(self, *a, **k): pass
    def update(self, *a, **k): pass
  stubs = {"tqdm": dict(tqdm=_Tqdm), "tensorboard_logger": dict(configure=lambda *a, **k: None,
                                                                  log_value=lambda *a, **k: None),
           "matplotlib": {}, "matplotlib.pyplot": {}, "matplotlib.patches": {}}
  for name in names:
    try:
      importlib.import_module(name)
    except ImportError:
      module = types.ModuleType(name)
      module.__dict__.update(stubs.get(name, {}))
      sys.modules[name] = module


class _GpuLoader:
  """Batches of (x [B, 1, 28, 28], y [B]) from tensors on the GPU, in a random order."""

  def __init__(self, torch, x, y, batch_size, num_batches, seed=1):
    self.torch, self.x, self.y = torch, x, y
    self.batch_size, self.num_batches = batch_size, num_batches
    self.gen = torch.Generator(device="cpu").manual_seed(seed)
    self.sampler = types.SimpleNamespace(indices=list(range(batch_size * num_batches)))

  def __len__(self):
    return self.num_batches

  def __iter__(self):
    perm = self.torch.randperm(len(self.x), generator=self.gen).to(self.x.device)
    for i in range(self.num_batches):
      idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
      yield self.x[idx], self.y[idx]


def bench_peer(data_dir, peer_dir, *, steps=300, warmup=30, reps=3):
  """Images/s of the port's Trainer.train_one_epoch on GPU-resident MNIST."""
  import torch  # pylint: disable=g-import-not-at-top
  peer_dir = pathlib.Path(peer_dir).resolve()
  data_dir = pathlib.Path(data_dir).resolve()
  sys.path.insert(0, str(peer_dir))
  _stub_missing(["tqdm", "tensorboard_logger", "matplotlib", "matplotlib.pyplot", "matplotlib.patches"])
  cwd = os.getcwd()
  os.chdir(tempfile.mkdtemp())  # the port writes ./plots/...
  try:
    saved_argv, sys.argv = sys.argv, [sys.argv[0]]
    peer_config = importlib.import_module("config")
    peer_trainer = importlib.import_module("trainer")
    cfg, _ = peer_config.get_config()
    sys.argv = saved_argv
    torch.manual_seed(cfg.random_seed)
    with np.load(pathlib.Path(data_dir) / "mnist.npz") as npz:
      x = npz["x_train"].astype(np.float32) / 255.0
      y = npz["y_train"].astype(np.int64)
    x = (x - 0.1307) / 0.3081  # the port's transforms.Normalize((0.1307,), (0.3081,))
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg.use_gpu = dev.type == "cuda"
    xt = torch.from_numpy(x[:, None]).to(dev)
    yt = torch.from_numpy(y).to(dev)
    cfg.plot_freq = 10**9  # never dump glimpses (epoch 0 % plot_freq == 0 would, once)
    warm = peer_trainer.Trainer(cfg, (_GpuLoader(torch, xt, yt, cfg.batch_size, warmup),
                                      _GpuLoader(torch, xt, yt, cfg.batch_size, 1)))
    warm.train_one_epoch(1)
    run = peer_trainer.Trainer(cfg, (_GpuLoader(torch, xt, yt, cfg.batch_size, steps),
                                     _GpuLoader(torch, xt, yt, cfg.batch_size, 1)))
    run.model.load_state_dict(warm.model.state_dict())
    rates, loss = [], None
    for _ in range(reps):
      if dev.type == "cuda":
        torch.cuda.synchronize()
      t = time.perf_counter()
      loss, _ = run.train_one_epoch(1)
      if dev.type == "cuda":
        torch.cuda.synchronize()
      rates.append(steps * cfg.batch_size / (time.perf_counter() - t))
    settings = {k: getattr(cfg, k) for k in ("patch_size", "num_patches", "glimpse_scale",
                                             "num_glimpses", "hidden_size", "std", "batch_size",
                                             "init_lr")}
    return {"images_per_sec": float(np.median(rates)), "all": rates, "steps": steps,
            "batch_size": cfg.batch_size, "final_loss": float(loss), "settings": settings,
            "torch": torch.__version__}
  finally:
    os.chdir(cwd)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=os.environ.get("AILA_DATA_DIR", ".carry"))
  parser.add_argument("--peer_dir", default=".carry/ram_peer")
  parser.add_argument("--out", default="bench/results")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--reps", type=int, default=3)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  steps, warmup, reps = (5, 2, 1) if args.quick else (args.steps, 30, args.reps)

  device = jax.devices()[0]
  device_name = getattr(device, "device_kind", str(device))
  result = {"device": device_name, "jax_device": str(device), "command": " ".join(sys.argv),
            "versions": {"python": platform.python_version(), "jax": jax.__version__},
            "settings": PORT, "timing": (
                f"median over {reps} repetitions of {steps} training steps (images/s), after "
                f"{warmup} warm-up steps; synchronised (block_until_ready / cuda.synchronize)"),
            "rows": {}}
  rows = result["rows"]
  rows["ours_pipeline"] = bench_ours(args.data_dir, steps=steps, warmup=warmup, reps=reps)
  print("ours_pipeline", rows["ours_pipeline"], flush=True)
  rows["ours_memory"] = bench_ours(args.data_dir, steps=steps, warmup=warmup, reps=reps, feed="memory")
  print("ours_memory", rows["ours_memory"], flush=True)
  try:
    rows["peer"] = bench_peer(args.data_dir, args.peer_dir, steps=steps, warmup=warmup, reps=reps)
    result["versions"]["torch"] = rows["peer"].pop("torch")
    peer = rows["peer"]["images_per_sec"]
    result["ratio_ours_memory_over_peer"] = rows["ours_memory"]["images_per_sec"] / peer
    result["ratio_ours_pipeline_over_peer"] = rows["ours_pipeline"]["images_per_sec"] / peer
    print("peer", rows["peer"], flush=True)
  except Exception as e:  # pylint: disable=broad-except  (report it, keep the other rows)
    import traceback  # pylint: disable=g-import-not-at-top
    traceback.print_exc()
    rows["peer"] = {"failed": repr(e)}
  big = 64 if args.quick else 1024
  rows[f"ours_memory_batch{big}"] = bench_ours(args.data_dir, batch_size=big, steps=steps,
                                               warmup=warmup, reps=reps, feed="memory")
  rows["wsram_k5_memory_batch128"] = bench_ours(args.data_dir, model_name="wsram", steps=steps,
                                                warmup=warmup, reps=reps, feed="memory")
  rows[f"wsram_k5_memory_batch{big}"] = bench_ours(args.data_dir, model_name="wsram", batch_size=big,
                                                   steps=steps, warmup=warmup, reps=reps,
                                                   feed="memory")
  print(f"\n{'row':<28}{'images/s':>12}")
  for name, row in rows.items():
    print(f"{name:<28}{row.get('images_per_sec', float('nan')):>12.0f}")
  for key in ("ratio_ours_memory_over_peer", "ratio_ours_pipeline_over_peer"):
    if key in result:
      print(f"{key} (batch 128): {result[key]:.1f}x")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"ram_{re.sub(r'[^A-Za-z0-9._-]+', '-', device_name)}.json"
  save_result(path, result, indent=1)
  print("wrote", path)


if __name__ == "__main__":
  main()
