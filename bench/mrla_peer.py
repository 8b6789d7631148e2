r"""Ours vs the official PyTorch MRLA (github joyfang1106/MRLA) on one GPU: ResNet-50 at 224, batch 128.

Three networks per framework, each a full training step (forward, backward,
SGD with momentum 0.9 and weight decay 1e-4, BatchNorm statistics) on a fixed
random batch:

* ``plain``: the official ``resnet50`` (``resnet/models/resnet.py``) vs our
  ``resnet50_depth`` with ``mixer='residual'``;
* ``mrla_light``: the official ``resnet50_mrlal`` vs ``mixer='mrla_light'``;
* ``mrla_base``: the official ``resnet50_mrlab`` vs ``mixer='mrla_base'`` with
  the official deep stem (``stem='deep'``).

Parameter counts are printed for both sides (they are equal). PyTorch runs
under bf16 autocast with channels-last tensors, eagerly and with
``torch.compile`` (``--torch-modes``); ours is one ``jax.jit`` step, bf16
compute with float32 parameters. Every network is built and warmed up first,
then ``--rounds`` rounds time each network in turn for ``--loop`` steps
(synchronised), and each time is the median over the rounds, so drifts of the
machine fall on all of them alike. Reported per network: images/s and the
relative cost of the mixer, its step time over the plain ResNet-50's step in
the same framework and mode.

The official code is not part of this repository: :func:`fetch_peer` copies
``resnet/`` from a local git mirror or clone (``--mirror``, or
``$AILA_PEER_MIRRORS``: see ``bench/peers.py``) into the ignored folder
``bench/.peers/mrla/`` once; on a machine without the mirror, carry that
folder. It needs ``einops`` (MRLA-base). Its ``models/__init__.py`` names a
``resnet152_mrlal`` that does not exist, so the model files are imported
without running the package's ``__init__``.

  python3 bench/mrla_peer.py --out bench/results          # on a GPU
  python3 bench/mrla_peer.py --smoke                      # CPU: tiny images, 2 steps, nothing written

Writes ``mrla_peer_<device>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")  # room for torch on the same GPU
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bench.results_io import save_result  # noqa: E402  (atomic; long tables into NAME.curves.npz)
from aila_jax import models  # noqa: E402
from bench.sgd_step import sgd_bn_step  # noqa: E402
from bench import peers as peer_mirrors  # noqa: E402
from bench import trace_summary  # noqa: E402

PEER_DIR = ROOT / "bench" / ".peers" / "mrla"
PEER_REPO = "joyfang1106/MRLA"
NETS = {  # name: (official module, official constructor, our model kwargs)
    "plain": ("resnet", "resnet50", {"mixer": "residual"}),
    "mrla_light": ("resnet_mrla_light", "resnet50_mrlal", {"mixer": "mrla_light"}),
    "mrla_base": ("resnet_mrla_base", "resnet50_mrlab", {"mixer": "mrla_base", "stem": "deep"}),
}


def fetch_peer(mirror: str | None = None, dest: pathlib.Path = PEER_DIR) -> pathlib.Path:
  """The official ``resnet/`` folder under ``dest`` (copied from the git mirror once,
  ``bench.peers.mirror_dir``); its commit is recorded."""
  models_dir = dest / "resnet" / "models"
  if not models_dir.is_dir():
    found = peer_mirrors.mirror_dir(PEER_REPO, mirror)
    if found is None or not found.is_dir():
      raise peer_mirrors.missing(PEER_REPO, models_dir, found)
    mirror = str(found)
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", mirror, "archive", "HEAD", "resnet"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    commit = subprocess.run(["git", "-C", mirror, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    (dest / "COMMIT").write_text(commit.stdout)
  return models_dir


def official_constructors(models_dir: pathlib.Path) -> dict:
  """``{net: constructor}`` from the official model files, without the broken ``models/__init__``."""
  sys.path.insert(0, str(models_dir.parent))
  pkg = types.ModuleType("models")
  pkg.__path__ = [str(models_dir)]
  sys.modules["models"] = pkg
  import importlib  # pylint: disable=import-outside-toplevel
  return {net: getattr(importlib.import_module(f"models.{mod}"), ctor) for net, (mod, ctor, _) in NETS.items()}


def run_jax(step, state, n):
  t = time.perf_counter()
  for _ in range(n):
    state = step(state)
  jax.block_until_ready(state)
  return state, (time.perf_counter() - t) / n


def parse_net(spec: str) -> tuple[str, dict[str, str]]:
  """``NAME`` or ``NAME@KEY=VALUE:KEY=VALUE`` (our mixer's options, e.g. ``mrla_light@value_conv=conv``)."""
  name, _, opts = spec.partition("@")
  kwargs = {}
  for opt in filter(None, opts.split(":")):
    key, eq, value = opt.partition("=")
    if not eq or not key:
      raise SystemExit(f"--nets: {spec!r}: expected NAME@KEY=VALUE[:KEY=VALUE...]")
    kwargs[key] = value
  return name, kwargs


def make_ours(net, batch, size, num_classes, dtype):
  """A jitted SGD step of our ResNet-50 for ``net`` (a :func:`parse_net` spec): (step, state, parameter count)."""
  name, mixer_kwargs = parse_net(net)
  kwargs = dict(NETS[name][2], **({"mixer_kwargs": mixer_kwargs} if mixer_kwargs else {}))
  model = models.get_model("resnet50_depth", num_classes=num_classes, dtype=dtype, **kwargs)
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (batch, size, size, 3), jnp.float32)
  y = jax.random.randint(key, (batch,), 0, num_classes)
  variables = model.init(key, x[:2], train=False)
  return sgd_bn_step(model, variables, x, y, weight_decay=1e-4, donate=False)


class TorchRunner:
  """One official network's SGD step, bf16 autocast, channels-last; ``mode`` 'eager' or 'compile'."""

  def __init__(self, ctor, mode, batch, size, num_classes, device):
    import torch  # pylint: disable=import-outside-toplevel
    self.torch = torch
    self.device = device
    self.model = ctor(num_classes=num_classes).to(device).to(memory_format=torch.channels_last)
    self.params = sum(p.numel() for p in self.model.parameters())
    self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    self.x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    self.y = torch.randint(0, num_classes, (batch,), device=device)
    self.fwd = torch.compile(self.model) if mode == "compile" else self.model
    self.autocast = device.startswith("cuda")

  def step(self):
    torch = self.torch
    self.opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda" if self.autocast else "cpu", dtype=torch.bfloat16, enabled=self.autocast):
      loss = torch.nn.functional.cross_entropy(self.fwd(self.x), self.y)
    loss.backward()
    self.opt.step()

  def run(self, n):
    t = time.perf_counter()
    for _ in range(n):
      self.step()
    if self.device.startswith("cuda"):
      self.torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--size", type=int, default=224)
  ap.add_argument("--classes", type=int, default=1000)
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--loop", type=int, default=10)
  ap.add_argument("--nets", default="plain,mrla_light,mrla_base",
                  help="',' separated: plain, mrla_light, mrla_base; NAME@KEY=VALUE:... sets our mixer's options")
  ap.add_argument("--torch-modes", default="eager,compile", help="',' separated: eager, compile ('' for none)")
  ap.add_argument("--mirror", default=None, help="a git mirror or clone of joyfang1106/MRLA "
                  "(default: $AILA_PEER_MIRRORS, see bench/peers.py)")
  ap.add_argument("--tag", default="")
  ap.add_argument("--smoke", action="store_true", help="CPU check: 32x32 images, batch 2, 1 round of 1 step")
  ap.add_argument("--profile", type=int, default=0, metavar="N",
                  help="also trace N steps of each run (ours with jax.profiler, the official code's with "
                       "torch.profiler, keyed NET@torch_MODE); bench/trace_summary.py's summary (busy/span ms, "
                       "kernels per step, time by kernel kind, top kernels) goes into 'profile'")
  args = ap.parse_args()
  if args.smoke:
    args.batch, args.size, args.classes, args.rounds, args.loop = 2, 32, 10, 1, 1
  nets = [n for n in args.nets.split(",") if n]
  unknown = sorted({parse_net(n)[0] for n in nets} - set(NETS))
  if unknown:
    raise SystemExit(f"--nets: unknown {unknown}; expected some of {sorted(NETS)} (with our mixer's options: "
                     "NAME@KEY=VALUE:KEY=VALUE, e.g. mrla_light@value_conv=conv)")
  modes = [m for m in args.torch_modes.split(",") if m]
  if modes and any("@" in n for n in nets):
    raise SystemExit("--nets: NAME@OPTIONS sets our mixer's options only; time those with --torch-modes ''")
  ctors = official_constructors(fetch_peer(args.mirror)) if modes else {}
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    if modes:
      raise SystemExit("--torch-modes needs PyTorch; pass --torch-modes '' to time ours only")
    torch = None
  device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
  if device == "cuda":
    torch.backends.cudnn.benchmark = True
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", dev.platform)
  runs = []  # each: {"framework", "mode", "net", "params", "setup_s", "fn", "times"}
  for net in nets:
    t = time.perf_counter()
    step, state, n_params = make_ours(net, args.batch, args.size, args.classes, jnp.bfloat16)
    if args.profile:  # compiled here, so its HLO names the profiled kernels (trace_summary.hlo_sources)
      step = step.lower(state).compile()
    holder = {"state": state}

    def fn(n, step=step, holder=holder):
      holder["state"], sec = run_jax(step, holder["state"], n)
      return sec

    fn(1)
    runs.append({"framework": "jax", "mode": "jit", "net": net, "params": n_params,
                 "setup_s": time.perf_counter() - t, "fn": fn, "times": [],
                 "hlo": step.as_text() if args.profile else None})
    print(f"ours  {net:11s} {n_params:>11,d} params, first step after {runs[-1]['setup_s']:.1f} s", flush=True)
    for mode in modes:
      t = time.perf_counter()
      r = TorchRunner(ctors[net], mode, args.batch, args.size, args.classes, device)
      r.run(3 if not args.smoke else 1)  # compiles (mode 'compile') and warms up
      runs.append({"framework": "torch", "mode": mode, "net": net, "params": r.params,
                   "setup_s": time.perf_counter() - t, "fn": r.run, "times": []})
      print(f"torch {net:11s} {r.params:>11,d} params, {mode} warm after {runs[-1]['setup_s']:.1f} s", flush=True)
  for r in runs:
    r["fn"](2 if not args.smoke else 1)
  for _ in range(args.rounds):
    for r in runs:
      r["times"].append(r["fn"](args.loop))
  profile = {}
  for r in runs:  # after the timed rounds, so tracing cannot disturb them
    if not args.profile:
      continue
    if r["framework"] == "jax":
      key = r["net"]
      with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
          r["fn"](args.profile)
        try:
          profile[key] = trace_summary.summarize(d, args.profile)
        except Exception as e:  # pylint: disable=broad-except  (no device events: no CUPTI, or a CPU)
          profile[key] = {"error": f"{type(e).__name__}: {e}"}
      got = profile[key]
      sources = trace_summary.hlo_sources(r["hlo"], [k["name"] for k in got.get("top_kernels", [])])
      for k in got.get("top_kernels", []):
        if k["name"] in sources:
          k["hlo"] = sources[k["name"]]
    else:  # the official code's kernels under torch.profiler, summarised by the same kinds
      key = f"{r['net']}@torch_{r['mode']}"
      try:
        profile[key] = trace_summary.profile_torch(r["fn"], args.profile, cuda=device == "cuda")
      except Exception as e:  # pylint: disable=broad-except  (a profile that fails is reported, not fatal)
        profile[key] = {"error": f"{type(e).__name__}: {e}"}
      got = profile[key]
    if "busy_ms_per_step" in got:
      print(f"profile {key:11s} busy {got['busy_ms_per_step']:.2f} ms of a {got['span_ms_per_step']:.2f} ms "
            f"span per step, {got['kernels_per_step']:.0f} kernels; by kind (ms per step): "
            + ", ".join(f"{k} {v['ms_per_step']:.2f}" for k, v in (got.get("categories") or {}).items()), flush=True)
  rows = []
  for r in runs:
    sec = statistics.median(r["times"])
    rows.append({k: r[k] for k in ("framework", "mode", "net", "params", "setup_s")} |
                {"step_ms": sec * 1e3, "images_per_s": args.batch / sec, "round_ms": [t * 1e3 for t in r["times"]]})
  plain = {(r["framework"], r["mode"]): r["step_ms"] for r in rows if r["net"] == "plain"}
  for r in rows:
    base = plain.get((r["framework"], r["mode"]))
    r["relative_cost"] = r["step_ms"] / base if base else None
  print(f"\n{'framework':9s} {'mode':8s} {'net':11s} {'params':>11s} {'ms/step':>9s} {'img/s':>8s} {'x plain':>8s}")
  for r in rows:
    rel = f"{r['relative_cost']:.3f}" if r["relative_cost"] else "-"
    print(f"{r['framework']:9s} {r['mode']:8s} {r['net']:11s} {r['params']:>11,d} {r['step_ms']:9.2f} "
          f"{r['images_per_s']:8.0f} {rel:>8s}")
  summary = {}
  for net in nets:
    if net == "plain":
      continue
    ours = next((r for r in rows if r["framework"] == "jax" and r["net"] == net), None)
    theirs = [r for r in rows if r["framework"] == "torch" and r["net"] == net]
    if ours and theirs:
      best = max(theirs, key=lambda r: r["images_per_s"])
      best_rel = min((r["relative_cost"] for r in theirs if r["relative_cost"]), default=None)
      summary[net] = {"ours_images_per_s": ours["images_per_s"], "official_best_images_per_s": best["images_per_s"],
                      "throughput_ratio": ours["images_per_s"] / best["images_per_s"],
                      "ours_relative_cost": ours["relative_cost"], "official_best_relative_cost": best_rel,
                      "overhead_ratio": ((ours["relative_cost"] - 1) / (best_rel - 1)
                                         if ours["relative_cost"] and best_rel and best_rel > 1 else None)}
      fmt = lambda v: "-" if v is None else f"{v:.3f}"  # no relative cost without the plain network timed
      print(f"{net}: ours {summary[net]['throughput_ratio']:.2f}x the official best images/s; relative cost "
            f"{fmt(ours['relative_cost'])} vs official best {fmt(best_rel)}", flush=True)
  result = {"device": kind, "torch_device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "jax": jax.__version__, "torch": getattr(torch, "__version__", None), "batch": args.batch,
            "size": args.size,
            "classes": args.classes, "rounds": args.rounds, "loop": args.loop, "dtype": "bfloat16",
            "official_commit": (PEER_DIR / "COMMIT").read_text().strip() if (PEER_DIR / "COMMIT").exists() else None,
            "command": " ".join(sys.argv), "rows": rows, "summary": summary}
  if profile:
    result["profile"] = profile
  if not args.smoke:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind)
    path = pathlib.Path(args.out) / f"mrla_peer_{name}{'_' + args.tag if args.tag else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_result(path, result, indent=2)
    print("wrote", path)
  return result


if __name__ == "__main__":
  main()
