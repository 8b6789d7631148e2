r"""Compile time of the CIFAR ResNet train step for each depth mixer, and where XLA spends it.

For each mixer spec (as in ``bench/depth.py``: the same jitted SGD step of
``cifar_resnet`` on a random batch) and each weighted-sum implementation
(``--impls``: ``reduce``, the default of :mod:`aila_jax.attention.depth`:
float32 products summed over the stacked slots with no ``dot``; ``stacked``,
one ``einsum`` over them; or the earlier per-slot Python sums ``slots``), this lowers and compiles the step
and reports seconds to lower and to compile, the optimised HLO's number of
fusions and, with ``--passes``, the XLA passes that took longest (from a
``jax.profiler`` trace of the compilation: each HLO pass is a trace event).

The first spec is compiled first, so the convolution autotuning of the GPU
(once per process and shape) falls on it: a mixer's compile time after it is
its own. ``--isolate`` runs each spec in a process of its own instead (each
then pays its own autotuning, as a training run does; ``--spec_timeout_s``
stops one, keeping its first-step timings if it got that far). ``first_step_s`` is compile + one executed step, what a training run
sees as its first step.

  python3 bench/compile_time.py --depth 56 --out bench/results        # on a GPU
  python3 bench/compile_time.py --depth 8 --batch 4 --mixers "residual;dense" --impls stacked,slots   # CPU
  python3 bench/compile_time.py --mixers "residual;aila1;aila1:mix=vjp" --passes   # variants of the sum

A spec's ``mix=NAME`` option traces the mixers with another way of writing the
weighted sum over depth (``bench/mix_variants.py``: optimisation barriers, a
custom VJP), same values and gradients. Its ``xla=PRESET`` option compiles the
step with a preset of XLA compiler options (``bench/xla_presets.py``; e.g.
``notriton``: matrix products by cuBLAS, none autotuned as a Triton kernel):
``"aila2;aila2:xla=notriton"``.

On an H200 (ResNet-20, bf16, batch 32) the dense mixer's step compiled in
29.5 s with per-slot sums, 26.6 s of it in the ``priority-fusion`` pass
(residual network: 3.4 s compile, 0.45 s in that pass), and in 9.6 s stacked.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bench.results_io import save_result  # noqa: E402  (atomic; long tables into NAME.curves.npz)
from aila_jax.attention import depth as depth_attn  # noqa: E402
from depth import MIXERS, make_step, run_steps  # noqa: E402  (bench/depth.py)
from bench import mix_variants  # noqa: E402  (spec option mix=NAME)
from bench import xla_presets  # noqa: E402  (spec option xla=PRESET)


def pass_times(log_dir: pathlib.Path, top: int) -> list[tuple[str, float, int]]:
  """(event name, total seconds, count) of the ``top`` longest trace events of a profiled compilation."""
  files = sorted(log_dir.rglob("perfetto_trace.json.gz"))
  if not files:
    return []
  with gzip.open(files[-1], "rt") as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  total, count = collections.defaultdict(float), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not str(e.get("name", "")).startswith("$"):  # '$file:line' are Python frames
      total[e["name"]] += e.get("dur", 0) / 1e6
      count[e["name"]] += 1
  return [(n[:100], round(s, 3), count[n]) for n, s in sorted(total.items(), key=lambda kv: -kv[1])[:top]]


def matmul_counts(hlo: str) -> dict:
  """Matrix products in an optimised HLO module: ``dot`` instructions and cuBLAS/cuBLASLt GEMM calls
  (what the GPU compiler autotunes, once per distinct shape), and how many distinct shapes they have."""
  shapes = re.findall(r"= (\S+) dot\(", hlo)
  shapes += re.findall(r"= (\([^)]*\)|\S+) custom-call\([^\n]*custom_call_target=\"__cublas", hlo)
  return {"matmuls": len(shapes), "matmul_shapes": len(set(shapes))}


def split_options(spec: str) -> tuple[str, dict[str, str]]:
  """``'aila2:xla=notriton,keys=folded'`` -> ``('aila2:keys=folded', {'xla': 'notriton'})``: the benchmark's own
  spec options (``mix=`` a variant of the weighted sum, bench/mix_variants.py; ``xla=`` a preset of XLA
  compiler options, bench/xla_presets.py) taken out of a mixer spec."""
  name, _, opts = spec.partition(":")
  keep, own = [], {}
  for item in filter(None, opts.split(",")):
    key, eq, value = item.partition("=")
    if eq and key in ("mix", "xla"):
      own[key] = value
    else:
      keep.append(item)
  if "xla" in own:
    xla_presets.options(own["xla"])  # ValueError naming the presets
  return name + (":" + ",".join(keep) if keep else ""), own


def measure(spec, impl, depth, batch, dtype, passes, steps=0, top=25, on_first_step=None):
  """One spec's row; ``on_first_step(row)`` is called with the timings as soon as the first step has run
  (before the profile of ``passes`` is parsed and the steps are timed)."""
  depth_attn.DEFAULT_SUM_IMPL = impl  # read when the step is traced
  model_spec, own = split_options(spec)
  mix, xla = own.get("mix"), own.get("xla", "default")
  step, state, n_params = make_step(model_spec, depth, batch, dtype)
  t0 = time.perf_counter()
  with mix_variants.using(mix):
    lowered = step.lower(state)
  t1 = time.perf_counter()
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True) if passes else contextlib.nullcontext():
      compiled = lowered.compile(compiler_options=xla_presets.options(xla))
      t2 = time.perf_counter()  # inside: stopping the profiler and writing its trace are not compilation
    state, step_s = run_steps(compiled, state, 1)
    text = compiled.as_text()
    row = {"mixer": spec, "impl": impl, "depth": depth, "batch": batch, "params": n_params, "lower_s": t1 - t0,
           "compile_s": t2 - t1, "first_step_s": t2 - t0 + step_s,
           "fusions": len(re.findall(r"\bfusion\(", text)), **matmul_counts(text)}
    if on_first_step:
      on_first_step(dict(row))
    if passes:
      row["top_events"] = pass_times(pathlib.Path(d), top)
  if steps:  # step time after warm-up: the median of 5 loops of `steps` steps
    state, _ = run_steps(compiled, state, 3)
    times = []
    for _ in range(5):
      state, sec = run_steps(compiled, state, steps)
      times.append(sec)
    row["step_ms"] = sorted(times)[2] * 1e3
  return row


def measure_isolated(spec, impl, args) -> dict:
  """``measure`` in a process of its own (nothing compiled or autotuned before it), stopped after
  ``--spec_timeout_s``; a stopped spec keeps the timings of its first step if it got that far."""
  with tempfile.TemporaryDirectory() as d:
    row_file = pathlib.Path(d) / "row.json"
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--mixers", spec, "--impls", impl,
           "--depth", str(args.depth), "--batch", str(args.batch), "--dtype", args.dtype,
           "--steps", str(args.steps), "--row_out", str(row_file)] + (["--passes"] if args.passes else [])
    t = time.perf_counter()
    try:
      proc = subprocess.run(cmd, timeout=args.spec_timeout_s, capture_output=True, text=True, check=False)
      status = "finished" if proc.returncode == 0 else f"failed (exit {proc.returncode}): {proc.stderr[-400:]}"
    except subprocess.TimeoutExpired:
      status = f"stopped after --spec_timeout_s {args.spec_timeout_s:g} s"
    row = json.loads(row_file.read_text()) if row_file.exists() else {"mixer": spec, "impl": impl}
  row.update(process="own", process_s=time.perf_counter() - t, status=status)
  return row


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="")
  ap.add_argument("--depth", type=int, default=56)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--dtype", default="bfloat16")
  ap.add_argument("--mixers", default=";".join(MIXERS), help="';'-separated specs; the first one is compiled first")
  ap.add_argument("--impls", default="reduce", help="',' separated: reduce, stacked, slots")
  ap.add_argument("--passes", action="store_true", help="profile each compilation and report its longest passes")
  ap.add_argument("--steps", type=int, default=0, help="also time the step: median of 5 loops of this many")
  ap.add_argument("--tag", default="")
  ap.add_argument("--isolate", action="store_true",
                  help="each spec in a process of its own: its first step with its own convolution autotuning, "
                       "as a training run sees it (default: one process, later specs reuse earlier autotuning)")
  ap.add_argument("--spec_timeout_s", type=float, default=600, help="with --isolate: stop a spec's process after")
  ap.add_argument("--row_out", default="", help=argparse.SUPPRESS)  # --isolate's child: where its row goes
  args = ap.parse_args()
  if args.isolate and args.row_out:
    raise SystemExit("--isolate and --row_out exclude each other")
  dtype = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}[args.dtype]
  device = jax.devices()[0]
  kind = getattr(device, "device_kind", device.platform)
  result = {"device": kind, "jax": jax.__version__, "command": " ".join(sys.argv),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "rows": []}
  path = None
  if args.out:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind)
    path = pathlib.Path(args.out) / f"compile_time_{name}{'_' + args.tag if args.tag else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
  def write_row(row):
    pathlib.Path(args.row_out).write_text(json.dumps(row))

  for spec in args.mixers.split(";"):
    for impl in args.impls.split(","):
      if args.isolate:
        row = measure_isolated(spec, impl, args)
      else:
        row = measure(spec, impl, args.depth, args.batch, dtype, args.passes, args.steps,
                      on_first_step=write_row if args.row_out else None)
        if args.row_out:
          write_row(row)
      result["rows"].append(row)
      if "first_step_s" not in row:  # an isolated spec stopped or failed before its first step
        print(f"{spec:24s} {impl:8s} no first step: {row.get('status')}", flush=True)
      else:
        print(f"{spec:24s} {impl:8s} lower {row['lower_s']:6.1f} s  compile {row['compile_s']:6.1f} s  "
              f"first step {row['first_step_s']:6.1f} s  {row['fusions']} fusions  "
              f"{row['matmuls']} matmuls of {row['matmul_shapes']} shapes"
              + (f"  {row['step_ms']:.3f} ms/step" if "step_ms" in row else "")
              + (f"  [own process, {row['status']}]" if args.isolate else ""), flush=True)
      for name, sec, n in row.get("top_events", [])[:8]:
        print(f"    {sec:8.2f} s  x{n:<4d} {name}", flush=True)
      if path:
        save_result(path, result, indent=2)
  if path:
    print("wrote", path)
  return result


if __name__ == "__main__":
  main()
