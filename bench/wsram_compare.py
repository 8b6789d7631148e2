r"""The WS-RAM paper's comparison (issue 18 item 1): five estimators, same core, steps and seeds.

Trains, on each dataset of ``--datasets`` (``mnist``: 28x28, 6 glimpses of 8x8,
configs/ram_mnist.py; ``cluttered60``: 60x60, 8 glimpses of 3 scales of 12x12,
configs/ram_cluttered60.py), every estimator of ``--variants``:

* ``naive``: REINFORCE with no learned baseline and no control variate
  (``model.baseline=False``, ``task_kwargs.reinforce_baseline='none'``);
* ``ram``: RAM, REINFORCE with its learned baseline :math:`b_\psi(h_t)`;
* ``wsram_nocv``: WS-RAM without control variates (``prior_control_variate='none'``,
  ``proposal_control_variate='none'``);
* ``wsram_cv``: WS-RAM with them (``'self_normalized'`` / ``'uniform'``, configs/wsram_mnist.py);
* ``wsram_prior``: WS-RAM with the prior as proposal, no inference network
  (``task_kwargs.proposal='prior'``);
* ``wsram_optimal`` (not in the default list): WS-RAM with the optimal-coefficient prior
  control variate (``prior_control_variate='optimal'``).

Every run goes through ``aila_jax.train.train_and_evaluate`` with the same seed, batch,
optimiser, core (``--cell``) and number of steps, evaluating the test error (prior-mean
locations) every ``--eval_every`` steps against steps, wall-clock and training-only
wall-clock (``bench/ram_wsram_mnist.run``). Every ``--probe_every`` steps a checkpoint
is kept; after the run each is restored and probed on a fixed batch of
``--probe_batch`` test images: the variance of the location (prior) network's gradient
over ``--probe_draws`` independent draws of the estimator's randomness
(:func:`aila_jax.stochastic.gradient_variance`: trace of the covariance and the squared
norm of the mean), and for the importance-weighted estimators the mean effective sample
size of the weights. The training rows also carry ``train/ess`` for those. Everything
goes into one JSON (``bench/results_io.save_result``):
``bench/results/wsram_compare_<device>[_<tag>].json``.

  python3 bench/wsram_compare.py --data_dir .carry --steps 20000 --eval_every 1000 --probe_every 5000
  python3 bench/wsram_compare.py --smoke --data_dir DIR_WITH_MNIST_NPZ   # CPU, a few steps
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from aila_jax import models, stochastic  # noqa: E402
from aila_jax.data import datasets  # noqa: E402
from aila_jax.tasks.glimpse import GlimpseTask  # noqa: E402
from aila_jax.train import checkpoint, config_check  # noqa: E402
from bench.ram_wsram_mnist import run as train_run  # noqa: E402
from bench.results_io import save_result  # noqa: E402
from configs import ram_cluttered60, ram_mnist, wsram_mnist  # noqa: E402

DATASETS = {"mnist": ram_mnist, "cluttered60": ram_cluttered60}
VARIANTS = ("naive", "ram", "wsram_nocv", "wsram_cv", "wsram_prior", "wsram_optimal")
DEFAULT_VARIANTS = ("naive", "ram", "wsram_nocv", "wsram_cv", "wsram_prior")


def variant_config(base, name: str):
  """The config of estimator ``name`` on the data and glimpses of the RAM config ``base``."""
  config = base.get_config()
  if name == "ram":
    return config
  if name == "naive":
    config.model.baseline = False
    config.task_kwargs.reinforce_baseline = "none"
    return config
  if name == "wsram_prior":
    config.model.baseline = False
    config.task_kwargs = dict(estimator="wake_sleep", num_samples=5, proposal="prior",
                              prior_control_variate="self_normalized", proposal_control_variate="none",
                              eval_samples=config.task_kwargs.eval_samples)
    return config
  eval_samples = config.task_kwargs.eval_samples
  config = wsram_mnist.wsram(config)
  config.task_kwargs.eval_samples = eval_samples  # the same eval as the other variants
  if name == "wsram_nocv":
    config.task_kwargs.prior_control_variate = "none"
    config.task_kwargs.proposal_control_variate = "none"
  elif name == "wsram_optimal":
    config.task_kwargs.prior_control_variate = "optimal"
  elif name != "wsram_cv":
    raise ValueError(f"unknown variant {name!r}; expected one of {VARIANTS}")
  return config


def probe(config, workdir: pathlib.Path, steps: list[int], *, batch_size: int, draws: int, seed: int):
  """Location-gradient variance and ESS of the estimator at the saved checkpoints ``steps``."""
  dataset = datasets.build_dataset(config)
  task = GlimpseTask.from_config(config, dataset)
  model = models.get_model(config.model_name, **dict(dataset.model_kwargs), **config.model.to_dict())
  source = dataset.eval["test"]
  records = [source[i] for i in range(batch_size)]
  batch = dataset.preprocess({k: np.stack([r[k] for r in records]) for k in records[0]})
  batch = {k: jax.numpy.asarray(v) for k, v in batch.items()}

  def loss(params, key):
    return task.train_loss(model.apply, {"params": params}, batch, rngs={"glimpse": key})[:2]

  def grad_fn(params, key):
    return jax.grad(lambda p: loss(p, key)[0])(params)["trajectory"]["location"]

  ess_fn = jax.jit(jax.vmap(lambda p, k: loss(p, k)[1].get("ess", jax.numpy.nan), (None, 0)))
  out = []
  for step in steps:
    _, tree, _ = checkpoint.load_checkpoint(workdir, step)
    params = jax.tree.map(jax.numpy.asarray, tree["params"])
    stats = stochastic.gradient_variance(grad_fn, params, jax.random.key(seed), draws)
    ess = ess_fn(params, jax.random.split(jax.random.key(seed + 1), 8))
    out.append({"step": int(step), "location_grad_variance": float(stats.total_variance),
                "location_grad_mean_sq_norm": float(stats.mean_squared_norm),
                "ess": float(np.mean(np.asarray(ess)))})
  return out


def first_reach(evals, target):
  return next((e for e in evals if e["error"] <= target), None)


def summarize(runs: dict) -> dict:
  """Per dataset: each variant's final error and when it first reaches the naive estimator's final error."""
  out = {}
  for ds, by_variant in runs.items():
    row = {}
    naive = by_variant.get("naive")
    target = naive["evals"][-1]["error"] if naive and naive["evals"] else None
    for name, r in by_variant.items():
      if not r["evals"]:
        continue
      last = r["evals"][-1]
      row[name] = {"final_error": last["error"], "final_step": last["step"], "train_wall": last["train_wall"]}
      if target is not None:
        reach = first_reach(r["evals"], target)
        row[name]["reaches_naive_final_at"] = reach
        if reach is not None:
          row[name]["step_ratio_to_naive"] = reach["step"] / naive["evals"][-1]["step"]
          row[name]["train_wall_ratio_to_naive"] = reach["train_wall"] / naive["evals"][-1]["train_wall"]
    out[ds] = row
  return out


def main(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir", default=".carry")
  parser.add_argument("--out", default="bench/results")
  parser.add_argument("--workdir", default="/tmp/wsram_compare")
  parser.add_argument("--datasets", default="mnist,cluttered60")
  parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
  parser.add_argument("--steps", type=int, default=20000)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--eval_every", type=int, default=1000)
  parser.add_argument("--probe_every", type=int, default=5000)
  parser.add_argument("--probe_batch", type=int, default=64)
  parser.add_argument("--probe_draws", type=int, default=64)
  parser.add_argument("--cell", default="lstm", help="the core of every run: 'lstm' or 'relu' (the paper's)")
  parser.add_argument("--eval_samples", type=int, default=0,
                      help="task_kwargs.eval_samples of every run (0: no sampled evaluation)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--set", action="append", default=[], help="key=value override of every run")
  parser.add_argument("--tag", default="")
  parser.add_argument("--smoke", action="store_true", help="CPU check: tiny model, 4 steps, 2 evals, 2 probes")
  args = parser.parse_args(argv)
  if args.smoke:
    args.steps, args.batch_size, args.eval_every, args.probe_every = 4, 8, 2, 2
    args.probe_batch, args.probe_draws = 4, 2
  datasets_wanted = args.datasets.split(",")
  variants = args.variants.split(",")
  for name in variants:
    if name not in VARIANTS:
      parser.error(f"--variants: unknown {name!r}; expected some of {VARIANTS}")
  for name in datasets_wanted:
    if name not in DATASETS:
      parser.error(f"--datasets: unknown {name!r}; expected some of {sorted(DATASETS)}")

  runs, probes = {}, {}
  start = time.perf_counter()
  for ds in datasets_wanted:
    runs[ds], probes[ds] = {}, {}
    for name in variants:
      config = variant_config(DATASETS[ds], name)
      config.data_dir = args.data_dir
      config.seed = args.seed
      config.batch_size = args.batch_size
      config.num_train_steps = args.steps
      config.eval_every = args.eval_every
      config.log_every = min(20, args.eval_every)
      config.checkpoint_every = args.probe_every
      config.keep_checkpoints = args.steps // args.probe_every + 2
      config.model.cell = args.cell
      config.task_kwargs.eval_samples = args.eval_samples or None
      if args.smoke:
        config.worker_count = 0
        config.eval_batch_size = 8
        config.model.update(dict(glimpse_hidden=8, location_hidden=8, glimpse_features=8, hidden=8))
        if config.model_name == "wsram":
          config.model.inference_hidden = 8
        if name.startswith("wsram"):
          config.task_kwargs.num_samples = 2
      for item in args.set:
        config_check.apply_override(config, item)
      workdir = pathlib.Path(args.workdir) / ds / name
      shutil.rmtree(workdir, ignore_errors=True)
      result = train_run(name, config, workdir)
      saved = sorted(checkpoint.Checkpointer(workdir / "checkpoints",
                                             keep=config.keep_checkpoints).all_steps())
      probes[ds][name] = probe(config, workdir, saved, batch_size=args.probe_batch, draws=args.probe_draws,
                               seed=args.seed)
      runs[ds][name] = result
      last = result["evals"][-1] if result["evals"] else {}
      print(ds, name, "step", result["final"].get("step"), "test error", last.get("error"),
            "probe", probes[ds][name][-1] if probes[ds][name] else None, flush=True)
      _write(args, {"partial": True, "runs": runs, "probes": probes})
  payload = {"summary": summarize(runs), "runs": runs, "probes": probes,
             "seconds_total": time.perf_counter() - start}
  path = _write(args, payload)
  print("wrote", path)
  return path


def _write(args, payload):
  device = jax.devices()[0]
  name = getattr(device, "device_kind", str(device))
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  suffix = f"_{args.tag}" if args.tag else ("_smoke" if args.smoke else "")
  path = out / f"wsram_compare_{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}{suffix}.json"
  save_result(path, {"device": name, "command": " ".join(sys.argv), **payload}, indent=1)
  return path


if __name__ == "__main__":
  main()
