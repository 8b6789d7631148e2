r"""Every family's benchmark in one command: run the bench scripts, collect their JSONs, redraw the figures.

  python -m bench.run --suite quick --out DIR     # one H200: every family, short settings, < 10 minutes
  python -m bench.run --suite full --out DIR      # the long runs (tens of minutes to hours on one GPU)

Each benchmark runs as its own subprocess (``python bench/NAME.py ...``) with a time budget (``--budget_scale``
multiplies them); it writes its result JSON into ``--out``. A script that fails, runs past its budget (then
it gets SIGTERM, and SIGKILL 15 s later) or writes no JSON is reported, and the others still run. A script
whose inputs are missing is skipped with a line saying why: the data sets (``--data_dir``, default
``$AILA_DATA_DIR``: ``mnist.npz``, ``cifar10_jpeg_bytes.npz``, ``multi30k/``, ``imdb.jsonl.gz``), PyTorch for
the scripts that are only a comparison with a PyTorch original. Where PyTorch is not installed, the scripts
that time a PyTorch peer beside our code run without their peer rows (one line says so). The peers' code comes from
``bench/.peers`` or ``$AILA_PEER_MIRRORS`` (``bench/peers.py``); the RAM port from ``--ram_peer_dir``.
At the end: a table (script, status, seconds, JSONs written; also ``OUT/bench_run.json``), the figures redrawn with
``bench.figures`` from ``--out`` with ``--results`` (default ``bench/results``) filling in what this run did
not measure, into ``--figures`` (default ``DIR/figures``; ``--figures docs/figures`` updates the committed
ones), and the exit status 1 if any script failed or timed out, else 0.

**quick** (``--suite quick`` on a GPU; the budgets add up to 560 s; on one H100 the whole run took 331 s,
bench/results/quick_suite): ``attention`` (2 shapes at L=2048, causal and not, 3 repetitions),
``transformer`` (Transformer-base, PyTorch eager, no torch.compile), ``depth`` (ResNet-20, four mixers,
3 interleaved rounds), ``ela_time`` (ResNet-26: residual, MRLA-base, MRLA-base skipping half),
``dla`` (cifar_dla batch 128 vs the eager peer, no CIFAR training), ``ram`` (150 steps vs the PyTorch port).

**full**: the same scripts at their own defaults, and the long ones: ``attention_kernels``,
``compile_time``, ``depth_profile --trace``, ``depth_train`` (CIFAR-10 and prices), ``imdb_depth``,
``multi30k_bleu`` and ``multi30k_sweep``, ``dla`` with its CIFAR run, ``dla_port_check``,
``mrla_peer``, ``ram_wsram_mnist`` and ``wsram_compare``.

**On a machine without a GPU** (no ``nvidia-smi -L`` listing a GPU, or ``JAX_PLATFORMS=cpu``), ``--suite
quick`` is a smoke test with tiny sizes; by default only ``attention`` (one tiny shape: the real script, its
JSON and the figures, in seconds: the CI test runs it). ``--only`` picks others of the CPU list
(``attention,transformer,depth,ela_time,dla,ram``), each a few CPU minutes on 2 cores; ``--suite full`` is
refused there. ``--list`` prints the commands without running them.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Bench:
  """One benchmark run: ``python bench/<script>.py <args>`` with ``{out}``, ``{data}``, ``{ram_peer}`` filled in."""
  name: str
  script: str
  args: list[str]
  budget_s: float
  data: tuple[str, ...] = ()     # files or folders under --data_dir it needs
  torch_only: bool = False       # a comparison with a PyTorch original and nothing else: skipped without torch
  peer_rows: bool = False        # times a PyTorch peer beside ours (those rows are absent without torch)


QUICK = [
    Bench("attention", "attention", ["--out", "{out}", "--reps", "3", "--shapes", "0,1"], 60, peer_rows=True),
    Bench("transformer", "transformer", ["--out", "{out}", "--no-compile", "--steps", "20"], 110, peer_rows=True),
    Bench("depth", "depth", ["--out", "{out}", "--depths", "20", "--interleave", "3", "--loop", "20",
                             "--mixers", "residual;aila1;aila2;mrla_light", "--tag", "quick"], 100,
          peer_rows=True),
    # ResNet-26 (4 blocks a stage, skip=half skips block 4): on the H200 ResNet-56's MRLA-base step compiled in
    # 143 s (ela_time_NVIDIA-H200_resnet56.json), more than this call can give; --compile-budget drops the
    # skip spec rather than overrun.
    Bench("ela_time", "ela_time", ["--out", "{out}", "--depth", "26", "--rounds", "5",
                                   "--specs", "residual;mrla_base;mrla_base:skip=half",
                                   "--compile-budget", "75", "--tag", "quick"], 110),
    Bench("dla", "dla", ["--out", "{out}", "--workloads", "cifar_dla_b128", "--no_compile", "--rounds", "3",
                         "--cifar_epochs", "0", "--budget_s", "80", "--tag", "quick"], 100, peer_rows=True),
    Bench("ram", "ram", ["--data_dir", "{data}", "--peer_dir", "{ram_peer}", "--out", "{out}", "--steps", "150",
                         "--reps", "2"], 80, data=("mnist.npz",), peer_rows=True),
]

FULL = [
    Bench("attention", "attention", ["--out", "{out}"], 300, peer_rows=True),
    Bench("attention_kernels", "attention_kernels", ["--out", "{out}"], 300, peer_rows=True),
    Bench("transformer", "transformer", ["--out", "{out}"], 400, peer_rows=True),
    Bench("multi30k_bleu", "multi30k_bleu", ["--out={out}", "--train_seconds=330"], 900, data=("multi30k",)),
    Bench("multi30k_sweep", "multi30k_sweep", ["--out", "{out}", "--train_seconds", "330"], 1200,
          data=("multi30k",)),
    Bench("depth", "depth", ["--out", "{out}"], 900, peer_rows=True),
    Bench("depth_profile", "depth_profile", ["--trace", "--out", "{out}"], 600),
    Bench("compile_time", "compile_time", ["--out", "{out}", "--steps", "20"], 1500),  # six ResNet-56 compiles
    Bench("depth_train", "depth_train", ["--out", "{out}", "--data_dir", "{data}", "--seed", "0,1"], 1800,
          data=("cifar10_jpeg_bytes.npz", "prices")),
    Bench("imdb_depth", "imdb_depth", ["--out", "{out}", "--data_dir", "{data}"], 900, data=("imdb.jsonl.gz",)),
    Bench("ela_time", "ela_time", ["--out", "{out}"], 1500),  # six ResNet-56 specs, up to 143 s of compile each
    Bench("dla", "dla", ["--out", "{out}", "--data_dir", "{data}", "--budget_s", "3000", "--cifar_epochs", "30"],
          3600, data=("cifar10_jpeg_bytes.npz",), peer_rows=True),
    Bench("dla_port_check", "dla_port_check", ["--out", "{out}"], 600, torch_only=True),
    Bench("mrla_peer", "mrla_peer", ["--out", "{out}"], 900, torch_only=True),
    Bench("ram", "ram", ["--data_dir", "{data}", "--peer_dir", "{ram_peer}", "--out", "{out}"], 300,
          data=("mnist.npz",), peer_rows=True),
    Bench("ram_wsram_mnist", "ram_wsram_mnist", ["--data_dir", "{data}", "--out", "{out}", "--workdir",
                                                 "{out}/runs/ram_wsram", "--set", "model.cell=lstm"], 1800,
          data=("mnist.npz",)),
    Bench("wsram_compare", "wsram_compare", ["--data_dir", "{data}", "--out", "{out}", "--workdir",
                                             "{out}/runs/wsram_compare"], 7200, data=("mnist.npz",)),
]

# CPU smoke settings: tiny sizes of the same scripts (the JSONs say 'cpu'; not measurements).
CPU = [
    Bench("attention", "attention", ["--out", "{out}", "--smoke"], 120, peer_rows=True),
    Bench("transformer", "transformer", ["--out", "{out}", "--quick", "--no-compile"], 300, peer_rows=True),
    Bench("depth", "depth", ["--out", "{out}", "--depths", "8", "--batch", "4", "--interleave", "2", "--loop", "2",
                             "--mixers", "residual;aila1", "--tag", "smoke"], 300, peer_rows=True),
    Bench("ela_time", "ela_time", ["--out", "{out}", "--depth", "26", "--batch", "4", "--rounds", "2", "--loop", "2",
                                   "--specs", "residual;mrla_base;mrla_base:skip=half", "--tag", "smoke"], 300),
    Bench("dla", "dla", ["--out", "{out}", "--smoke", "--cifar_epochs", "0", "--tag", "smoke"], 300, peer_rows=True),
    Bench("ram", "ram", ["--data_dir", "{data}", "--peer_dir", "{ram_peer}", "--out", "{out}", "--quick"], 300,
          data=("mnist.npz",), peer_rows=True),
]
CPU_DEFAULT = ("attention",)


def has_gpu() -> bool:
  """A GPU JAX would use: ``nvidia-smi -L`` lists one and ``JAX_PLATFORMS`` does not pin the CPU."""
  if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
    return False
  smi = shutil.which("nvidia-smi")
  if not smi:
    return False
  try:
    out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.SubprocessError):
    return False
  return out.returncode == 0 and "GPU" in out.stdout


def plan(suite: str, *, gpu: bool, only=None) -> list[Bench]:
  """The benchmarks of ``suite`` for this machine (``only``: names to keep, in the suite's order)."""
  if suite not in ("quick", "full"):
    raise ValueError(f"--suite: expected 'quick' or 'full', got {suite!r}")
  if gpu:
    benches = QUICK if suite == "quick" else FULL
  elif suite == "full":
    raise ValueError("--suite full needs a GPU (none found: nvidia-smi lists none, or JAX_PLATFORMS=cpu); "
                     "on a CPU run --suite quick (tiny sizes)")
  else:
    benches = CPU
    only = only or CPU_DEFAULT
  if only:
    names = [b.name for b in benches]
    unknown = [n for n in only if n not in names]
    if unknown:
      raise ValueError(f"--only: {unknown} not in the {suite} suite here ({', '.join(names)})")
    benches = [b for b in benches if b.name in only]
  return benches


def command(b: Bench, *, out, data, ram_peer) -> list[str]:
  fill = {"out": str(out), "data": str(data or ""), "ram_peer": str(ram_peer)}
  # the script relative to the checkout (the child runs there, cwd=REPO): a printed or stored command line
  # names no folder of this machine
  return [sys.executable, f"bench/{b.script}.py"] + [a.format(**fill) for a in b.args]


def why_skip(b: Bench, *, data, torch_ok: bool) -> str | None:
  if b.torch_only and not torch_ok:
    return "PyTorch is not installed (this script only compares with a PyTorch original)"
  if b.data:
    if not data:
      return f"no --data_dir (nor $AILA_DATA_DIR) for {', '.join(b.data)}"
    absent = [d for d in b.data if not (pathlib.Path(data) / d).exists()]
    if absent:
      return f"{', '.join(absent)} not in --data_dir {data}"
  return None


def run_one(b: Bench, cmd: list[str], *, out: pathlib.Path, budget_s: float, log: pathlib.Path,
            data=None) -> dict:
  """Runs one benchmark with its output teed into ``log``; returns its row of the summary."""
  before = {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
  t0 = time.perf_counter()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
  if data:
    env["AILA_DATA_DIR"] = str(data)  # the scripts that read the data folder from the environment
  with open(log, "w") as f:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)

    def copy():  # the script's lines, prefixed, to the console and to its log
      for line in proc.stdout:
        f.write(line)
        print(f"  [{b.name}] {line}", end="", flush=True)

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    status = None
    try:
      proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
      status = f"timeout (> {budget_s:.0f} s)"
      os.killpg(proc.pid, signal.SIGTERM)  # the script and what it started: a trainer checkpoints and stops
      try:
        proc.wait(timeout=15)
      except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reader.join(timeout=10)
  seconds = time.perf_counter() - t0
  written = sorted(p.name for p in out.glob("*.json") if before.get(p) != p.stat().st_mtime_ns)
  if status is None:
    status = (f"failed (exit {proc.returncode})" if proc.returncode != 0
              else "ok" if written else "failed (no JSON written)")
  return {"name": b.name, "status": status, "seconds": seconds, "json": written, "log": str(log)}


def device_name(gpu: bool) -> str:
  """The first GPU's name as ``nvidia-smi`` gives it ('NVIDIA H100 80GB HBM3'), or 'cpu'."""
  if not gpu:
    return "cpu"
  try:
    out = subprocess.run([shutil.which("nvidia-smi") or "nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
  except (OSError, subprocess.SubprocessError):
    out = []
  return out[0].strip() if out else "gpu (name unknown)"


def summary_table(rows: list[dict]) -> str:
  lines = [f"{'benchmark':18s} {'status':26s} {'seconds':>8s}  JSON written"]
  for r in rows:
    secs = f"{r['seconds']:8.1f}" if r.get("seconds") is not None else f"{'-':>8s}"
    lines.append(f"{r['name']:18s} {r['status'][:26]:26s} {secs}  {', '.join(r.get('json', [])) or '-'}")
  return "\n".join(lines)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
  ap.add_argument("--suite", required=True, choices=("quick", "full"))
  ap.add_argument("--out", required=True, help="folder for the result JSONs (and logs/, figures/)")
  ap.add_argument("--only", default="", help="comma-separated benchmark names of the suite to run")
  ap.add_argument("--data_dir", default=os.environ.get("AILA_DATA_DIR"))
  ap.add_argument("--ram_peer_dir", default=".carry/ram_peer",
                  help="kevinzakka/recurrent-visual-attention's files for bench/ram.py")
  ap.add_argument("--results", default=str(REPO / "bench" / "results"),
                  help="stored results that fill in the figures where --out has none ('' for none)")
  ap.add_argument("--figures", default=None, help="where the figures go (default OUT/figures)")
  ap.add_argument("--budget_scale", type=float, default=1.0, help="multiplies every script's time budget")
  ap.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto",
                  help="auto: GPU settings when nvidia-smi lists a GPU (and JAX_PLATFORMS is not cpu)")
  ap.add_argument("--list", action="store_true", help="print the commands and exit")
  args = ap.parse_args(argv)

  gpu = has_gpu() if args.device == "auto" else args.device == "gpu"
  try:
    benches = plan(args.suite, gpu=gpu, only=[n for n in args.only.split(",") if n])
  except ValueError as e:
    print(f"bench.run: {e}", file=sys.stderr)
    return 2
  out = pathlib.Path(args.out).resolve()
  cmds = [command(b, out=out, data=args.data_dir, ram_peer=args.ram_peer_dir) for b in benches]
  mode = "GPU" if gpu else "CPU smoke (tiny sizes)"
  print(f"bench.run: suite {args.suite}, {mode}, {len(benches)} benchmark(s), budgets "
        f"{sum(b.budget_s for b in benches) * args.budget_scale:.0f} s in total, out {out}", flush=True)
  if args.list:
    for b, cmd in zip(benches, cmds):
      print(f"{b.name:18s} {b.budget_s * args.budget_scale:6.0f} s  {' '.join(cmd[1:])}")
    return 0
  out.mkdir(parents=True, exist_ok=True)
  (out / "logs").mkdir(exist_ok=True)
  torch_ok = importlib.util.find_spec("torch") is not None
  if not torch_ok:
    print("bench.run: PyTorch is not installed: the PyTorch peers are skipped (their rows are absent from "
          "the JSONs; scripts that only compare with a PyTorch original are not run)", flush=True)
  rows = []
  t_all = time.perf_counter()
  for i, (b, cmd) in enumerate(zip(benches, cmds)):
    reason = why_skip(b, data=args.data_dir, torch_ok=torch_ok)
    if reason:
      print(f"[{i + 1}/{len(benches)}] {b.name}: skipped: {reason}", flush=True)
      rows.append({"name": b.name, "status": "skipped", "seconds": None, "json": [], "reason": reason})
      continue
    budget = b.budget_s * args.budget_scale
    print(f"[{i + 1}/{len(benches)}] {b.name}: {' '.join(cmd[1:])}  (budget {budget:.0f} s, "
          f"{time.perf_counter() - t_all:.0f} s elapsed)", flush=True)
    row = run_one(b, cmd, out=out, budget_s=budget, log=out / "logs" / f"{b.name}.log", data=args.data_dir)
    print(f"[{i + 1}/{len(benches)}] {b.name}: {row['status']} in {row['seconds']:.1f} s", flush=True)
    rows.append(row)

  figures = pathlib.Path(args.figures) if args.figures else out / "figures"
  from bench import figures as figures_lib  # pylint: disable=g-import-not-at-top
  dirs = [out] + ([args.results] if args.results else [])
  try:
    index = figures_lib.draw(figures_lib.Results(figures_lib.collect(dirs)), figures)
    drawn = [f for f, info in index.items() if "sources" in info]
    rows.append({"name": "figures", "status": "ok", "seconds": None, "json": [],
                 "note": f"{len(drawn)} of {len(index)} figures in {figures}"})
    print(f"figures: {len(drawn)} of {len(index)} drawn into {figures} (from {', '.join(map(str, dirs))})",
          flush=True)
  except Exception as e:  # pylint: disable=broad-except  (the table below still tells what ran)
    rows.append({"name": "figures", "status": f"failed ({type(e).__name__}: {e})"[:60], "seconds": None,
                 "json": []})
    print(f"figures: failed: {type(e).__name__}: {e}", flush=True)
  print("\n" + summary_table(rows), flush=True)
  for r in rows:
    if r.get("reason"):
      print(f"  {r['name']}: skipped: {r['reason']}")
  bad = [r["name"] for r in rows if r["status"] not in ("ok", "skipped")]
  total_s = time.perf_counter() - t_all
  record = {"suite": args.suite, "mode": mode, "device": device_name(gpu),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - total_s)),
            "total_seconds": total_s, "budget_scale": args.budget_scale, "failed": bad,
            "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "rows": [dict(r, log=os.path.relpath(r["log"], out)) if r.get("log") else r for r in rows]}
  (out / "bench_run.json").write_text(json.dumps(record, indent=1) + "\n")
  print(f"bench.run: {len(rows) - len(bad)} of {len(rows)} fine in {total_s:.0f} s"
        + (f"; FAILED: {', '.join(bad)}" if bad else "") + f"; summary in {out / 'bench_run.json'}", flush=True)
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
