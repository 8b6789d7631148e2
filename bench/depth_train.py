r"""Short real-data runs of the depth mixers (issue 4): CIFAR-10 ResNets and daily price forecasting.

* CIFAR-10 (the offline JPEG copy): ``configs/cifar10_resnet_short.py`` with
  ``--epochs`` epochs (warm-up 1 epoch, linear decay), ResNet-``--depth``, for
  each of ``--mixers`` (default residual, mrla_light, aila1; ``aila1@6`` gives
  one mixer its own epoch count, for equal-time comparisons); test accuracy,
  parameters, training wall-clock, and the training seconds after the first
  step (which is mostly compilation). Every mixer runs with each seed of
  ``--seed`` (``0,1``).
* Prices: ``configs/prices_aila.py`` (AILA MLP, ``--price_models`` aila1 and
  aila2 mixers), ``configs/prices_lstm.py`` (LSTM) and the same LSTM with its
  layers joined by an AILA mixer (``lstm_aila1``, ``lstm_aila2``) on the five series, each
  with every seed of ``--price_seeds``. The set-up is the residual-to-naive one
  of those configs (target = change from the last close, zero-initialised head,
  statistics fitted on train rows only, chronological splits). Val and test are
  evaluated every ``eval_every`` steps and each run reports the **test metrics
  at the eval with the lowest val MSE** (early stopping on val; the untrained
  step-0 model, which *is* the naive forecast, is a candidate too, unless
  ``--no_initial``), with the selected step, the test metrics of the best
  trained step (step > 0) and of the last step, and the Diebold-Mariano
  statistic against the naive forecast. A summary per series gives the naive
  test MSE, each model's test MSE at best val (mean and std over seeds) and
  whether AILA <= LSTM and <= naive. ``--price_jobs N`` runs N price runs at
  once in worker processes (these models are tiny: dispatch-bound, so
  processes scale on a many-core host); ``--price_platform cpu`` runs them on
  the CPU.

Runs stop being started once ``--budget_s`` seconds have passed (what ran is
written). Results: ``depth_train[_<tag>].json`` in ``--out``. ``--set key=value``
overrides fields of the CIFAR config (``worker_count=2``, ``model.drop_path=0.1``);
several processes, one mixer and seed each, can share a GPU (compare their
accuracies; their wall-clocks only with runs that shared it the same way).

  AILA_DATA_DIR=../shared/data python3 bench/depth_train.py --out /tmp/depth_train
  AILA_DATA_DIR=../shared/data python3 bench/depth_train.py --skip cifar --price_jobs 8   # prices only
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from aila_jax.data import prices as prices_lib  # noqa: E402
from aila_jax.tasks.forecasting import add_derived, select_by_val  # noqa: E402
from aila_jax.train import config_check  # noqa: E402
from aila_jax.train import train_and_evaluate  # noqa: E402
from aila_jax.train.metrics import read_metrics  # noqa: E402
from bench.results_io import save_result  # noqa: E402  (JSON summary + .curves.npz for long tables)
from configs import cifar10_resnet_short, prices_aila, prices_lstm  # noqa: E402

PRICE_MODELS = ("aila1", "aila2", "lstm", "lstm_aila1", "lstm_aila2")
AILA_MODELS = tuple(m for m in PRICE_MODELS if m != "lstm")
TEST_KEYS = ("mse", "mae", "rmse", "directional_accuracy", "mse_diff", "dm_stat")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--data_dir", default=os.environ.get("AILA_DATA_DIR"))
  ap.add_argument("--epochs", type=int, default=15)
  ap.add_argument("--depth", type=int, default=20)
  ap.add_argument("--mixers", default="residual,mrla_light,aila1",
                  help="comma-separated CIFAR mixers, each optionally with its own epochs: 'residual,aila1@6'")
  ap.add_argument("--series", default=",".join(prices_lib.SERIES))
  ap.add_argument("--price_models", default="aila1,aila2,lstm", help=f"of {', '.join(PRICE_MODELS)}")
  ap.add_argument("--price_seeds", default="0,1,2")
  ap.add_argument("--price_steps", type=int, default=0, help="> 0: override the configs' step count")
  ap.add_argument("--price_eval_every", type=int, default=0, help="> 0: override the configs' eval_every")
  ap.add_argument("--price_jobs", type=int, default=1, help="price runs at once (worker processes)")
  ap.add_argument("--price_platform", default="",
                  help="'cpu': price runs in worker processes on the CPU ('': this process's default device)")
  ap.add_argument("--no_initial", action="store_true",
                  help="early stopping among trained steps only (not the step-0 model = the naive forecast)")
  ap.add_argument("--cifar_steps", type=int, default=0, help="> 0: override the step count (smoke tests)")
  ap.add_argument("--seed", default="0", help="CIFAR seed(s), comma-separated: every mixer runs with each")
  ap.add_argument("--budget_s", type=float, default=500)
  ap.add_argument("--skip", default="", help="'cifar' or 'prices' to skip a part")
  ap.add_argument("--set", action="append", default=[],
                  help="key=value override of the CIFAR config (repeatable), e.g. worker_count=2")
  ap.add_argument("--tag", default="", help="suffix of the JSON file name (depth_train_<tag>.json)")
  args = ap.parse_args()
  start = time.perf_counter()
  deadline = time.time() + args.budget_s
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  work = pathlib.Path(tempfile.mkdtemp(prefix="depth_train_"))
  result = {"device": jax.devices()[0].device_kind, "seed": args.seed, "cifar": [], "prices": [],
            "prices_summary": [], "args": vars(args)}

  json_path = out / f"depth_train{'_' + args.tag if args.tag else ''}.json"

  def save():
    result["total_s"] = time.perf_counter() - start
    save_result(json_path, result, indent=2)

  def over_budget():
    return time.perf_counter() - start > args.budget_s

  if "cifar" not in args.skip:
    for spec, seed in [(m, int(sd)) for sd in args.seed.split(",") for m in args.mixers.split(",")]:
      mixer, _, ep = spec.partition("@")
      epochs = int(ep) if ep else args.epochs
      if over_budget():
        print("budget reached: skipping cifar", spec, "seed", seed, flush=True)
        continue
      config = cifar10_resnet_short.get_config(epochs=epochs)
      steps = 50_000 // config.batch_size
      if args.cifar_steps:
        config.num_train_steps = args.cifar_steps
      config.eval_every = 0
      config.checkpoint_every = config.num_train_steps
      config.log_every = 2 * steps
      config.data_dir = args.data_dir
      config.seed = seed
      config.model.depth = args.depth
      config.model.mixer = mixer
      for item in args.set:
        config_check.apply_override(config, item)
      t = time.perf_counter()
      run_dir = work / f"cifar_{mixer}_{epochs}_{seed}"
      r = train_and_evaluate(config, run_dir)
      wall = time.perf_counter() - t
      params = _params_from_log(run_dir)
      shutil.rmtree(run_dir, ignore_errors=True)  # its checkpoints: read, not kept
      first = r["first_step_seconds"]  # a fresh workdir: this run trained
      row = {"mixer": mixer, "depth": args.depth, "epochs": epochs, "seed": seed,
             "overrides": args.set, "steps": r["step"],
             "test_accuracy": r["eval/accuracy"], "test_loss": r["eval/loss"],
             "train_seconds": r["train_seconds"], "first_step_seconds": first,
             "train_seconds_after_first_step": r["train_seconds"] - first,
             "wall_seconds": wall, "params": params}
      result["cifar"].append(row)
      print("CIFAR", json.dumps(row), flush=True)
      save()

  if "prices" not in args.skip:
    t_prices = time.perf_counter()
    specs = [dict(series=series, model=model, seed=int(seed), data_dir=args.data_dir, steps=args.price_steps,
                  eval_every=args.price_eval_every, initial=not args.no_initial, deadline=deadline,
                  workdir=str(work / f"prices_{series}_{model}_{seed}"))
             for seed in args.price_seeds.split(",") for series in args.series.split(",")
             for model in args.price_models.split(",")]
    result["price_setup"] = _price_setup()

    def collect(row):
      if row.get("skipped"):
        print("budget reached: skipped prices", row["series"], row["model"], "seed", row["seed"], flush=True)
        return
      result["prices"].append(row)
      print("PRICES", json.dumps({k: row[k] for k in ("series", "model", "seed", "selected_step", "test_mse",
                                                      "naive_test_mse", "test_dm_stat", "wall_seconds")}),
            flush=True)
      result["prices_summary"] = summarize(result["prices"])
      save()

    if args.price_jobs > 1 or args.price_platform:
      ctx = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(args.price_jobs, mp_context=ctx, initializer=_worker_init,
                                                  initargs=(args.price_platform,)) as pool:
        for fut in concurrent.futures.as_completed([pool.submit(price_run, spec) for spec in specs]):
          collect(fut.result())
    else:
      for spec in specs:
        collect(price_run(spec))
    result["prices"].sort(key=lambda r: (r["series"], r["model"], r["seed"]))
    result["prices_seconds"] = time.perf_counter() - t_prices
    result["prices_summary"] = summarize(result["prices"])
    print_summary(result["prices_summary"], result["prices_seconds"])
  save()
  shutil.rmtree(work, ignore_errors=True)  # the price runs' workdirs
  print(f"done in {time.perf_counter() - start:.1f} s; wrote {json_path}", flush=True)


def _price_setup() -> dict:
  config = prices_aila.get_config()
  return {"dataset_kwargs": config.dataset_kwargs.to_dict(), "task_kwargs": config.task_kwargs.to_dict(),
          "optimizer": config.optimizer.to_dict(), "schedule": config.schedule.to_dict(),
          "batch_size": config.batch_size, "num_train_steps": config.num_train_steps,
          "eval_every": config.eval_every, "aila_model": config.model.to_dict(),
          "lstm_model": prices_lstm.get_config().model.to_dict(),
          "selection": "test metrics at the eval step with the lowest val MSE (step 0 = the untrained "
                       "zero-head model = the naive forecast, a candidate unless --no_initial)"}


def _worker_init(platform: str) -> None:
  """A price worker: its own small share of the accelerator (or the CPU)."""
  os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  if platform:
    jax.config.update("jax_platforms", platform)


def price_config(series: str, model: str, *, seed: int, data_dir=None, steps: int = 0, eval_every: int = 0):
  """The config of one price run.

  ``model``: ``aila1``/``aila2`` (the AILA MLP of ``prices_aila``), ``lstm``
  (``prices_lstm``), ``lstm_aila1``/``lstm_aila2`` (the LSTM of ``prices_lstm``
  with its layers joined by that AILA mixer instead of a plain stack).
  """
  if model not in PRICE_MODELS:
    raise ValueError(f"--price_models: unknown model {model!r}; expected names of {PRICE_MODELS}")
  config = (prices_lstm if model.startswith("lstm") else prices_aila).get_config()
  mixer = model.removeprefix("lstm_")
  if mixer != "lstm":
    config.model.mixer = mixer
    config.model.mixer_kwargs = {"num_heads": 4} if mixer == "aila2" else {}
  config.dataset_kwargs.series = series
  config.data_dir = data_dir
  config.seed = seed
  if steps:
    config.num_train_steps = steps
  if eval_every:
    config.eval_every = eval_every
  config.checkpoint_every = config.num_train_steps
  config.log_every = config.eval_every or config.num_train_steps
  config.progress = False
  return config


def price_run(spec: dict) -> dict:
  """Trains one (series, model, seed); returns its row (test metrics at the best val eval and more)."""
  head = {k: spec[k] for k in ("series", "model", "seed")}
  if time.time() > spec["deadline"]:
    return dict(head, skipped=True)
  config = price_config(spec["series"], spec["model"], seed=spec["seed"], data_dir=spec["data_dir"],
                        steps=spec["steps"], eval_every=spec["eval_every"])
  initial = spec["initial"] and config.model.get("zero_head", False) and \
      config.dataset_kwargs.get("target") == "change"
  workdir = pathlib.Path(spec["workdir"])
  t = time.perf_counter()
  final = add_derived(train_and_evaluate(config, workdir))
  wall = time.perf_counter() - t
  rows = read_metrics(workdir)
  best = select_by_val(rows, initial_naive=initial)
  trained = select_by_val(rows)
  row = dict(head, mixer=config.model.mixer, steps=final["step"], params=_params_from_log(workdir),
             train_seconds=final["train_seconds"], wall_seconds=wall, device=jax.devices()[0].device_kind,
             selected_step=best["step"], selected_initial=bool(best.get("initial_naive", False)),
             val_mse=best["eval_val/mse"], naive_val_mse=best["eval_val/naive_mse"],
             val_dm_stat=best.get("eval_val/dm_stat"),
             naive_test_mse=best["eval/naive_mse"], naive_test_mae=best["eval/naive_mae"],
             trained_best_step=trained["step"], trained_val_mse=trained["eval_val/mse"],
             trained_test_mse=trained["eval/mse"], final_test_mse=final["eval/mse"],
             final_val_mse=final["eval_val/mse"])
  row.update({f"test_{k}": best.get(f"eval/{k}") for k in TEST_KEYS})
  return row


def _le(a: float, b: float) -> bool:
  """``a <= b``, counting equal up to float rounding as equal (the mean of three copies of the naive
  forecast's MSE can differ from it in the last bit)."""
  return a <= b or math.isclose(a, b, rel_tol=1e-12)


def summarize(rows: list[dict]) -> list[dict]:
  """Per series: naive test MSE, each model's test MSE at best val (mean, std over seeds), the verdicts."""
  out = []
  for series in sorted({r["series"] for r in rows}, key=list(prices_lib.SERIES).index):
    runs = [r for r in rows if r["series"] == series]
    naive = runs[0]["naive_test_mse"]
    entry = {"series": series, "naive_test_mse": naive, "models": {}}
    for model in PRICE_MODELS:
      mses = [r["test_mse"] for r in runs if r["model"] == model]
      if not mses:
        continue
      mean = statistics.fmean(mses)
      entry["models"][model] = {
          "test_mse_mean": mean, "test_mse_std": statistics.stdev(mses) if len(mses) > 1 else 0.0,
          "seeds": len(mses), "ratio_to_naive": mean / naive,
          "selected_steps": [r["selected_step"] for r in runs if r["model"] == model],
          "test_dm_stat": [r["test_dm_stat"] for r in runs if r["model"] == model],
          "trained_test_mse_mean": statistics.fmean(r["trained_test_mse"] for r in runs if r["model"] == model),
          "final_test_mse_mean": statistics.fmean(r["final_test_mse"] for r in runs if r["model"] == model),
          "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in runs if r["model"] == model)}
    models = entry["models"]
    for aila in AILA_MODELS:
      if aila in models:
        entry[f"{aila}_le_naive"] = _le(models[aila]["test_mse_mean"], naive)
        if "lstm" in models:
          entry[f"{aila}_le_lstm"] = _le(models[aila]["test_mse_mean"], models["lstm"]["test_mse_mean"])
    out.append(entry)
  return out


def print_summary(summary: list[dict], seconds: float) -> None:
  print(f"\nprices: test MSE at best val (mean +- std over seeds; selected steps; 0 = the naive forecast kept); "
        f"{seconds:.1f} s", flush=True)
  for e in summary:
    cells = [f"{e['series']:6s} naive {e['naive_test_mse']:.6g}"]
    for model, m in e["models"].items():
      cells.append(f"{model} {m['test_mse_mean']:.6g} +- {m['test_mse_std']:.2g} (x{m['ratio_to_naive']:.4f}, "
                   f"steps {m['selected_steps']})")
    verdicts = [f"{k}={v}" for k, v in e.items() if k.endswith(("_le_naive", "_le_lstm"))]
    print(" | ".join(cells) + " | " + " ".join(verdicts), flush=True)


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
