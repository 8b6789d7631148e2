r"""What ELA's recompiles cost a run, with and without ``ela.compile_ahead`` (issue 16: "the whole run's
training seconds fall accordingly").

Runs ``train.py --config=configs/cifar10_resnet56_ela.py:MIXER,ela,epochs=N`` once per ``--ahead`` value
(``--config.ela.compile_ahead=A``), one after the other so each has the device to itself, and, with
``--baseline``, the same recipe without ELA. Per run: training seconds, first-step seconds, the skip set,
recompiles, the seconds the training waited at skip-set switches for a background compile
(``ela/compile_wait_seconds``), each switch's step, and the final test accuracy. With ``compile_ahead=0`` a
switch waits for the whole compile; with ``A > 0`` the compile runs beside the training for ``A`` steps.

  python bench/ela_compile_ahead.py --data_dir ../shared/data --mixer aila2 --epochs 15 --ahead 0,5000 \
      --baseline --set steps_per_call=10 --set xla_graph_loops=True

``--set KEY=VALUE`` goes to every run (e.g. ``model.depth=20 batch_size=32 num_train_steps=600`` for a CPU
run). On the GPU machine the data travels in two parts (``--data_parts DIR_A DIR_B``, as bench/ela_accuracy.py).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ela_accuracy import command, device_name, resolve_data_dir  # noqa: E402  pylint: disable=g-import-not-at-top
from bench.results_io import save_result  # noqa: E402  pylint: disable=g-import-not-at-top
from aila_jax.train.metrics import read_metrics  # noqa: E402  pylint: disable=g-import-not-at-top


def summarise_run(workdir: pathlib.Path) -> dict:
  """The figures of one finished run from its final_metrics.json and metrics.jsonl."""
  final = json.loads((workdir / "final_metrics.json").read_text())
  rows = read_metrics(workdir)
  decided, switches = "", []  # nothing skipped at the start
  for row in rows:  # the decision rows carry the decided set; a change starts a switch at its switch_step
    if "ela/skip_set" in row and row["ela/skip_set"] != decided:
      decided = row["ela/skip_set"]
      switches.append({"decided_at": row["step"], "skip_set": decided,
                       "effective_after": row.get("ela/switch_step", row["step"])})
  waits = [row["ela/compile_wait_seconds"] for row in rows if "ela/compile_wait_seconds" in row]
  return {"step": final.get("step"), "test_accuracy": final.get("eval/accuracy"),
          "train_seconds": final.get("train_seconds"), "first_step_seconds": final.get("first_step_seconds"),
          "skip_set": final.get("ela/skip_set"), "recompiles": final.get("ela/recompiles"),
          "compile_wait_seconds": final.get("ela/compile_wait_seconds"), "waits": waits, "switches": switches}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data_dir", help="the folder holding cifar10_jpeg_bytes.npz")
  ap.add_argument("--data_parts", nargs=2, metavar=("DIR_A", "DIR_B"))
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--mixer", default="aila2")
  ap.add_argument("--epochs", type=int, default=15)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--ahead", default="0,5000", help="','-separated ela.compile_ahead values, one run each")
  ap.add_argument("--baseline", action="store_true", help="also run the recipe without ELA")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  ap.add_argument("--tag", default="")
  args = ap.parse_args(argv)
  aheads = [int(a) for a in args.ahead.split(",") if a]
  if any(a < 0 for a in aheads) or not aheads:
    ap.error("--ahead: expected ints >= 0, e.g. 0,5000")
  root = pathlib.Path(tempfile.mkdtemp(prefix="ela_ahead_"))
  data_dir = resolve_data_dir(ap, args, root)
  device = device_name()
  path = pathlib.Path(args.out) / (f"ela_compile_ahead_{device.replace(' ', '-')}_{args.mixer}_e{args.epochs}"
                                   f"{'_' + args.tag if args.tag else ''}.json")
  path.parent.mkdir(parents=True, exist_ok=True)
  result = {"device": device, "command": "bench/ela_compile_ahead.py " + " ".join(
      argv if argv is not None else sys.argv[1:]), "config": "configs/cifar10_resnet56_ela.py",
            "mixer": args.mixer, "epochs": args.epochs, "seed": args.seed, "sets": args.set,
            "note": "runs one after the other, each alone on the device", "runs": []}
  plan = [("ela", a) for a in aheads] + ([("noela", None)] if args.baseline else [])
  for arm, ahead in plan:
    name = f"{arm}" + ("" if ahead is None else f"_ahead{ahead}")
    workdir = root / name
    sets = args.set + ([f"ela.compile_ahead={ahead}"] if ahead is not None else [])
    cmd = command(args.mixer, arm, args.seed, args.epochs, data_dir, workdir, sets)
    t = time.perf_counter()
    with open(root / f"{name}.log", "w") as log:
      rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    rec = {"arm": arm, "compile_ahead": ahead, "returncode": rc, "wall_s": time.perf_counter() - t}
    if rc == 0 and (workdir / "final_metrics.json").exists():
      rec.update(summarise_run(workdir))
    else:
      rec["log_tail"] = (root / f"{name}.log").read_text()[-1500:]
    result["runs"].append(rec)
    save_result(path, result, indent=2)  # after every run: a stopped call keeps the finished ones
    if "train_seconds" in rec:
      wait = rec["compile_wait_seconds"]
      print(f"{name}: train {rec['train_seconds']:.1f} s (first step {rec['first_step_seconds']:.1f} s), recompiles "
            f"{rec['recompiles'] or 0}, " + (f"waited {wait:.1f} s at switches, " if wait is not None else "")
            + f"test accuracy {rec['test_accuracy']:.4f}", flush=True)
    else:
      print(f"{name}: failed (rc {rc}); log tail:\n{rec['log_tail']}", flush=True)
  print("wrote", path)
  return 0 if all(r["returncode"] == 0 for r in result["runs"]) else 1


if __name__ == "__main__":
  sys.exit(main())
