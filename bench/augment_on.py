r"""Where CIFAR augmentation runs: the host pipeline (numpy) or the jitted step (``config.augment_on``).

Two measurements, each setting interleaved in one process:

1. the input pipeline alone (``aila_jax.data.pipeline`` in this process, no worker processes): batches of
   128 per second for crop + flip + normalise (host), normalise only, and the uint8 gather the device
   setting leaves to the host;
2. the trainer (``configs/cifar10_dla.py`` with a tiny MLP in place of the DLA, so the step costs almost
   nothing and the rate is the trainer's own ceiling: pipeline, transfer, dispatch) with
   ``augment_on='host'`` and ``'device'``, each with ``eval_cache_mb`` 0 (the test set read anew at each
   evaluation) and 512 (kept on the devices after the first), ``worker_count=0``: one epoch of 390 steps
   with 10 evaluations of the 10,000 test images; training img/s without the first step (compilation)
   and the evaluations, and the median seconds of an evaluation (the first, compiling one left out).

  python bench/augment_on.py --data_dir ../shared/data --out bench/results

On a CPU the "device" is the same CPU, so the device setting's crops are paid by the same cores; on a GPU
they are a gather in the step. The DLA's own step is measured by bench/dla.py and bench/dla_cifar.py.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.results_io import save_result  # noqa: E402


def pipeline_rates(data_dir: str, batches: int, rounds: int) -> dict[str, float]:
  from aila_jax.data import datasets, pipeline, sources  # pylint: disable=g-import-not-at-top
  src = sources.get_source("cifar10", "train", data_dir=data_dir)
  spec = sources.get_spec("cifar10")
  norm = datasets.Normalize(spec.mean, spec.std)
  variants = {"host: crop + flip + normalise": dict(preprocess=norm, augment=datasets.random_crop_flip),
              "host: normalise only": dict(preprocess=norm),
              "device setting: uint8 gather only": dict(preprocess=datasets.uint8_images)}
  times = {k: [] for k in variants}
  for _ in range(rounds):
    for name, kw in variants.items():
      it = pipeline.make_iterator(pipeline.train_dataset(src, batch_size=128, seed=0, **kw))
      next(it)
      t = time.perf_counter()
      for _ in range(batches):
        next(it)
      times[name].append(time.perf_counter() - t)
  return {k: batches * 128 / float(np.median(v)) for k, v in times.items()}


VARIANTS = {"host": ("host", 0.0), "device": ("device", 0.0), "host, eval cache": ("host", 512.0),
            "device, eval cache": ("device", 512.0)}


def trainer_rates(data_dir: str, rounds: int) -> dict[str, dict]:
  """Training img/s (evaluations taken out) and the seconds of the 2nd-10th evaluations of the test set."""
  from aila_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  from aila_jax.train.metrics import read_metrics  # pylint: disable=g-import-not-at-top
  from configs import cifar10_dla  # pylint: disable=g-import-not-at-top
  out = {k: {"images_per_s": [], "eval_seconds": []} for k in VARIANTS}
  for _ in range(rounds):
    for name, (where, cache_mb) in VARIANTS.items():
      c = cifar10_dla.get_config(epochs=1)
      c.data_dir, c.model_name, c.model, c.dtype = data_dir, "mlp", {"hidden": (16,)}, "float32"
      steps = c.num_train_steps
      c.log_every, c.eval_every, c.checkpoint_every, c.progress = steps // 10, steps // 10, steps, False
      c.augment_on, c.worker_count, c.eval_cache_mb = where, 0, cache_mb
      workdir = pathlib.Path(tempfile.mkdtemp(prefix="aug_")) / "run"
      r = train_and_evaluate(c, workdir)
      evals = [row["eval/seconds"] for row in read_metrics(workdir) if "eval/seconds" in row]
      in_training = sum(evals[:-1])  # the last eval (at the final step) comes after train_seconds
      out[name]["images_per_s"].append(
          (steps - 1) * c.batch_size / (r["train_seconds"] - r["first_step_seconds"] - in_training))
      out[name]["eval_seconds"].append(float(np.median(evals[1:])))  # the first one compiles
  return {k: {"images_per_s_median": float(np.median(v["images_per_s"])),
              "eval_seconds_median": float(np.median(v["eval_seconds"])), **v} for k, v in out.items()}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data_dir", required=True)
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--batches", type=int, default=300)
  ap.add_argument("--tag", default="")
  args = ap.parse_args(argv)
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", dev.platform)
  result = {"device": kind, "platform": dev.platform, "jax": jax.__version__,
            "command": "bench/augment_on.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "pipeline_images_per_s": pipeline_rates(args.data_dir, args.batches, args.rounds),
            "trainer_tiny_mlp": trainer_rates(args.data_dir, args.rounds)}
  t = result["trainer_tiny_mlp"]
  result["trainer_ratio_device_vs_host"] = t["device"]["images_per_s_median"] / t["host"]["images_per_s_median"]
  result["eval_seconds_ratio_cache_vs_none"] = {
      where: t[f"{where}, eval cache"]["eval_seconds_median"] / t[where]["eval_seconds_median"]
      for where in ("host", "device")}
  name = f"augment_on_{kind.replace(' ', '-')}{'_' + args.tag if args.tag else ''}.json"
  path = pathlib.Path(args.out) / name
  path.parent.mkdir(parents=True, exist_ok=True)  # a new --out folder lost the whole measurement
  save_result(path, result, indent=2)
  for k, v in result["pipeline_images_per_s"].items():
    print(f"pipeline {k:36s} {v:10,.0f} img/s")
  for k, v in t.items():
    print(f"trainer (tiny MLP) augment_on={k:20s} {v['images_per_s_median']:10,.0f} img/s, "
          f"an evaluation {v['eval_seconds_median']:.3f} s")
  print(f"ratio device/host {result['trainer_ratio_device_vs_host']:.2f}x; wrote {path}")


if __name__ == "__main__":
  main()
