r"""ELA's accuracy claim (issue 16): paired CIFAR-10 ResNet-56 runs with and without ELA, several seeds.

Each run is ``train.py --config=configs/cifar10_resnet56_ela.py:MIXER,ela|noela,epochs=N`` with
``--config.seed=S`` in its own workdir, a subprocess; ``--jobs K`` of them at once (they share the GPU:
their test accuracies compare, their seconds only with runs that shared it the same way, so the JSON
keeps ``jobs``; time the savings alone with bench/ela_time.py). Runs start seed by seed, each seed's
ELA/no-ELA pairs together, so a budget that stops early still leaves complete pairs. Past
``--budget_s`` no run starts; a run still going at ``--budget_s + --grace_s`` gets SIGTERM (the trainer
saves a checkpoint and stops without final metrics: the run is reported as terminated, with its last logged
step and test evaluation, and its seed's pair is left out of the summary).

Per run: final test accuracy, training seconds (and the first step's), the skip set and recompiles. Per
mixer: the mean and sample standard deviation over the seeds finished in both arms, and the mean
difference ELA - no ELA of accuracy and training seconds.

  python bench/ela_accuracy.py --data_dir ../shared/data --out bench/results --epochs 15 --seeds 0,1,2 \
      --jobs 4 --budget_s 500

On the GPU machine the 56 MB data file travels in two parts (``--data_parts DIR_A DIR_B``, made by
``python bench/dla_cifar.py --split_to DIR_A DIR_B``; part B in a second call on the same warm machine).

``--set KEY=VALUE`` passes ``--config.KEY=VALUE`` to every run (e.g. ``model.depth=8`` and
``num_train_steps=4`` for a CPU smoke run).

``--keep EARLIER.json`` continues an earlier result of the same recipe (epochs and ``--set`` list must
match): its finished runs are copied into the new result (each marked ``kept_from``) and not run again,
so a call that ended before some runs finished is completed by a second call that trains only those
(``--seeds`` may add new seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results_io import save_result  # noqa: E402  pylint: disable=g-import-not-at-top
from aila_jax.train.metrics import read_metrics  # noqa: E402  pylint: disable=g-import-not-at-top


def device_name() -> str:
  """The device kind the runs will use, asked in a subprocess: JAX in this process would hold a GPU context
  (and, by default, most of its memory) while the runs train. 'unknown' if that fails."""
  code = "import jax; d = jax.devices()[0]; print(getattr(d, 'device_kind', d.platform))"
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
  try:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                         check=True)
    return out.stdout.strip().splitlines()[-1]
  except (subprocess.SubprocessError, OSError, IndexError):
    return "unknown"


def progress(workdir: pathlib.Path) -> dict:
  """How far a run without final metrics got: its last logged step and its last test evaluation, if any."""
  out = {}
  for row in read_metrics(workdir):
    out["last_logged_step"] = row["step"]
    if row.get("eval/accuracy") is not None:
      out.update(last_eval_step=row["step"], last_eval_accuracy=row["eval/accuracy"])
  return out


def resolve_data_dir(ap: argparse.ArgumentParser, args, root: pathlib.Path) -> str:
  """The folder of cifar10_jpeg_bytes.npz: ``--data_dir``, or the file rebuilt under ``root`` from
  ``--data_parts DIR_A DIR_B`` (bench/dla_cifar.assemble_parts checks every array's sha256)."""
  if args.data_parts:
    from bench.dla_cifar import assemble_parts  # pylint: disable=g-import-not-at-top
    return str(assemble_parts(*map(pathlib.Path, args.data_parts), root / "data").parent)
  if not args.data_dir:
    ap.error("give --data_dir or --data_parts DIR_A DIR_B")  # exits
  return str(pathlib.Path(args.data_dir).resolve())


def plan(mixers, seeds, epochs):
  """(mixer, arm, seed) in start order: seed-major, both arms of a mixer together."""
  return [(m, arm, s) for s in seeds for m in mixers for arm in ("noela", "ela")]


def kept_runs(path: pathlib.Path, epochs: int, sets) -> list[dict]:
  """The finished runs of an earlier result of the same recipe, each marked with the file it came from."""
  try:
    earlier = json.loads(pathlib.Path(path).read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise SystemExit(f"--keep {path}: cannot read an earlier result ({e})") from e
  if earlier.get("epochs") != epochs or list(earlier.get("sets", [])) != list(sets):
    raise SystemExit(f"--keep {path}: recorded with --epochs {earlier.get('epochs')} and --set "
                     f"{earlier.get('sets')}, this call has --epochs {epochs} and --set {list(sets)}: "
                     "runs of different recipes do not pair")
  return [{**r, "kept_from": pathlib.Path(path).name} for r in earlier.get("runs", [])
          if r.get("status") == "finished"]


def command(mixer, arm, seed, epochs, data_dir, workdir, sets):
  return [sys.executable, str(REPO / "train.py"),
          f"--config={REPO / 'configs' / 'cifar10_resnet56_ela.py'}:{mixer},{arm},epochs={epochs}",
          f"--workdir={workdir}", f"--config.seed={seed}", f"--config.data_dir={data_dir}",
          "--config.progress=False", *[f"--config.{kv}" for kv in sets]]


def summarise(runs: list[dict], mixers) -> dict:
  out = {}
  for m in mixers:
    done = {(r["arm"], r["seed"]): r for r in runs if r["mixer"] == m and r.get("status") == "finished"}
    seeds = sorted({s for (arm, s) in done if ("ela", s) in done and ("noela", s) in done})
    row = {"paired_seeds": seeds}
    for arm in ("noela", "ela"):
      acc = [done[(arm, s)]["test_accuracy"] for s in seeds]
      sec = [done[(arm, s)]["train_seconds"] for s in seeds]
      row[arm] = {"test_accuracy_mean": statistics.fmean(acc) if acc else None,
                  "test_accuracy_std": statistics.stdev(acc) if len(acc) > 1 else None,
                  "train_seconds_mean": statistics.fmean(sec) if sec else None}
    if seeds:
      row["accuracy_ela_minus_noela"] = row["ela"]["test_accuracy_mean"] - row["noela"]["test_accuracy_mean"]
      row["train_seconds_ela_over_noela"] = row["ela"]["train_seconds_mean"] / row["noela"]["train_seconds_mean"]
    out[m] = row
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data_dir", help="the folder holding cifar10_jpeg_bytes.npz")
  ap.add_argument("--data_parts", nargs=2, metavar=("DIR_A", "DIR_B"),
                  help="the data file in two parts (bench/dla_cifar.py --split_to), rebuilt and checked first")
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--epochs", type=int, default=15)
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--mixers", default="mrla_base,aila2")
  ap.add_argument("--jobs", type=int, default=4)
  ap.add_argument("--budget_s", type=float, default=500)
  ap.add_argument("--grace_s", type=float, default=60)
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  ap.add_argument("--tag", default="")
  ap.add_argument("--keep", help="an earlier result JSON of the same recipe whose finished runs are kept, not rerun")
  args = ap.parse_args(argv)
  mixers = [m for m in args.mixers.split(",") if m]
  seeds = [int(s) for s in args.seeds.split(",") if s]
  if args.jobs < 1:
    ap.error("--jobs: expected an int >= 1")
  root = pathlib.Path(tempfile.mkdtemp(prefix="ela_acc_"))
  data_dir = resolve_data_dir(ap, args, root)
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")  # several runs share one GPU
  device = device_name()
  name = f"ela_accuracy_{device.replace(' ', '-')}_e{args.epochs}{'_' + args.tag if args.tag else ''}.json"
  path = pathlib.Path(args.out) / name
  path.parent.mkdir(parents=True, exist_ok=True)

  def write(runs, complete):
    """The result so far (written after every finished run, so a killed call keeps the runs it finished)."""
    result = {"device": device, "command": "bench/ela_accuracy.py " + " ".join(argv if argv is not None
                                                                              else sys.argv[1:]),
              "data": (f"--data_parts {' '.join(args.data_parts)} (rebuilt, every array's sha256 checked)"
                       if args.data_parts else "--data_dir"),
              "config": "configs/cifar10_resnet56_ela.py", "epochs": args.epochs, "seeds": seeds, "jobs": args.jobs,
              "sets": args.set, "kept_from": args.keep and pathlib.Path(args.keep).name,
              "note": ("runs shared the device --jobs at a time: accuracies compare, seconds only "
                       "between runs that shared it alike (kept runs: as in their own file)"),
              "complete": complete, "summary": summarise(runs, mixers), "runs": runs,
              "wall_s": time.perf_counter() - t0}
    save_result(path, result, indent=2)
    return result

  runs = kept_runs(args.keep, args.epochs, args.set) if args.keep else []
  done = {(r["mixer"], r["arm"], r["seed"]) for r in runs}
  todo, running = [job for job in plan(mixers, seeds, args.epochs) if job not in done], []
  runs = [r for r in runs if r["mixer"] in mixers]
  if runs:
    print(f"kept {len(runs)} finished run(s) from {args.keep}; {len(todo)} to run", flush=True)
  t0 = time.perf_counter()
  while todo or running:
    while todo and len(running) < args.jobs and time.perf_counter() - t0 < args.budget_s:
      mixer, arm, seed = todo.pop(0)
      workdir = root / f"{mixer}_{arm}_s{seed}"
      log = open(root / f"{workdir.name}.log", "w")  # pylint: disable=consider-using-with
      cmd = command(mixer, arm, seed, args.epochs, data_dir, workdir, args.set)
      proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
      running.append((proc, log, {"mixer": mixer, "arm": arm, "seed": seed, "workdir": workdir,
                                  "started_s": time.perf_counter() - t0}))
      print(f"[{time.perf_counter() - t0:6.0f} s] started {workdir.name}", flush=True)
    if todo and not running:  # the budget ran out before these could start
      runs += [{"mixer": m, "arm": a, "seed": s, "status": "not started (budget)"} for m, a, s in todo]
      todo = []
    for item in list(running):
      proc, log, info = item
      if proc.poll() is None:
        if time.perf_counter() - t0 > args.budget_s + args.grace_s and not info.get("terminated"):
          os.killpg(proc.pid, signal.SIGTERM)
          info["terminated"] = True
        continue
      running.remove(item)
      log.close()
      workdir = info.pop("workdir")
      final = workdir / "final_metrics.json"
      rec = {**{k: v for k, v in info.items() if k != "terminated"}, "returncode": proc.returncode,
             "wall_s": time.perf_counter() - t0 - info["started_s"]}
      if final.exists():
        m = json.loads(final.read_text())
        rec.update(status="preempted" if info.get("terminated") else "finished",
                   step=m.get("step"), test_accuracy=m.get("eval/accuracy"), test_loss=m.get("eval/loss"),
                   train_seconds=m.get("train_seconds"), first_step_seconds=m.get("first_step_seconds"),
                   skip_set=m.get("ela/skip_set"), recompiles=m.get("ela/recompiles"))
      else:
        tail = (root / f"{workdir.name}.log").read_text()[-1500:]
        rec.update(status="terminated" if info.get("terminated") else "failed", log_tail=tail,
                   **progress(workdir))
      runs.append(rec)
      write(runs, complete=False)
      print(f"[{time.perf_counter() - t0:6.0f} s] {workdir.name}: {rec['status']}"
            + (f", test accuracy {rec['test_accuracy']:.4f}" if rec.get("test_accuracy") is not None else ""),
            flush=True)
    time.sleep(0.5)

  result = write(runs, complete=True)
  for m, row in result["summary"].items():
    if row["paired_seeds"]:
      print(f"{m}: seeds {row['paired_seeds']}: no ELA {100 * row['noela']['test_accuracy_mean']:.2f}%, "
            f"ELA {100 * row['ela']['test_accuracy_mean']:.2f}% ({100 * row['accuracy_ela_minus_noela']:+.2f}), "
            f"training seconds ELA / no ELA {row['train_seconds_ela_over_noela']:.3f}")
    else:
      print(f"{m}: no seed finished in both arms")
  print("wrote", path)
  return 0 if all(r.get("status") == "finished" for r in runs) else 1


if __name__ == "__main__":
  sys.exit(main())
