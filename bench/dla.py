r"""DLA training throughput: ours (JAX) and the PyTorch peers on the same GPU in one run (issue 15, item 8).

Workloads (a fixed random batch on the device, one full training step: forward,
backward, SGD-momentum update, BatchNorm statistics):

* ``dla34_224_b128``: ImageNet DLA-34 at 224x224, batch 128, 1000 classes:
  ours (``get_model('dla34')``) vs timm's ``dla34``;
* ``cifar_dla_b128`` and ``cifar_dla_b512``: the CIFAR DLA at 32x32, 10
  classes: ours (``cifar_dla``) vs kuangliu/pytorch-cifar's ``models/dla.py``.

Ours: bf16 compute with float32 parameters, ``jax.jit`` with the state donated,
optax ``add_decayed_weights(5e-4)`` + ``sgd(0.1, momentum=0.9)`` (the CIFAR
recipe). Peers: ``torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=5e-4)``,
bf16 autocast, channels-last, ``torch.backends.cudnn.benchmark = True`` (as
the peers' own training scripts; ``--no_cudnn_benchmark`` leaves it off),
eager and ``torch.compile`` (the model compiled; by default both in its default mode and with
``mode='reduce-overhead'``, CUDA graphs: in ``bench/dla_cifar.py`` that mode trained the kuangliu DLA at
19.4-19.7k img/s on an H100, against 5,978 img/s for the same peer in an earlier run without it). Ours also with ``K`` updates per call
(``--ours_xla PRESET@K``, a ``lax.scan`` as the trainer's ``config.steps_per_call``; times are per update).
``first_step_s`` is the wall time of the first step, or first call of ``K`` updates (compilation,
autotuning and one step). All variants are compiled and warmed up first, then
timed in ``--rounds`` interleaved rounds of ``--loop`` steps each (so drifts
of the machine fall on all alike); a variant's step time is the median over
the rounds. Per workload: ``ratio`` = our images/s / the faster peer variant's.

Then, if ``--budget_s`` leaves time, ``--cifar_epochs`` epochs of
``configs/cifar10_dla.py`` (``cifar_dla``, the peer's recipe with the cosine
over those epochs) through our full trainer with the grain pipeline on the
real CIFAR-10 in ``--data_dir`` (``$AILA_DATA_DIR``): final test accuracy,
training images/s after the first step (pipeline included) and the first
step's seconds. ``--cifar_train N`` keeps the first N training images (the
GPU machine's upload limit cannot take all 50,000 beside the checkout).

The kuangliu peer's file is copied at run time from its fetched mirror into
``--peers`` (default ``bench/.peers``, git-ignored; never committed):

  python3 bench/dla.py --peers bench/.peers --prepare_only           # here: copy the peer file
  python3 bench/dla.py --out bench/results --budget_s 480            # GPU machine (bench/.peers carried)
  python3 bench/dla.py --smoke                                       # CPU: tiny sizes, every code path

H200 results (bench/results): ``dla_NVIDIA-H200_run1.json`` (ours and the peers, cudnn.benchmark off for
the peers; ``--budget_s 330 --cifar_epochs 2 --set worker_count=8``, the CIFAR run skipped by the budget)
and ``dla_NVIDIA-H200_peers_cudnn_benchmark.json`` (``--skip_ours --no_compile --cifar_epochs 0``).

Writes ``dla_<device>[_<tag>].json`` into ``--out`` (and ``$OUT`` if set), rewritten after every phase.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")  # room for PyTorch in the same process
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.results_io import save_result  # noqa: E402  (atomic; long tables into NAME.curves.npz)
from aila_jax import models  # noqa: E402
from bench.sgd_step import sgd_bn_step  # noqa: E402
from bench import peers as peer_mirrors  # noqa: E402
from bench import trace_summary, xla_presets  # noqa: E402

try:
  import torch  # noqa: E402
except ImportError:
  torch = None

PEER_REPO = "kuangliu/pytorch-cifar"
PEER_FILE = "kuangliu_dla.py"

# workload -> (our model, timm name or 'kuangliu', image side, batch, classes)
WORKLOADS = {
    "dla34_224_b128": ("dla34", "timm:dla34", 224, 128, 1000),
    "cifar_dla_b128": ("cifar_dla", "kuangliu", 32, 128, 10),
    "cifar_dla_b512": ("cifar_dla", "kuangliu", 32, 512, 10),
}
SMOKE = {
    "dla34_64_b2": ("dla34", "timm:dla34", 64, 2, 10),
    "cifar_dla_b2": ("cifar_dla", "kuangliu", 32, 2, 10),
}


def ensure_peer(peers: pathlib.Path, mirror: str | None = None) -> pathlib.Path:
  """``peers/kuangliu_dla.py``: kuangliu/pytorch-cifar's ``models/dla.py``, copied from its git mirror
  (``bench.peers.mirror_dir``; ``git show HEAD:models/dla.py``) if not already there. Raises
  FileNotFoundError saying what to do."""
  path = peers / PEER_FILE
  if path.exists():
    return path
  mirror = peer_mirrors.mirror_dir(PEER_REPO, mirror)
  if mirror is None or (not (mirror / "HEAD").exists() and not (mirror / ".git").exists()):
    raise peer_mirrors.missing(PEER_REPO, path, mirror)
  text = subprocess.run(["git", "-C", str(mirror), "show", "HEAD:models/dla.py"], check=True,
                        capture_output=True, text=True).stdout
  peers.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def load_peer(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location("kuangliu_dla", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# --------------------------------------------------------------------------- ours

def make_ours(model_name, side, batch, classes, dtype=jnp.bfloat16, compiler_options=None, steps_per_call=1):
  """(jitted donated SGD step, state, parameter count) of our model on a fixed random batch; ``steps_per_call``
  updates per call (a ``lax.scan``, as the trainer's ``config.steps_per_call``)."""
  model = models.get_model(model_name, num_classes=classes, dtype=dtype)
  rng = jax.random.PRNGKey(0)
  x = jax.random.normal(rng, (batch, side, side, 3), jnp.float32)
  y = jax.random.randint(rng, (batch,), 0, classes)
  variables = jax.jit(functools.partial(model.init, train=False))(rng, x[:2])
  return sgd_bn_step(model, variables, x, y, weight_decay=5e-4, compiler_options=compiler_options,
                     steps_per_call=steps_per_call)


def ours_variant(spec: str) -> tuple[str, str, int]:
  """``'PRESET'`` or ``'PRESET@K'`` (an XLA preset of bench/xla_presets.py, K updates per call) -> (label,
  preset, K): ``'default'`` is labelled ``ours``, others ``ours_<preset>``, with ``_x<K>`` when K > 1."""
  preset, _, k = spec.partition("@")
  xla_presets.options(preset)  # ValueError naming the presets
  if k and (not k.isdigit() or int(k) < 1):
    raise ValueError(f"--ours_xla: {spec!r}: expected PRESET or PRESET@K with K >= 1 updates per call")
  k = int(k or 1)
  label = "ours" if preset == "default" else f"ours_{preset}"
  return label + (f"_x{k}" if k > 1 else ""), preset, k


class Ours:
  def __init__(self, model_name, side, batch, classes, xla="default", steps_per_call=1):
    self.k = steps_per_call
    self.step, self.state, self.params = make_ours(model_name, side, batch, classes,
                                                   compiler_options=xla_presets.options(xla),
                                                   steps_per_call=steps_per_call)

  def run(self, n):
    """Seconds per update over at least ``n`` updates (whole calls of ``steps_per_call``)."""
    calls = max(1, -(-n // self.k))
    t = time.perf_counter()
    for _ in range(calls):
      self.state = self.step(self.state)
    jax.block_until_ready(self.state)
    return (time.perf_counter() - t) / (calls * self.k)

  def close(self):
    self.state = None


# --------------------------------------------------------------------------- peers

class Peer:
  """A PyTorch training step under bf16 autocast, channels-last, eager or ``torch.compile``d."""

  def __init__(self, peer, side, batch, classes, compiled, device, peers_dir, compile_mode=None):
    if peer.startswith("timm:"):
      import timm
      model = timm.create_model(peer[5:], pretrained=False, num_classes=classes)
    else:
      model = load_peer(ensure_peer(peers_dir)).DLA(num_classes=classes)
    self.device = device
    model = model.to(device).to(memory_format=torch.channels_last).train()
    self.params = sum(p.numel() for p in model.parameters())
    self.opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    self.model = torch.compile(model, mode=compile_mode) if compiled else model
    g = torch.Generator(device="cpu").manual_seed(0)
    self.x = torch.randn(batch, 3, side, side, generator=g).to(device).to(memory_format=torch.channels_last)
    self.y = torch.randint(0, classes, (batch,), generator=g).to(device)

  def _step(self):
    self.opt.zero_grad(set_to_none=True)
    with torch.autocast(self.device, dtype=torch.bfloat16):
      loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
    loss.backward()
    self.opt.step()

  def run(self, n):
    t = time.perf_counter()
    for _ in range(n):
      self._step()
    if self.device == "cuda":
      torch.cuda.synchronize()
    return (time.perf_counter() - t) / n

  def close(self):
    self.model = self.opt = self.x = self.y = None


# --------------------------------------------------------------------------- CIFAR with the pipeline

def subset_cifar(src: pathlib.Path, dst: pathlib.Path, n_train: int, n_test: int = 0) -> None:
  """``dst/cifar10_jpeg_bytes.npz``: the first ``n_train`` training images of ``src`` (the original CIFAR-10
  order, classes mixed) and the test set, or ``n_test`` evenly spaced test images if > 0 (the offline test
  split is sorted by class)."""
  with np.load(src / "cifar10_jpeg_bytes.npz") as z:
    arrays = {k: z[k] for k in z.files}
  for split, n in (("train", n_train), ("test", n_test)):
    if n:
      total = len(arrays[f"y_{split}"])
      idx = np.arange(n) if split == "train" else np.linspace(0, total - 1, n).astype(int)
      off, data = arrays[f"{split}_offsets"], arrays[f"{split}_jpeg"]
      blobs = [data[off[i]:off[i + 1]] for i in idx]
      arrays[f"{split}_jpeg"] = np.concatenate(blobs)
      arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
      arrays[f"y_{split}"] = arrays[f"y_{split}"][idx]
  dst.mkdir(parents=True, exist_ok=True)
  np.savez(dst / "cifar10_jpeg_bytes.npz", **arrays)


def cifar_run(args, data_dir, epochs, batch=128):
  """``epochs`` epochs of configs/cifar10_dla.py through train_and_evaluate: accuracy and pipeline images/s.

  ``images_per_s_after_first_step`` divides the updates after the first call by the trainer's
  ``train_seconds`` less its first call, which include the evaluations run inside the loop (every epoch's but
  the last); ``..._without_evals`` also takes those evaluations' own seconds (``eval/seconds``) out."""
  from aila_jax.train import config_check, train_and_evaluate
  from aila_jax.train.metrics import read_metrics
  from configs import cifar10_dla
  with np.load(pathlib.Path(data_dir) / "cifar10_jpeg_bytes.npz") as z:
    n_train = len(z["y_train"])
  steps_per_epoch = n_train // batch
  config = cifar10_dla.get_config(epochs=epochs)
  config.data_dir = str(data_dir)
  config.batch_size = batch
  config.num_train_steps = epochs * steps_per_epoch
  config.schedule.steps_per_epoch = steps_per_epoch
  config.eval_every = steps_per_epoch
  config.log_every = steps_per_epoch
  config.checkpoint_every = config.num_train_steps
  config.progress = False
  for item in args.set:
    config_check.apply_override(config, item)
  if args.smoke:
    config.model_name, config.model = "cifar_resnet", {"depth": 8, "widths": (4, 4, 4)}
    config.eval_batch_size = 8
  workdir = pathlib.Path(tempfile.mkdtemp(prefix="dla_cifar_"))
  t = time.perf_counter()
  r = train_and_evaluate(config, workdir)
  wall = time.perf_counter() - t
  rows = read_metrics(workdir)
  evals = [{"step": row["step"], "epoch": row["step"] / steps_per_epoch, "accuracy": row["eval/accuracy"]}
           for row in rows if "eval/accuracy" in row]
  loop_eval_s = sum(row.get("eval/seconds", 0.0) for row in rows if "eval/accuracy" in row and row["step"] < r["step"])
  if r.get("preempted"):  # SIGTERM (e.g. the command's timeout): the trainer saved a checkpoint and stopped
    last = (f"last test accuracy {evals[-1]['accuracy']:.4f} at step {evals[-1]['step']}" if evals
            else "no test evaluation yet")
    raise RuntimeError(f"training stopped by SIGTERM at step {r['step']} of {config.num_train_steps} "
                       f"(epoch {r['step'] / steps_per_epoch:.1f} of {epochs}; {last}); its checkpoint is in "
                       f"{workdir}")
  after_first = r["train_seconds"] - r["first_step_seconds"]
  out = {"config": "configs/cifar10_dla.py", "model": config.model_name, "epochs": epochs,
         "train_images": n_train, "steps": r["step"], "batch": batch, "worker_count": config.worker_count,
         "augment_on": config.get("augment_on", "host"), "eval_cache_mb": config.get("eval_cache_mb", 0),
         "final_test_accuracy": r["eval/accuracy"],
         "best_epoch_test_accuracy": max(e["accuracy"] for e in evals) if evals else None,
         "evals": evals, "train_seconds": r["train_seconds"], "first_step_seconds": r["first_step_seconds"],
         "images_per_s_after_first_step": ((r["step"] - r.get("first_call_steps", 1)) * batch / after_first
                                           if after_first > 0 else None),
         "eval_seconds_in_loop": loop_eval_s,
         "images_per_s_after_first_step_without_evals": (
             (r["step"] - r.get("first_call_steps", 1)) * batch / (after_first - loop_eval_s)
             if after_first - loop_eval_s > 0 else None),
         "wall_seconds": wall, "overrides": args.set}
  shutil.rmtree(workdir, ignore_errors=True)
  return out


def _print_profile(name: str, summary: dict) -> None:
  keys = ("kernels_per_step", "busy_ms_per_step", "span_ms_per_step", "idle_fraction")
  print(f"profile {name}: {json.dumps({k: summary.get(k) for k in keys})}", flush=True)


def profile(v: Ours, steps: int, name: str) -> dict:
  """Trace ``steps`` updates of ``v`` (rounded up to whole calls of ``v.k``) and summarise where the device
  time goes (bench/trace_summary.py); the Perfetto trace is kept as ``$OUT/trace_<name>.json.gz`` when
  ``$OUT`` is set."""
  trace_dir = pathlib.Path(tempfile.mkdtemp(prefix="dla_trace_"))
  updates = -(-steps // v.k) * v.k  # whole calls of K updates: per-step figures divide by the updates run
  with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
    v.run(updates)
  process = "/device:GPU" if jax.default_backend() == "gpu" else "/host:CPU"
  summary = trace_summary.summarize(trace_dir, updates, process=process)
  if os.environ.get("OUT"):
    shutil.copy(trace_summary.find_trace(trace_dir), pathlib.Path(os.environ["OUT"]) / f"trace_{name}.json.gz")
  shutil.rmtree(trace_dir, ignore_errors=True)
  _print_profile(name, summary)
  return summary


def profile_peer(v: Peer, steps: int, name: str) -> dict:
  """:func:`profile` for a PyTorch peer: ``steps`` steps under ``torch.profiler`` (CPU and CUDA activity),
  summarised by the same kernel kinds (``trace_summary.profile_torch``); the Chrome trace is kept as
  ``$OUT/trace_<name>.json.gz`` when ``$OUT`` is set."""
  keep = pathlib.Path(os.environ["OUT"]) / f"trace_{name}.json.gz" if os.environ.get("OUT") else None
  summary = trace_summary.profile_torch(v.run, steps, cuda=v.device == "cuda", keep=keep)
  _print_profile(name, summary)
  return summary


def kernel_comparison(rows: dict) -> dict:
  """Per kernel kind, the device milliseconds per update of each profiled variant (``rows``: variant -> row
  with a ``profile``): where ours and the peers spend their kernel time, side by side."""
  out = {}
  for label, row in rows.items():
    prof = row.get("profile") or {}
    if prof.get("kernels"):
      out[label] = {"kernel_ms_per_step": prof["kernel_ms_per_step"], "busy_ms_per_step": prof["busy_ms_per_step"],
                    "kernels_per_step": prof["kernels_per_step"],
                    **{f"{k}_ms": c["ms_per_step"] for k, c in prof["categories"].items()}}
  return out


# --------------------------------------------------------------------------- main

def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--peers", default=str(REPO / "bench" / ".peers"), help="folder of the peers' code (ignored)")
  ap.add_argument("--mirror", default=None, help="a git mirror or clone of kuangliu/pytorch-cifar "
                  "(default: $AILA_PEER_MIRRORS, see bench/peers.py)")
  ap.add_argument("--prepare_only", action="store_true", help="copy the peer file into --peers and exit")
  ap.add_argument("--workloads", default=",".join(WORKLOADS))
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--loop", type=int, default=20)
  ap.add_argument("--no_compile", action="store_true", help="skip the torch.compile peers")
  ap.add_argument("--torch_compile_modes", default="default,reduce-overhead",
                  help="torch.compile modes of the peers (variant 'compiled' is 'default', the others "
                       "'compiled_<mode>'; 'reduce-overhead' runs the model's forward and backward as CUDA graphs)")
  ap.add_argument("--skip_ours", action="store_true", help="time the peers only")
  ap.add_argument("--ours_xla", default="default,cmdbuf,cmdbuf@10",
                  help="XLA presets of bench/xla_presets.py to time ours with, each PRESET or PRESET@K (K updates "
                       "per call, a lax.scan, as the trainer's config.steps_per_call; configs/cifar10_dla.py runs "
                       "cmdbuf@10 on a GPU): variant 'ours' is 'default', the others 'ours_<preset>[_x<K>]'")
  ap.add_argument("--profile_steps", type=int, default=0,
                  help="> 0: after timing, trace this many steps of each variant (ours: jax.profiler; the peers: "
                       "torch.profiler; ours with K updates a call: rounded up to whole calls) and store where the device "
                       "time goes by kernel kind, side by side under workloads.<w>.kernels (bench/trace_summary.py)")
  ap.add_argument("--no_cudnn_benchmark", action="store_true",
                  help="leave torch.backends.cudnn.benchmark off (the peers' own scripts turn it on)")
  ap.add_argument("--budget_s", type=float, default=540, help="no new phase starts after this many seconds")
  ap.add_argument("--cifar_epochs", type=int, default=3, help="0: no CIFAR run")
  ap.add_argument("--cifar_reserve_s", type=float, default=150,
                  help="start the CIFAR run only if this much of --budget_s is left")
  ap.add_argument("--cifar_train", type=int, default=0, help="> 0: keep the first N training images")
  ap.add_argument("--data_dir", default=os.environ.get("AILA_DATA_DIR"))
  ap.add_argument("--set", action="append", default=[], help="key=value override of the CIFAR config")
  ap.add_argument("--tag", default="")
  ap.add_argument("--smoke", action="store_true", help="CPU smoke test: tiny sizes")
  args = ap.parse_args()
  try:
    ours_variants = [ours_variant(s) for s in args.ours_xla.split(",") if s]  # (label, preset, K)
  except ValueError as e:
    ap.error(str(e))
  start = time.perf_counter()
  peers_dir = pathlib.Path(args.peers)
  if args.prepare_only:
    print("peer file:", ensure_peer(peers_dir, args.mirror))
    return
  workloads = SMOKE if args.smoke else {k: WORKLOADS[k] for k in args.workloads.split(",")}
  if torch is not None and any(w[1] == "kuangliu" for w in workloads.values()):
    ensure_peer(peers_dir, args.mirror)  # copied once from --mirror / $AILA_PEER_MIRRORS; then Peer finds it
  if args.smoke:
    args.rounds, args.loop, args.cifar_train = 2, 1, min(args.cifar_train or 64, 64)
  device = jax.devices()[0]
  kind = getattr(device, "device_kind", device.platform)
  name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind)
  tdev = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
  if torch is not None:  # kuangliu's main.py and timm's train.py both set cudnn.benchmark = True on a GPU
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
  result = {"device": kind, "jax": jax.__version__, "torch": getattr(torch, "__version__", None),
            "torch_device": tdev, "cudnn_benchmark": not args.no_cudnn_benchmark, "rounds": args.rounds, "loop": args.loop, "complete": False,
            "command": " ".join(sys.argv), "variants": [], "workloads": {}, "cifar": None}
  paths = [pathlib.Path(args.out) / f"dla_{name}{'_' + args.tag if args.tag else ''}.json"]
  if os.environ.get("OUT"):
    paths.append(pathlib.Path(os.environ["OUT"]) / paths[0].name)

  def save():
    result["total_s"] = time.perf_counter() - start
    for p in paths:
      p.parent.mkdir(parents=True, exist_ok=True)
      save_result(p, result, indent=2)

  def left():
    return args.budget_s - (time.perf_counter() - start)

  # 1. build and compile every variant (first step = compilation + one step)
  runs = []
  for wl, (ours_name, peer, side, batch, classes) in workloads.items():
    kinds = [] if args.skip_ours else [(label, (preset, k)) for label, preset, k in ours_variants]
    if torch is not None:
      kinds += [("eager", None)] + ([] if args.no_compile else [
          ("compiled" if m == "default" else f"compiled_{m}", m) for m in args.torch_compile_modes.split(",")])
    for label, compiled in kinds:
      if left() < 0:
        print(f"budget reached: skipping {wl} {label}", flush=True)
        continue
      t = time.perf_counter()
      try:
        if label.startswith("ours"):
          v = Ours(ours_name, side, batch, classes, xla=compiled[0], steps_per_call=compiled[1])
        else:
          v = Peer(peer, side, batch, classes, compiled is not None, tdev, peers_dir,
                   compile_mode=None if compiled in (None, "default") else compiled)
        build = time.perf_counter() - t
        first = v.run(1) * getattr(v, "k", 1)  # the first call's wall time (compilation and its K updates)
      except Exception as e:  # pylint: disable=broad-except  (a peer that fails is reported, not fatal)
        print(f"{wl} {label}: FAILED {type(e).__name__}: {e}", flush=True)
        result["variants"].append({"workload": wl, "variant": label, "error": f"{type(e).__name__}: {e}"})
        save()
        continue
      v.run(3)  # warm-up
      row = {"workload": wl, "variant": label, "model": ours_name if label.startswith("ours") else peer, "side": side,
             "batch": batch, "params": v.params, "build_s": build, "first_step_s": first,
             "updates_per_call": getattr(v, "k", 1), "round_ms": []}
      runs.append((row, v))
      result["variants"].append(row)
      print(f"{wl:16s} {label:9s} {v.params:>11,d} params  first step {first:7.2f} s", flush=True)
      save()

  # 2. interleaved timing
  for _ in range(args.rounds):
    for row, v in runs:
      row["round_ms"].append(v.run(args.loop) * 1e3)
  for row, v in runs:
    row["step_ms"] = statistics.median(row["round_ms"])
    row["images_per_s"] = row["batch"] / row["step_ms"] * 1e3
    if args.profile_steps and left() > 0:
      name = f"{row['workload']}_{row['variant']}"
      try:
        row["profile"] = (profile(v, args.profile_steps, name) if row["variant"].startswith("ours")
                          else profile_peer(v, args.profile_steps, name))
      except Exception as e:  # pylint: disable=broad-except  (a profile that fails is reported, not fatal)
        row["profile"] = {"error": f"{type(e).__name__}: {e}"}
      save()
    v.close()
  for wl in workloads:
    rows = {r["variant"]: r for r, _ in runs if r["workload"] == wl}
    peers = {k: r["images_per_s"] for k, r in rows.items() if not k.startswith("ours")}
    entry = {k: round(r["images_per_s"], 1) for k, r in rows.items()}
    if "ours" in rows:
      entry["ours_first_step_s"] = rows["ours"]["first_step_s"]
    if "ours" in rows and peers:
      best = max(peers, key=peers.get)
      entry["faster_peer"] = best
      entry["ratio_ours_vs_faster_peer"] = rows["ours"]["images_per_s"] / peers[best]
      for k, r in rows.items():
        if k.startswith("ours_"):
          entry[f"ratio_{k}_vs_faster_peer"] = r["images_per_s"] / peers[best]
    if args.profile_steps:
      entry["kernels"] = kernel_comparison(rows)
    result["workloads"][wl] = entry
    print(wl, json.dumps(entry), flush=True)
  runs.clear()
  if torch is not None and tdev == "cuda":
    torch.cuda.empty_cache()
  save()

  # 3. CIFAR-10 with our trainer and the real data
  if args.cifar_epochs > 0:
    if not args.data_dir:
      result["cifar"] = {"skipped": "no --data_dir / AILA_DATA_DIR"}
    elif left() < args.cifar_reserve_s:
      result["cifar"] = {"skipped": f"budget: {left():.0f} s left < --cifar_reserve_s {args.cifar_reserve_s}"}
    else:
      data_dir = pathlib.Path(args.data_dir)
      if args.cifar_train:
        sub = pathlib.Path(tempfile.mkdtemp(prefix="cifar_subset_"))
        subset_cifar(data_dir, sub, args.cifar_train, 16 if args.smoke else 0)
        data_dir = sub
      result["cifar"] = cifar_run(args, data_dir, args.cifar_epochs, batch=8 if args.smoke else 128)
    print("CIFAR", json.dumps(result["cifar"]), flush=True)
  result["complete"] = True
  save()
  print("wrote", *paths, flush=True)


if __name__ == "__main__":
  main()
