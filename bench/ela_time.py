r"""ELA: the fraction of layer-attention time a skip set removes (CIFAR ResNet, one process, interleaved).

Layer-attention time of a mixer = its ResNet's train-step time minus the plain residual ResNet's (issue 16).
For each spec ``mixer:...,skip=S`` the removed fraction is

.. math:: \frac{T(\text{mixer}) - T(\text{mixer, skip } S)}{T(\text{mixer}) - T(\text{residual})} .

The steps are :func:`bench.depth.make_step`'s (one jitted SGD-momentum step, bf16 compute, random batch);
every spec is compiled first (until ``--compile-budget`` seconds have gone: later specs are dropped and
listed), then ``--rounds`` rounds time each spec in turn for ``--loop`` steps (medians over rounds).
``skip=half`` is every second block of blocks 3 .. n per stage (:func:`bench.depth.skip_layers`).
``xla=PRESET`` (bench/xla_presets.py, e.g. ``cmdbuf``: CUDA graphs) compiles a spec with other XLA options; its
layer-attention time is then measured against ``residual:xla=PRESET``, which must be among the specs;
``steps=N`` runs N updates per call in a ``lax.scan`` (times reported per update; baseline
``residual:xla=PRESET,steps=N``, options in that order).

  python3 bench/ela_time.py --out bench/results                 # on a GPU
  python3 bench/ela_time.py --quick                             # smoke test (CPU)
"""

from __future__ import annotations

import argparse
import pathlib
import re
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
try:
  import grain  # noqa: F401  pylint: disable=unused-import
except ImportError:  # the GPU machine has no grain: load aila_jax.train.state without the package's trainer
  import types  # pylint: disable=g-import-not-at-top
  _train = types.ModuleType("aila_jax.train")
  _train.__path__ = [str(pathlib.Path(__file__).resolve().parents[1] / "aila_jax" / "train")]
  sys.modules["aila_jax.train"] = _train
import depth as bench_depth  # noqa: E402  (bench/depth.py)
from bench.results_io import save_result  # noqa: E402  (atomic; long tables into NAME.curves.npz)

jax = bench_depth.jax
jnp = bench_depth.jnp

SPECS = "residual;mrla_base;mrla_base:skip=half;mrla_base:skip=half,skip_append=False;aila2;aila2:skip=half"


def base_spec(spec: str) -> str:
  """The spec without its skip options (the unpruned network it is compared with)."""
  name, _, opts = spec.partition(":")
  kept = [o for o in filter(None, opts.split(",")) if not o.startswith(("skip=", "skip_append="))]
  return name + (":" + ",".join(kept) if kept else "")


def residual_spec(spec: str) -> str:
  """The plain residual compiled like ``spec`` (same ``xla=`` preset): the baseline of its layer-attention time."""
  same = [o for o in spec.partition(":")[2].split(",") if o.startswith(("xla=", "steps="))]
  return "residual" + (":" + ",".join(same) if same else "")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--depth", type=int, default=56)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--rounds", type=int, default=7)
  ap.add_argument("--loop", type=int, default=20)
  ap.add_argument("--dtype", default="bfloat16")
  ap.add_argument("--specs", default=SPECS, help="';'-separated specs; the first must be 'residual'")
  ap.add_argument("--compile-budget", type=float, default=1e9, help="seconds; later specs are not compiled")
  ap.add_argument("--tag", default="")
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--cost", action="store_true",
                  help="no timing: XLA's cost analysis (flops, bytes accessed) of each compiled step, on any backend")
  args = ap.parse_args()
  if args.quick:
    args.depth, args.batch, args.rounds, args.loop = 26, 4, 2, 2  # depth 20 has no block for skip=half
  dtype = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}[args.dtype]
  specs = args.specs.split(";")
  if specs[0].partition(":")[0] != "residual":
    raise SystemExit("--specs: the first spec must be 'residual' (the baseline of layer-attention time)")
  device = jax.devices()[0]
  kind = getattr(device, "device_kind", device.platform)
  if args.cost:
    return cost(args, specs, dtype, kind)
  t0 = time.perf_counter()
  runs, dropped = [], []
  for spec in specs:
    if time.perf_counter() - t0 > args.compile_budget:
      dropped.append(spec)
      continue
    step, state, n_params = bench_depth.make_step(spec, args.depth, args.batch, dtype)
    state, compile_s = bench_depth.run_steps(step, state, 1)
    state, _ = bench_depth.run_steps(step, state, 3)
    runs.append({"spec": spec, "step": step, "state": state, "params": n_params, "compile_s": compile_s,
                 "times": []})
    print(f"{spec:45s} compiled in {compile_s:6.1f} s ({n_params:,} params)", flush=True)
  for _ in range(args.rounds):
    for r in runs:
      r["state"], sec = bench_depth.run_steps(r["step"], r["state"], args.loop)
      r["times"].append(sec)
  ms = {r["spec"]: statistics.median(r["times"]) * 1e3 / bench_depth.updates_per_call(r["spec"]) for r in runs}
  rows = []
  for r in runs:
    spec = r["spec"]
    row = {"spec": spec, "params": r["params"], "step_ms": ms[spec], "compile_s": r["compile_s"],
           "round_ms": [t * 1e3 for t in r["times"]],
           "ratio_vs_residual": ms[spec] / ms[residual_spec(spec)] if residual_spec(spec) in ms else None}
    if "skip=" in spec:
      name, kwargs = bench_depth.parse_mixer(spec)
      row["skip_layers"] = list(bench_depth.skip_layers(kwargs["skip"], args.depth))
      base = base_spec(spec)
      res = residual_spec(spec)
      if base in ms and res in ms:
        attention_ms = ms[base] - ms[res]
        row.update(unpruned=base, baseline=res, layer_attention_ms=attention_ms,
                   layer_attention_ms_with_skips=ms[spec] - ms[res],
                   removed_fraction_of_layer_attention=(ms[base] - ms[spec]) / attention_ms,
                   step_time_saved_fraction=(ms[base] - ms[spec]) / ms[base])
    rows.append(row)
    extra = (f"  removes {row['removed_fraction_of_layer_attention']:.1%} of {row['layer_attention_ms']:.3f} ms "
             f"layer attention" if "removed_fraction_of_layer_attention" in row else "")
    ratio = "" if row["ratio_vs_residual"] is None else f" x{row['ratio_vs_residual']:.3f}"  # no matching residual
    print(f"{spec:45s} {ms[spec]:8.3f} ms/step{ratio}{extra}", flush=True)
  result = {"device": kind, "jax": jax.__version__, "depth": args.depth, "batch": args.batch, "dtype": args.dtype,
            "rounds": args.rounds, "loop": args.loop, "rows": rows, "not_compiled_within_budget": dropped,
            "command": " ".join(sys.argv)}
  if not args.quick:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind)
    path = pathlib.Path(args.out) / f"ela_time_{name}_resnet{args.depth}{'_' + args.tag if args.tag else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_result(path, result, indent=2)
    print("wrote", path)
  return result


def cost(args, specs, dtype, kind):
  """XLA's cost analysis of each spec's compiled step, and the share of the layer-attention flops and bytes
  (mixer minus residual) a skip set removes: a static estimate (fusion differs between backends)."""
  rows = {}
  for spec in specs:
    step, state, n_params = bench_depth.make_step(spec, args.depth, args.batch, dtype)
    t = time.perf_counter()
    ca = step.lower(state).compile().cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    rows[spec] = {"spec": spec, "params": n_params, "flops": ca.get("flops"), "bytes_accessed": ca.get("bytes accessed"),
                  "compile_s": time.perf_counter() - t}
    print(spec, rows[spec], flush=True)
  for spec, row in rows.items():
    base = base_spec(spec)
    if "skip=" in spec and base in rows:
      for key in ("flops", "bytes_accessed"):
        attention = rows[base][key] - rows["residual"][key]
        row[f"removed_fraction_of_layer_attention_{key}"] = (rows[base][key] - row[key]) / attention
      print(spec, {k: round(v, 4) for k, v in row.items() if k.startswith("removed")}, flush=True)
  result = {"backend": kind, "jax": jax.__version__, "depth": args.depth, "batch": args.batch, "dtype": args.dtype,
            "what": "XLA cost_analysis of the compiled train step (static estimate, not a timing)",
            "rows": list(rows.values()), "command": " ".join(sys.argv)}
  if not args.quick:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind)
    path = pathlib.Path(args.out) / f"ela_cost_{name}_resnet{args.depth}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_result(path, result, indent=2)
    print("wrote", path)
  return result


if __name__ == "__main__":
  main()
