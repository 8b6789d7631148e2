r"""Train-step time of every depth mixer on the same CIFAR ResNet, against the residual baseline.

For each mixer (``residual``, ``dense``, ``aila1``, ``aila2``, ``mrla_base``,
``mrla_light``) and depth, one jitted SGD-momentum training step (forward,
backward, update, BatchNorm statistics) of ``cifar_resnet`` on a batch of
random 32x32x3 images, bf16 compute with float32 parameters, synchronised with
``block_until_ready``. The ratio column is step time / baseline step time at
the same depth (the issue's target: <= 1.10). ``--mixers`` takes
``;``-separated specs with options (``"residual;mrla_light:value_conv=conv"``),
the first one the baseline of the ratios.

By default (``--interleave 5``) every mixer is compiled first, then the mixers
are timed in turn, ``--loop`` steps each, for 5 rounds, and each time is the
median over the rounds: a machine that drifts (clocks, a busy host) slows all
mixers alike. On an H200 the same ResNet-20 residual step, timed one mixer
after another, measured 2.1 and 2.9 ms within one session. ``--interleave 0``
times the mixers one after another instead (median over ``--reps`` loops), then
the baseline again, and stores ``ratio_vs_best_baseline`` against the faster of
its two timings.

The peer, in the same process: a plain PyTorch CIFAR ResNet of the same
depth (BasicBlocks, projection shortcuts, written here from He et al. 2016),
trained with ``torch.optim.SGD`` under bf16 autocast, channels-last; reported
as ``torch_residual`` with its ratio to our residual step.

  python3 bench/depth.py --out bench/results            # on a GPU
  python3 bench/depth.py --quick                        # smoke test (CPU)

Writes ``depth_<device>[_<tag>].json`` into ``--out``, rewritten after every row
(``complete`` turns true at the end), so a run stopped early keeps its rows.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")  # room for torch
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from aila_jax import models  # noqa: E402
from bench.sgd_step import sgd_bn_step  # noqa: E402
from bench import xla_presets  # noqa: E402  (spec option xla=PRESET)
from bench.results_io import save_result  # noqa: E402  (JSON summary + .curves.npz for long tables)

try:
  import torch  # noqa: E402
except ImportError:
  torch = None

MIXERS = ("residual", "dense", "aila1", "aila2", "mrla_base", "mrla_light")


def run_steps(step, state, n):
  """``n`` steps of ``step``, synchronised at the end: ``(state, seconds per step)``."""
  t = time.perf_counter()
  for _ in range(n):
    state = step(state)
  jax.block_until_ready(state)
  return state, (time.perf_counter() - t) / n


def time_fn(step, state, reps, loop):
  """Median over ``reps`` loops of ``loop`` steps (after 3 warm-up steps) of the time per step."""
  state, _ = run_steps(step, state, 3)
  times = []
  for _ in range(reps):
    state, sec = run_steps(step, state, loop)
    times.append(sec)
  return statistics.median(times)


def parse_mixer(spec):
  """'mrla_light:value_conv=conv,dim_per_head=16' -> ('mrla_light', {'value_conv': 'conv', 'dim_per_head': 16}).

  ``True``/``False`` become bools. ``skip=...`` is the model's ELA skip set, not a mixer option (see
  :func:`skip_layers`); ``xla=PRESET`` compiles the step with bench/xla_presets.py's compiler options;
  ``steps=N`` runs N updates per call in a ``lax.scan`` (times are per call: divide by N, as
  :func:`updates_per_call` says).
  """
  name, _, opts = spec.partition(":")
  kwargs = {}
  for item in filter(None, opts.split(",")):
    key, _, value = item.partition("=")
    kwargs[key] = int(value) if value.lstrip("-").isdigit() else {"True": True, "False": False}.get(value, value)
  return name, kwargs


def updates_per_call(spec: str) -> int:
  """The ``steps=N`` option of ``spec`` (1 without it): training updates per call of its step."""
  return int(parse_mixer(spec)[1].get("steps", 1))


def skip_layers(value, depth, stages=3):
  """An ELA skip set for a CIFAR ResNet of ``depth``: ``'half'`` = every second block of blocks 3 .. n of each
  stage (blocks 4, 6, 8 of n = 9: 9 of the 21 blocks ELA may skip, under its default cap of 10), else block
  names joined by ``+`` (``'stage_0/block_3+stage_1/block_5'``)."""
  if value != "half":
    return tuple(value.split("+"))
  n = models.depth_backbones.cifar_blocks_per_stage(depth, "basic")
  names = tuple(f"stage_{s}/block_{t}" for s in range(stages) for t in list(range(3, n + 1))[1::2])
  if not names:
    raise ValueError(f"skip=half: a depth-{depth} CIFAR ResNet ({n} blocks per stage) has no block to skip")
  return names


def make_step(spec, depth, batch, dtype):
  """(jitted SGD step on a random batch, initial state, parameter count) for mixer ``spec``."""
  mixer, mixer_kwargs = parse_mixer(spec)
  skip = skip_layers(mixer_kwargs.pop("skip"), depth) if "skip" in mixer_kwargs else ()
  xla = xla_presets.options(mixer_kwargs.pop("xla", "default"))  # 'residual:xla=cmdbuf'
  steps_per_call = int(mixer_kwargs.pop("steps", 1))  # 'residual:steps=8': 8 updates per call (lax.scan)
  model = models.get_model("cifar_resnet", num_classes=10, depth=depth, mixer=mixer, mixer_kwargs=mixer_kwargs,
                           dtype=dtype, skip_layers=skip)
  rng = jax.random.PRNGKey(0)
  x = jax.random.normal(rng, (batch, 32, 32, 3), jnp.float32)
  y = jax.random.randint(rng, (batch,), 0, 10)
  variables = model.init(rng, x[:2], train=False)
  return sgd_bn_step(model, variables, x, y, weight_decay=1e-4, rngs={"dropout": rng}, compiler_options=xla,
                     steps_per_call=steps_per_call)


def bench_interleaved(specs, depth, batch, rounds, loop, dtype):
  """Every mixer compiled first, then ``rounds`` rounds timing each mixer in turn (``loop`` steps each).

  Slow drifts of the machine (clocks warming up, a busy host) then fall on every
  mixer alike; each mixer's time is the median over the rounds, and its ratio is
  to the first spec's median.
  """
  runs = []
  for spec in specs:
    step, state, n_params = make_step(spec, depth, batch, dtype)
    state, compile_s = run_steps(step, state, 1)
    runs.append({"spec": spec, "step": step, "state": state, "params": n_params, "compile_s": compile_s,
                 "times": []})
    print(f"depth {depth:3d} {spec:28s} compiled in {compile_s:.1f} s", flush=True)
  for r in runs:
    r["state"], _ = run_steps(r["step"], r["state"], 3)
  for _ in range(rounds):
    for r in runs:
      r["state"], sec = run_steps(r["step"], r["state"], loop)
      r["times"].append(sec)
  base = statistics.median(runs[0]["times"])
  rows = []
  for r in runs:
    sec = statistics.median(r["times"])
    rows.append({"mixer": r["spec"], "depth": depth, "params": r["params"], "step_ms": sec * 1e3,
                 "images_per_s": batch / sec, "compile_s": r["compile_s"], "ratio_vs_residual": sec / base,
                 "round_ms": [t * 1e3 for t in r["times"]], "interleaved_rounds": rounds})
    del r["state"]
  return rows


def bench_mixer(spec, depth, batch, reps, loop, dtype):
  step, state, n_params = make_step(spec, depth, batch, dtype)
  state, compile_s = run_steps(step, state, 1)
  sec = time_fn(step, state, reps, loop)
  return {"mixer": spec, "depth": depth, "params": n_params, "step_ms": sec * 1e3,
          "images_per_s": batch / sec, "compile_s": compile_s}


def torch_resnet(depth, num_classes=10):
  nn = torch.nn

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.b1 = nn.BatchNorm2d(cout)
      self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.b2 = nn.BatchNorm2d(cout)
      self.short = None
      if stride != 1 or cin != cout:
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
      h = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
      return torch.relu(h + (x if self.short is None else self.short(x)))

  n = (depth - 2) // 6
  layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
  cin = 16
  for s, w in enumerate((16, 32, 64)):
    for t in range(n):
      layers.append(Block(cin, w, 2 if (s > 0 and t == 0) else 1))
      cin = w
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
  return nn.Sequential(*layers)


def bench_torch(depth, batch, reps, loop):
  dev = "cuda"
  model = torch_resnet(depth).to(dev).to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
  x = torch.randn(batch, 3, 32, 32, device=dev).to(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (batch,), device=dev)

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
      loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  for _ in range(5):
    step()
  torch.cuda.synchronize()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    for _ in range(loop):
      step()
    torch.cuda.synchronize()
    times.append((time.perf_counter() - t) / loop)
  sec = statistics.median(times)
  return {"mixer": "torch_residual", "depth": depth, "params": sum(p.numel() for p in model.parameters()),
          "step_ms": sec * 1e3, "images_per_s": batch / sec}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--depths", default="20,56")
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--loop", type=int, default=20)
  ap.add_argument("--dtype", default="bfloat16")
  ap.add_argument("--mixers", default=";".join(MIXERS),
                  help="';'-separated mixer specs, the first the baseline (name or name:key=value,...)")
  ap.add_argument("--tag", default="", help="suffix of the JSON file name")
  ap.add_argument("--interleave", type=int, default=5,
                  help="rounds: compile every mixer first, then time them in turn for this many rounds "
                       "(medians; robust to drift); 0: one mixer after the other")
  ap.add_argument("--quick", action="store_true")
  args = ap.parse_args()
  if args.quick:
    args.depths, args.batch, args.reps, args.loop = "8", 4, 2, 2
  dtype = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}[args.dtype]
  device = jax.devices()[0]
  name = re.sub(r"[^A-Za-z0-9_.-]+", "-", getattr(device, "device_kind", device.platform))
  result = {"device": getattr(device, "device_kind", device.platform), "jax": jax.__version__,
            "torch": getattr(torch, "__version__", None), "batch": args.batch, "dtype": args.dtype,
            "complete": False, "rows": []}
  path = pathlib.Path(args.out) / f"depth_{name}{'_' + args.tag if args.tag else ''}.json"

  def add(row):  # the JSON is rewritten after every row: a run cut short keeps what it measured
    result["rows"].append(row)
    if not args.quick:
      path.parent.mkdir(parents=True, exist_ok=True)
      save_result(path, result, indent=2)

  result["interleave"] = args.interleave
  result["xla_flags"] = os.environ.get("XLA_FLAGS", "")
  for depth in (int(d) for d in args.depths.split(",")):
    if args.interleave:
      rows = bench_interleaved(args.mixers.split(";"), depth, args.batch, args.interleave, args.loop, dtype)
      for r in rows:
        add(r)
        print(f"depth {depth:3d} {r['mixer']:28s} {r['params']:>9,d} params  {r['step_ms']:8.3f} ms/step  "
              f"x{r['ratio_vs_residual']:.3f}  (rounds {min(r['round_ms']):.3f}..{max(r['round_ms']):.3f})",
              flush=True)
      base = rows[0]["step_ms"]
    else:
      base = _sequential(args, depth, dtype, add, result["rows"])
    if torch is not None and torch.cuda.is_available() and not args.quick:
      r = bench_torch(depth, args.batch, args.reps, args.loop)
      r["ratio_vs_residual"] = r["step_ms"] / base
      add(r)
      print(f"depth {depth:3d} {'torch_resid.':12s} {r['params']:>9,d} params  {r['step_ms']:8.3f} ms/step  "
            f"x{r['ratio_vs_residual']:.3f} (ours residual = 1)", flush=True)
  result["complete"] = True
  if not args.quick:
    save_result(path, result, indent=2)
    print("wrote", path)
  return result


def _sequential(args, depth, dtype, add, rows):
  """Each mixer compiled and timed in turn, then the baseline timed again; returns the first baseline time."""
  base = None
  for i, mixer in enumerate(args.mixers.split(";")):
    r = bench_mixer(mixer, depth, args.batch, args.reps, args.loop, dtype)
    base = r["step_ms"] if i == 0 else base
    r["ratio_vs_residual"] = r["step_ms"] / base
    add(r)
    print(f"depth {depth:3d} {mixer:12s} {r['params']:>9,d} params  {r['step_ms']:8.3f} ms/step  "
          f"x{r['ratio_vs_residual']:.3f}  (compile {r['compile_s']:.1f} s)", flush=True)
  # The baseline once more at the end: a GPU that was still clocking up (or autotuning) during the first
  # row would otherwise inflate the baseline and flatter every ratio. Ratios against the faster of the
  # two baseline timings are stored as 'ratio_vs_best_baseline'.
  first = args.mixers.split(";")[0]
  again = bench_mixer(first, depth, args.batch, args.reps, args.loop, dtype)
  again["mixer"] = f"{first} (again)"
  best = min(base, again["step_ms"])
  again["ratio_vs_residual"] = again["step_ms"] / base
  add(again)
  print(f"depth {depth:3d} {first + ' again':12s} {again['step_ms']:8.3f} ms/step (first {base:.3f})", flush=True)
  for row in rows:
    if row["depth"] == depth:
      row["ratio_vs_best_baseline"] = row["step_ms"] / best
  return base


if __name__ == "__main__":
  main()
