r"""RAM vs WS-RAM on 28x28 MNIST (6 glimpses of 8x8): test error against steps and wall-clock.

Trains ``configs/ram_mnist.py`` and ``configs/wsram_mnist.py`` one after the
other through ``aila_jax.train.train_and_evaluate`` (same seed, batch,
optimiser and number of steps), evaluating on the 10,000 test images every
``--eval_every`` steps, and records for every eval the step, the wall-clock
since the start of training (``wall``, evals included) and the training-only
wall-clock (``train_wall`` = wall minus the time spent in evals). Then it
reports the first step / time at which WS-RAM's test error falls to RAM's
final error, and their ratios to RAM's totals.

  python3 bench/ram_wsram_mnist.py --data_dir .carry --out bench/results --steps 6000

Writes ``ram_wsram_mnist_<device>.json`` (and the two runs' ``metrics.jsonl``
under ``--workdir``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from aila_jax.train import metrics as metrics_lib  # noqa: E402
from aila_jax.train import train_and_evaluate  # noqa: E402
from configs import ram_mnist, wsram_mnist  # noqa: E402

_CLOCK = {"t0": None}
_original_write = metrics_lib.MetricWriter.write


def _stamped_write(self, step, metrics):
  """MetricWriter.write plus the wall-clock since the first training step."""
  if _CLOCK["t0"] is None:
    _CLOCK["t0"] = time.perf_counter()
  return _original_write(self, step, {**metrics, "wall": time.perf_counter() - _CLOCK["t0"]})


def run(name, config, workdir):
  metrics_lib.MetricWriter.write = _stamped_write
  _CLOCK["t0"] = None
  start = time.perf_counter()
  result = train_and_evaluate(config, workdir)
  total = time.perf_counter() - start
  rows = metrics_lib.read_metrics(workdir)
  # The clock starts at the first logged row (step log_every, compilation before it); the
  # steps before it are credited at the mean training rate measured after it.
  first, last = rows[0], rows[-1]
  all_eval = sum(r.get("eval/seconds", 0.0) for r in rows)
  per_step = (last["wall"] - all_eval) / max(last["step"] - first["step"], 1)
  offset = first["step"] * per_step
  evals, eval_seconds = [], 0.0
  for r in rows:
    if "eval/accuracy" in r:
      eval_seconds += r["eval/seconds"]
      evals.append({"step": r["step"], "wall": r["wall"] + offset,
                    "train_wall": r["wall"] - eval_seconds + offset,
                    "error": 1.0 - r["eval/accuracy"],
                    "error_sampled": 1.0 - r.get("eval/accuracy_sampled", float("nan")),
                    "loss": r["eval/loss"]})
  train_rows = [{k: r[k] for k in r if k.startswith("train/") or k in ("step", "wall")}
                for r in rows if "train/loss" in r]
  return {"name": name, "config": json.loads(config.to_json_best_effort()), "final": result,
          "evals": evals, "train": train_rows, "seconds_total_incl_compile": total,
          "train_seconds_per_step": per_step}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir", default=".carry")
  parser.add_argument("--out", default="bench/results")
  parser.add_argument("--workdir", default="/tmp/ram_wsram")
  parser.add_argument("--steps", type=int, default=6000)
  parser.add_argument("--wsram_steps", type=int, default=None, help="default: --steps")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--eval_every", type=int, default=250)
  parser.add_argument("--num_samples", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  results = {}
  for name, module, steps in (("ram", ram_mnist, args.steps),
                              ("wsram", wsram_mnist, args.wsram_steps or args.steps)):
    config = module.get_config()
    config.data_dir = args.data_dir
    config.seed = args.seed
    config.batch_size = args.batch_size
    config.num_train_steps = steps
    config.eval_every = args.eval_every
    config.log_every = min(20, args.eval_every)
    config.checkpoint_every = steps
    if name == "wsram":
      config.task_kwargs.num_samples = args.num_samples
    results[name] = run(name, config, pathlib.Path(args.workdir) / name)
    print(name, "final test error", 1.0 - results[name]["final"]["eval/accuracy"], flush=True)
    _write(args.out, {"partial": True, **results})

  ram_final = results["ram"]["evals"][-1]
  reach = next((e for e in results["wsram"]["evals"] if e["error"] <= ram_final["error"]), None)
  summary = {"ram_final_error": ram_final["error"], "ram_steps": ram_final["step"],
             "ram_train_wall": ram_final["train_wall"],
             "wsram_final_error": results["wsram"]["evals"][-1]["error"],
             "wsram_final_error_sampled": results["wsram"]["evals"][-1]["error_sampled"],
             "wsram_reaches_ram_final_error_at": reach}
  if reach is not None:
    summary["step_ratio"] = reach["step"] / ram_final["step"]
    summary["train_wall_ratio"] = reach["train_wall"] / ram_final["train_wall"]
  path = _write(args.out, {"summary": summary, **results})
  print(json.dumps(summary, indent=1))
  print("wrote", path)


def _write(out_dir, payload):
  device = jax.devices()[0]
  device_name = getattr(device, "device_kind", str(device))
  path = pathlib.Path(out_dir)
  path.mkdir(parents=True, exist_ok=True)
  path = path / f"ram_wsram_mnist_{re.sub(r'[^A-Za-z0-9._-]+', '-', device_name)}.json"
  path.write_text(json.dumps({"device": device_name, "command": " ".join(sys.argv), **payload},
                             indent=1))
  return path


if __name__ == "__main__":
  main()
