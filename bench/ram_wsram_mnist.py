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

Writes ``ram_wsram_mnist_<device>[_<tag>].json``, a summary with the per-step training rows in
``ram_wsram_mnist_<device>[_<tag>].curves.npz`` beside it (``bench/results_io.py``: read both back as
one dict with ``load_result``), and the runs' ``metrics.jsonl`` under ``--workdir``. ``--models ram`` or ``--models wsram`` trains one of them
(several such processes can share a GPU: then compare steps, and wall-clock
only between runs that shared it the same way); ``--set key=value`` overrides
config fields of both (``model.cell=lstm``, ``model.std=0.05``, ...);
``--deadline_s`` stops a run with SIGTERM (the trainer checkpoints and returns)
so that a run sized too long still reports its evals.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import signal
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from aila_jax.train import config_check  # noqa: E402
from bench.results_io import load_result, save_result  # noqa: E402
from aila_jax.train import metrics as metrics_lib  # noqa: E402
from aila_jax.train import train_and_evaluate  # noqa: E402
from configs import ram_mnist, wsram_mnist  # noqa: E402

def run(name, config, workdir):
  config.log_wall_clock = True  # every metrics row gets `wall`, the seconds since the first logged step
  start = time.perf_counter()
  result = train_and_evaluate(config, workdir)
  total = time.perf_counter() - start
  rows, per_step = cumulative_wall(metrics_lib.read_metrics(workdir))
  evals, eval_seconds = [], 0.0
  for r in rows:
    if "eval/accuracy" in r:
      eval_seconds += r["eval/seconds"]
      evals.append({"step": r["step"], "wall": r["wall"],
                    "train_wall": r["wall"] - eval_seconds,
                    "error": 1.0 - r["eval/accuracy"],
                    "error_sampled": 1.0 - r.get("eval/accuracy_sampled", float("nan")),
                    "loss": r["eval/loss"]})
  train_rows = [{k: r[k] for k in r if k.startswith("train/") or k in ("step", "wall")}
                for r in rows if "train/loss" in r]
  return {"name": name, "config": json.loads(config.to_json_best_effort()), "final": result,
          "evals": evals, "train": train_rows, "seconds_total_incl_compile": total,
          "train_seconds_per_step": per_step}


def cumulative_wall(rows):
  """``rows`` with ``wall`` counted from step 0 across resumed runs, and the mean seconds per step.

  Each call of :func:`run` starts its clock at its first logged row (compilation and the first
  ``log_every`` steps before it), so a workdir trained over several calls (resumed from its
  checkpoint) holds one clock per call: a segment starts where ``wall`` goes down. The
  seconds per training step are those measured inside the segments (evals excluded), and the
  steps before each segment's first row are credited at that rate.
  """
  rows = [r for r in rows if "wall" in r]
  segments = []
  for r in rows:
    if not segments or r["wall"] < segments[-1][-1]["wall"]:
      segments.append([])
    segments[-1].append(r)
  timed = sum(seg[-1]["wall"] - sum(r.get("eval/seconds", 0.0) for r in seg) for seg in segments)
  per_step = timed / max(sum(seg[-1]["step"] - seg[0]["step"] for seg in segments), 1)
  out, offset, last_step = [], 0.0, 0
  for seg in segments:
    offset += (seg[0]["step"] - last_step) * per_step  # steps before this call's first row
    out += [{**r, "wall": r["wall"] + offset} for r in seg]
    offset, last_step = out[-1]["wall"], seg[-1]["step"]
  return out, per_step


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
  parser.add_argument("--lr", type=float, default=None, help="optimizer.learning_rate (default: the config's)")
  parser.add_argument("--models", default="ram,wsram", help="ram, wsram or both")
  parser.add_argument("--set", action="append", default=[], help="key=value config override (repeatable)")
  parser.add_argument("--tag", default="", help="suffix of the JSON file name")
  parser.add_argument("--deadline_s", type=float, default=0.0, help="SIGTERM each run after this many s (0: off)")
  parser.add_argument("--compare", nargs=2, metavar=("RAM_JSON", "WSRAM_JSON"),
                      help="only compare two earlier results (e.g. from runs that shared a GPU) and print")
  args = parser.parse_args()
  if args.compare:
    ram = load_result(args.compare[0])["ram"]
    wsram = load_result(args.compare[1])["wsram"]
    print(json.dumps(compare(ram, wsram), indent=1))
    return

  results = {}
  wanted = args.models.split(",")
  for name, module, steps in (("ram", ram_mnist, args.steps),
                              ("wsram", wsram_mnist, args.wsram_steps or args.steps)):
    if name not in wanted:
      continue
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
    if args.lr is not None:
      config.optimizer.learning_rate = args.lr
    for item in args.set:
      config_check.apply_override(config, item)
    timer = None
    if args.deadline_s > 0:
      timer = threading.Timer(args.deadline_s, lambda: os.kill(os.getpid(), signal.SIGTERM))
      timer.start()
    try:
      results[name] = run(name, config, pathlib.Path(args.workdir) / name)
    finally:
      if timer is not None:
        timer.cancel()
    last_eval = results[name]["evals"][-1] if results[name]["evals"] else {}
    print(name, "step", results[name]["final"]["step"], "last test error", last_eval.get("error"),
          "preempted" if results[name]["final"].get("preempted") else "", flush=True)
    _write(args.out, {"partial": True, **results}, args.tag)

  if not {"ram", "wsram"} <= set(results):
    print("wrote", _write(args.out, results, args.tag))
    return
  summary = compare(results["ram"], results["wsram"])
  path = _write(args.out, {"summary": summary, **results}, args.tag)
  print(json.dumps(summary, indent=1))
  print("wrote", path)


def compare(ram, wsram):
  """When WS-RAM's test error first reaches RAM's final one, in steps and training wall-clock.

  Both errors use the prior's mean locations; WS-RAM's error with ``K`` sampled
  glimpse sequences (``error_sampled``) is reported beside it, and where RAM ran
  with ``task_kwargs.eval_samples`` > 0 the same comparison is made on the sampled errors.
  """
  ram_final = ram["evals"][-1]
  summary = {"ram_final_error": ram_final["error"], "ram_steps": ram_final["step"],
             "ram_train_wall": ram_final["train_wall"],
             "wsram_final_error": wsram["evals"][-1]["error"],
             "wsram_final_error_sampled": wsram["evals"][-1]["error_sampled"]}
  for key in ("error", "error_sampled"):
    target = ram_final[key]
    if target != target:  # NaN: RAM was not evaluated this way
      continue
    reach = next((e for e in wsram["evals"] if e[key] <= target), None)
    name = "" if key == "error" else "_sampled"
    summary[f"wsram_reaches_ram_final{name}_at"] = reach
    if reach is not None:
      summary[f"step_ratio{name}"] = reach["step"] / ram_final["step"]
      summary[f"train_wall_ratio{name}"] = reach["train_wall"] / ram_final["train_wall"]
  return summary


def _write(out_dir, payload, tag=""):
  device = jax.devices()[0]
  device_name = getattr(device, "device_kind", str(device))
  path = pathlib.Path(out_dir)
  path.mkdir(parents=True, exist_ok=True)
  suffix = f"_{tag}" if tag else ""
  path = path / f"ram_wsram_mnist_{re.sub(r'[^A-Za-z0-9._-]+', '-', device_name)}{suffix}.json"
  save_result(path, {"device": device_name, "command": " ".join(sys.argv), **payload}, indent=1)
  return path


if __name__ == "__main__":
  main()
