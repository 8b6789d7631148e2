r"""Where a depth mixer's extra step time goes: kernels per step and GPU busy time vs wall time.

For each mixer spec (as in ``bench/depth.py``: the same jitted CIFAR ResNet SGD
step on a random batch) this reports

* the compiled step's top-level operations, by kind (``fusion``,
  ``convolution`` custom calls, ``cublas`` / ``cudnn`` calls, copies, ...),
  read from the optimised HLO (``compiled.as_text()``): on a GPU each is
  (about) one kernel launch;
* with ``--trace``, a ``jax.profiler`` trace of ``--loop`` steps: the summed
  duration of the device's kernels per step (``busy_ms``), the wall time per
  step, and the kernels that take the most time. Kernel events are read from
  the Perfetto trace JSON (``perfetto_trace.json.gz``) that JAX writes; where
  the profiler records no device events (no CUPTI, or a CPU) only the wall
  time is reported.

If a mixer's step is ``r`` times the residual's while its ``busy_ms`` is not,
the extra time is launch and scheduling overhead between kernels (small
kernels); if ``busy_ms`` grows too, the extra kernels do real work.

  python3 bench/depth_profile.py --trace --out bench/results          # on a GPU
  python3 bench/depth_profile.py --depth 8 --batch 4 --mixers "residual;aila1"   # CPU smoke run
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import re
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from depth import MIXERS, make_step, run_steps  # noqa: E402  (bench/depth.py)
from bench.results_io import save_result  # noqa: E402  (JSON summary + .curves.npz for long tables)

_SKIP = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant", "after-all", "partition-id",
         "replica-id", "opt-barrier"}


def op_kinds(hlo_text: str) -> dict[str, int]:
  """Counts the ENTRY computation's operations of an optimised HLO module by kind."""
  entry = hlo_text[hlo_text.index("\nENTRY"):]
  entry = entry[:entry.index("\n}")]
  counts = collections.Counter()
  for line in entry.splitlines()[1:]:
    m = re.search(r"=\s*\S+(?:\s*\{[^}]*\})?\s+([a-z][a-z0-9-]*)\(", line)
    if m is None:
      m = re.search(r"\s([a-z][a-z0-9-]*)\(", line)
    if m is None:
      continue
    op = m.group(1)
    if op in _SKIP:
      continue
    if op == "custom-call":
      target = re.search(r'custom_call_target="([^"]+)"', line)
      op = "custom-call:" + (target.group(1) if target else "?")
    counts[op] += 1
  return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _trace_events(log_dir: pathlib.Path):
  files = sorted(log_dir.rglob("perfetto_trace.json.gz")) or sorted(log_dir.rglob("*.trace.json.gz"))
  if not files:
    return None
  with gzip.open(files[-1], "rt") as f:
    data = json.load(f)
  return data["traceEvents"] if isinstance(data, dict) else data


def device_kernels(events) -> tuple[list[tuple[str, float]], str]:
  """(name, duration in us) of the kernel events on the device's streams, and which threads they came from."""
  pname, tname = {}, {}
  for e in events:
    if e.get("ph") == "M" and e.get("name") == "process_name":
      pname[e["pid"]] = str(e.get("args", {}).get("name", ""))
    if e.get("ph") == "M" and e.get("name") == "thread_name":
      tname[(e["pid"], e.get("tid"))] = str(e.get("args", {}).get("name", ""))
  gpu_pids = {p for p, n in pname.items() if re.search(r"GPU|gpu|device:", n) and "host" not in n.lower()}
  kernels, threads = [], collections.Counter()
  for e in events:
    if e.get("ph") != "X" or e.get("pid") not in gpu_pids:
      continue
    thread = tname.get((e["pid"], e.get("tid")), "")
    if "stream" not in thread.lower():  # XLA-op and module lines duplicate the kernels
      continue
    threads[thread] += 1
    kernels.append((str(e.get("name", "")), float(e.get("dur", 0.0))))
  return kernels, ", ".join(f"{t} ({n})" for t, n in threads.most_common(4))


def profile(spec, depth, batch, dtype, loop, trace):
  step, state, n_params = make_step(spec, depth, batch, dtype)
  step = step.lower(state).compile()  # compiled once: its HLO is counted and it runs the steps below
  row = {"mixer": spec, "depth": depth, "batch": batch, "params": n_params, "hlo_ops": op_kinds(step.as_text())}
  row["hlo_ops_total"] = sum(row["hlo_ops"].values())
  state, _ = run_steps(step, state, 5)
  state, sec = run_steps(step, state, loop)
  row["wall_ms"] = sec * 1e3
  if trace:
    with tempfile.TemporaryDirectory() as d:
      with jax.profiler.trace(d, create_perfetto_trace=True):
        state, _ = run_steps(step, state, loop)
      events = _trace_events(pathlib.Path(d))
    kernels, threads = device_kernels(events) if events else ([], "")
    if kernels:
      by_name = collections.defaultdict(lambda: [0, 0.0])
      for name, dur in kernels:
        by_name[name][0] += 1
        by_name[name][1] += dur
      row["kernels_per_step"] = len(kernels) / loop
      row["busy_ms"] = sum(d for _, d in kernels) / loop / 1e3
      row["streams"] = threads
      row["top_kernels"] = [{"name": n[:120], "per_step": c / loop, "us_per_step": us / loop}
                            for n, (c, us) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:25]]
  return row


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="")
  ap.add_argument("--depth", type=int, default=20)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--loop", type=int, default=20)
  ap.add_argument("--dtype", default="bfloat16")
  ap.add_argument("--mixers", default=";".join(MIXERS))
  ap.add_argument("--trace", action="store_true", help="also trace the steps with jax.profiler")
  ap.add_argument("--tag", default="")
  args = ap.parse_args()
  dtype = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}[args.dtype]
  device = jax.devices()[0]
  kind = getattr(device, "device_kind", device.platform)
  result = {"device": kind, "jax": jax.__version__, "depth": args.depth, "batch": args.batch,
            "dtype": args.dtype, "rows": []}
  path = None
  if args.out:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind)
    path = pathlib.Path(args.out) / f"depth_profile_{name}{'_' + args.tag if args.tag else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
  for spec in args.mixers.split(";"):
    row = profile(spec, args.depth, args.batch, dtype, args.loop, args.trace)
    result["rows"].append(row)
    ops = ", ".join(f"{k} {v}" for k, v in list(row["hlo_ops"].items())[:6])
    busy = (f"  busy {row['busy_ms']:.3f} ms, {row['kernels_per_step']:.0f} kernels/step"
            if "busy_ms" in row else "")
    print(f"{spec:28s} wall {row['wall_ms']:8.3f} ms/step  {row['hlo_ops_total']:4d} ops ({ops}){busy}",
          flush=True)
    if path:
      save_result(path, result, indent=2)
  if path:
    print("wrote", path)


if __name__ == "__main__":
  main()
