r"""Short real-data runs of the depth mixers (issue 4): CIFAR-10 ResNets and daily price forecasting.

* CIFAR-10 (the offline JPEG copy): ``configs/cifar10_resnet_short.py`` with
  ``--epochs`` epochs (warm-up 1 epoch, linear decay), ResNet-``--depth``, for
  each of ``--mixers`` (default residual, mrla_light, aila1); test accuracy,
  parameters, training wall-clock.
* Prices: ``configs/prices_aila.py`` (AILA MLP) and ``configs/prices_lstm.py``
  (LSTM) on the five series, ``--price_steps`` steps each; test MSE/MAE/RMSE on
  prices and directional accuracy, with the naive last-value baseline.

Every run uses seed ``--seed``. Runs stop being started once ``--budget_s``
seconds have passed (what ran is written). Results: ``depth_train.json`` in ``--out``.

  AILA_DATA_DIR=../shared/data python3 bench/depth_train.py --out /tmp/depth_train
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from aila_jax.data import prices as prices_lib  # noqa: E402
from aila_jax.tasks.forecasting import add_rmse  # noqa: E402
from aila_jax.train import train_and_evaluate  # noqa: E402
from configs import cifar10_resnet_short, prices_aila, prices_lstm  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--data_dir", default=os.environ.get("AILA_DATA_DIR"))
  ap.add_argument("--epochs", type=int, default=15)
  ap.add_argument("--depth", type=int, default=20)
  ap.add_argument("--mixers", default="residual,mrla_light,aila1")
  ap.add_argument("--price_steps", type=int, default=1500)
  ap.add_argument("--series", default=",".join(prices_lib.SERIES))
  ap.add_argument("--cifar_steps", type=int, default=0, help="> 0: override the step count (smoke tests)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--budget_s", type=float, default=500)
  ap.add_argument("--skip", default="", help="'cifar' or 'prices' to skip a part")
  args = ap.parse_args()
  start = time.perf_counter()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  work = pathlib.Path(tempfile.mkdtemp(prefix="depth_train_"))
  result = {"device": jax.devices()[0].device_kind, "seed": args.seed, "cifar": [], "prices": [],
            "args": vars(args)}

  def save():
    result["total_s"] = time.perf_counter() - start
    (out / "depth_train.json").write_text(json.dumps(result, indent=2))

  def over_budget():
    return time.perf_counter() - start > args.budget_s

  if "cifar" not in args.skip:
    for mixer in args.mixers.split(","):
      if over_budget():
        print("budget reached: skipping cifar", mixer, flush=True)
        continue
      config = cifar10_resnet_short.get_config(epochs=args.epochs)
      steps = 50_000 // config.batch_size
      if args.cifar_steps:
        config.num_train_steps = args.cifar_steps
      config.eval_every = 0
      config.checkpoint_every = config.num_train_steps
      config.log_every = 2 * steps
      config.data_dir = args.data_dir
      config.seed = args.seed
      config.model.depth = args.depth
      config.model.mixer = mixer
      t = time.perf_counter()
      r = train_and_evaluate(config, work / f"cifar_{mixer}")
      wall = time.perf_counter() - t
      params = _params_from_log(work / f"cifar_{mixer}")
      row = {"mixer": mixer, "depth": args.depth, "epochs": args.epochs, "steps": r["step"],
             "test_accuracy": r["eval/accuracy"], "test_loss": r["eval/loss"],
             "train_seconds": r["train_seconds"], "wall_seconds": wall, "params": params}
      result["cifar"].append(row)
      print("CIFAR", json.dumps(row), flush=True)
      save()

  if "prices" not in args.skip:
    for series in args.series.split(","):
      for name, module in (("aila", prices_aila), ("lstm", prices_lstm)):
        if over_budget():
          print("budget reached: skipping prices", series, name, flush=True)
          continue
        config = module.get_config()
        config.dataset_kwargs.series = series
        config.data_dir = args.data_dir
        config.seed = args.seed
        config.num_train_steps = args.price_steps
        config.eval_every = 0
        config.checkpoint_every = args.price_steps
        config.log_every = 500
        config.progress = False
        t = time.perf_counter()
        r = add_rmse(train_and_evaluate(config, work / f"prices_{series}_{name}"))
        row = {"series": series, "model": name, "mixer": config.model.mixer, "steps": r["step"],
               "train_seconds": r["train_seconds"], "wall_seconds": time.perf_counter() - t,
               "params": _params_from_log(work / f"prices_{series}_{name}")}
        row.update({k[5:]: v for k, v in r.items() if k.startswith("eval/")})
        row.update({"val_" + k[9:]: v for k, v in r.items() if k.startswith("eval_val/")})
        result["prices"].append(row)
        print("PRICES", json.dumps(row), flush=True)
        save()
  save()
  print(f"done in {time.perf_counter() - start:.1f} s; wrote {out / 'depth_train.json'}", flush=True)


def _params_from_log(workdir: pathlib.Path):
  from aila_jax.train.checkpoint import load_checkpoint  # pylint: disable=g-import-not-at-top
  from aila_jax.train.state import param_count  # pylint: disable=g-import-not-at-top
  try:
    _, state, _ = load_checkpoint(workdir)
    return param_count(state["params"])
  except Exception:  # pylint: disable=broad-except
    return None


if __name__ == "__main__":
  main()
