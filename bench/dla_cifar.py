r"""CIFAR-10 accuracy of our DLA against the PyTorch peer, same data, same recipe, same epochs (issue 15).

Two trainings in one command, on the same offline CIFAR-10 (``cifar10_jpeg_bytes.npz``, JPEG q75; see the
data folder's README: these are not standard CIFAR-10 numbers):

* **ours**: ``configs/cifar10_dla.py`` (``cifar_dla``) through ``train_and_evaluate`` with the grain pipeline
  (``bench.dla.cifar_run``): drops the last partial batch (390 steps per epoch), normalisation std
  (0.2470, 0.2435, 0.2616);
* **peer**: kuangliu/pytorch-cifar's ``models/dla.py`` ``DLA`` (copied at run time into the ignored
  ``bench/.peers``, ``bench.dla.ensure_peer``) trained with its ``main.py`` recipe: ``SGD(lr=0.1,
  momentum=0.9, weight_decay=5e-4)``, ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch after the
  test, batch 128 with the last partial batch kept (``DataLoader(drop_last=False)``: 391 steps per epoch),
  ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``, ``Normalize((0.4914, 0.4822, 0.4465),
  (0.2023, 0.1994, 0.2010))`` (``--peer_norm ours``: our std instead), the training loss reported as the
  mean of the batch losses. As in ``bench/dla.py``'s peer: bf16 autocast, channels-last,
  ``cudnn.benchmark = True``, eager (``--peer_compile``: ``torch.compile``).

The peer's input pipeline runs on the GPU so that 16 CPU cores do not bound it: every JPEG is decoded once
with our pipeline's decoder (``aila_jax.data.sources.decode_jpeg_array``, so both trainings see identical
pixels), zero-padded by 4 once and kept on the device as uint8; each epoch a seeded numpy generator draws the
order and, per position, the crop offsets and flips, sent to the device once per epoch; each batch is one
gather (:func:`crop_flip`). With crop offsets :math:`d_y, d_x \in \{0..2p\}` and flip :math:`f`, output pixel

.. math::

  \mathrm{out}[b, i, j] = \mathrm{pad}(x_{\pi_b})[d_{y,b} + i,\; d_{x,b} + (f_b\,?\,S - 1 - j : j)]

which is torchvision's crop of the padded image followed by its horizontal flip.

Both: test accuracy on all 10,000 test images after every epoch; the final epoch's is the result, the best
epoch's is reported beside it, labelled as the peer's README reports it. Ours runs first (``--order``);
each phase starts only if its estimate fits in what is left of ``--budget_s`` (else it is recorded as skipped);
the peer also stops between epochs when the next epoch would not fit (recorded, its final accuracy is then not
comparable). With ``--peer_ckpt FILE`` the peer saves after every epoch and a rerun of the same command goes on
from there, so the recipe's 200 epochs can span several commands on one machine (keep FILE in a folder the
machine keeps between calls, e.g. the ignored ``workdirs/``); ``--peer_compile --peer_compile_mode
reduce-overhead`` runs its forward and backward as CUDA graphs (same maths; a batch-128 step of this model is
bound by kernel launches in eager mode).

The GPU machine takes at most 64 MiB per call, so the 56 MB data file travels in two parts:

  python bench/dla_cifar.py --split_to .carry/cifar_a .carry/cifar_b           # here
  python3 bench/dla_cifar.py --data_parts .carry/cifar_a .carry/cifar_b --out bench/results --epochs 15 \
      --budget_s 520                                                           # GPU machine
  python bench/dla_cifar.py --smoke --data_dir ../shared/data                  # CPU: tiny, every path

Writes ``dla_cifar_<device>[_<tag>].json`` into ``--out`` (and ``$OUT`` if set), rewritten after every phase.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
import traceback
import types

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.dla import cifar_run, ensure_peer, load_peer, subset_cifar  # noqa: E402  (sets the JAX memory share)
from bench.results_io import save_result  # noqa: E402

import numpy as np  # noqa: E402

try:
  import torch  # noqa: E402
except ImportError:
  torch = None

DATA_FILE = "cifar10_jpeg_bytes.npz"
PART_A, PART_B = "cifar10_part_a.npz", "cifar10_part_b.npz"
KEYS = ("train_jpeg", "train_offsets", "y_train", "test_jpeg", "test_offsets", "y_test")
PEER_MEAN, PEER_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # kuangliu main.py's Normalize


# --------------------------------------------------------------------------- the data in two parts

def _digest(a: np.ndarray) -> str:
  h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
  h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def split_parts(src: pathlib.Path, dir_a: pathlib.Path, dir_b: pathlib.Path, split_at: int | None = None):
  """Writes ``dir_a/cifar10_part_a.npz`` (the test split and training images ``0..split_at-1``) and
  ``dir_b/cifar10_part_b.npz`` (training images ``split_at..``; default: half) from the data file ``src``.

  Part A holds the original key order and every array's sha256 (over dtype, shape and bytes), so
  :func:`assemble_parts` can check that what it rebuilt equals the original. Returns the two paths."""
  with np.load(src) as z:
    missing = [k for k in KEYS if k not in z.files]
    if missing:
      raise KeyError(f"{src}: arrays {missing} missing; expected {list(KEYS)} (the data folder's README)")
    arrays = {k: z[k] for k in z.files}
  off, n = arrays["train_offsets"], len(arrays["y_train"])
  split_at = n // 2 if split_at is None else split_at
  if not 0 < split_at < n:
    raise ValueError(f"split_at: expected 0 < split_at < {n} (training images), got {split_at}")
  cut = int(off[split_at])
  digests = np.array([f"{k}:{_digest(v)}" for k, v in arrays.items()])
  part_a = {k: arrays[k] for k in ("test_jpeg", "test_offsets", "y_test")}
  part_a.update(train_jpeg=arrays["train_jpeg"][:cut], train_offsets=off[:split_at + 1],
                y_train=arrays["y_train"][:split_at], keys=np.array(list(arrays)), digests=digests)
  part_b = {"train_jpeg": arrays["train_jpeg"][cut:], "train_offsets": off[split_at:] - off[split_at],
            "y_train": arrays["y_train"][split_at:], "digests": digests}
  paths = []
  for d, name, part in ((dir_a, PART_A, part_a), (dir_b, PART_B, part_b)):
    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / name, **part)
    paths.append(d / name)
  return paths


def assemble_parts(dir_a: pathlib.Path, dir_b: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
  """Rebuilds ``dst/cifar10_jpeg_bytes.npz`` from the two parts of :func:`split_parts` and checks every array
  against the original's sha256 stored in the parts.

  Raises:
    FileNotFoundError: a part is missing (names it and how to make or carry it).
    DataError: the parts come from different files, or a rebuilt array differs from the original.
  """
  from aila_jax.errors import DataError  # pylint: disable=g-import-not-at-top
  paths = [pathlib.Path(dir_a) / PART_A, pathlib.Path(dir_b) / PART_B]
  for p, which, flag in zip(paths, "AB", ("first", "second")):
    if not p.is_file():
      raise FileNotFoundError(
          f"{p}: part {which} of the CIFAR-10 data is missing (the {flag} directory of --data_parts). Make both "
          f"parts with `python bench/dla_cifar.py --split_to DIR_A DIR_B` and carry DIR_{which} to this machine.")
  with np.load(paths[0]) as za, np.load(paths[1]) as zb:
    a, b = {k: za[k] for k in za.files}, {k: zb[k] for k in zb.files}
  if list(a["digests"]) != list(b["digests"]):
    raise DataError(f"{paths[0]} and {paths[1]} come from different data files (their stored sha256 differ); "
                    f"split the same file again with --split_to")
  off_a = a["train_offsets"]
  arrays = {"train_jpeg": np.concatenate([a["train_jpeg"], b["train_jpeg"]]),
            "train_offsets": np.concatenate([off_a[:-1], b["train_offsets"] + off_a[-1]]),
            "y_train": np.concatenate([a["y_train"], b["y_train"]]),
            **{k: a[k] for k in ("test_jpeg", "test_offsets", "y_test")}}
  want = dict(str(s).split(":", 1) for s in a["digests"])
  for k in want:
    if _digest(arrays[k]) != want[k]:
      raise DataError(f"{paths[0]} + {paths[1]}: rebuilt array {k!r} ({arrays[k].dtype}, {arrays[k].shape}) "
                      f"differs from the original's (sha256 {want[k][:12]}...); split again with --split_to")
  dst = pathlib.Path(dst)
  dst.mkdir(parents=True, exist_ok=True)
  np.savez(dst / DATA_FILE, **{k: arrays[k] for k in (str(k) for k in a["keys"])})
  return dst / DATA_FILE


# --------------------------------------------------------------------------- augmentation on the device

def epoch_plan(rng: np.random.Generator, n: int, pad: int = 4) -> dict:
  """One epoch's randomness: the order ``perm`` (n,) and, per position, crop offsets ``dy, dx`` in
  ``0..2 pad`` and ``flip`` (bool, probability 1/2), as torchvision's ``RandomCrop(padding=pad)`` and
  ``RandomHorizontalFlip()`` draw them per image."""
  return {"perm": rng.permutation(n), "dy": rng.integers(0, 2 * pad + 1, size=n),
          "dx": rng.integers(0, 2 * pad + 1, size=n), "flip": rng.random(n) < 0.5}


def crop_flip(padded, idx, dy, dx, flip, side: int = 32):
  """Crops ``side x side`` windows at ``(dy, dx)`` of the padded images ``padded[idx]`` and mirrors those
  with ``flip`` horizontally, in one gather (numpy arrays or torch tensors on any device).

  ``padded``: (N, side + 2 pad, side + 2 pad, C); ``idx, dy, dx``: (B,) int; ``flip``: (B,) bool.
  Returns (B, side, side, C) of ``padded``'s dtype.
  """
  if isinstance(padded, np.ndarray):
    ar, where = np.arange(side), np.where
  else:
    ar, where = torch.arange(side, device=padded.device), torch.where
  rows = dy[:, None] + ar[None, :]                                          # (B, S)
  cols = dx[:, None] + where(flip[:, None], side - 1 - ar[None, :], ar[None, :])  # (B, S)
  return padded[idx[:, None, None], rows[:, :, None], cols[:, None, :]]


# --------------------------------------------------------------------------- the peer

def train_peer(model, data: dict, *, epochs: int, batch: int, seed: int, mean, std, device: str,
               eval_batch: int = 1000, compiled: bool = False, compile_mode: str | None = None,
               ckpt: pathlib.Path | None = None, stop=None, log=print) -> dict:
  """Trains ``model`` (a torch module) with kuangliu's main.py recipe on ``data`` (uint8 NHWC ``x_train``,
  ``x_test``; int ``y_train``, ``y_test``), the augmentation on ``device``. ``stop(seconds_per_epoch)``: True
  ends training before the next epoch (the budget). Returns per-epoch rows and totals.

  ``compiled``: ``torch.compile(model, mode=compile_mode)`` (``"reduce-overhead"``: CUDA graphs, for a step that
  is bound by kernel launches); the optimizer step stays eager.

  ``ckpt``: a file written (atomically) after every epoch with the model, the optimizer's momentum, the
  scheduler, the augmentation generator's state and the rows so far; a run given an existing ``ckpt`` goes on
  from its last epoch, so a schedule longer than one command is the same training as one uninterrupted run
  (the same weights, momentum, learning rates and per-epoch crops, flips and order). A checkpoint of another
  recipe (epochs, batch, seed, training images) is refused, naming what differs.
  """
  n, pad = len(data["y_train"]), 4
  steps = math.ceil(n / batch)  # DataLoader(drop_last=False)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  model = model.to(device).to(memory_format=torch.channels_last).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
  sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
  net = torch.compile(model, mode=compile_mode) if compiled else model
  rng = np.random.default_rng(seed)
  rows, first_epoch, resumed = [], 1, []
  recipe = {"epochs": epochs, "batch": batch, "seed": seed, "train_images": n}
  if ckpt is not None and pathlib.Path(ckpt).exists():
    state = torch.load(ckpt, map_location=device, weights_only=False)
    differ = {k: (state["recipe"].get(k), v) for k, v in recipe.items() if state["recipe"].get(k) != v}
    if differ:
      raise ValueError(f"peer checkpoint {ckpt}: written by another recipe: "
                       + ", ".join(f"{k} {a!r} there, {b!r} here" for k, (a, b) in differ.items())
                       + "; give another --peer_ckpt or remove it")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rng.bit_generator.state = state["rng"]
    rows, resumed = state["rows"], [*state.get("resumed_at_epoch", []), len(state["rows"]) + 1]
    first_epoch = len(rows) + 1
    log(f"peer: resumed from {ckpt} after epoch {len(rows)} of {epochs}", flush=True)

  def save_ckpt():
    tmp = pathlib.Path(f"{ckpt}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"recipe": recipe, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": rng.bit_generator.state, "rows": rows,
                "resumed_at_epoch": resumed}, tmp)
    os.replace(tmp, ckpt)
  mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
  std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

  def normalise(u8_nhwc):  # ToTensor + Normalize; (B, H, W, 3) uint8 -> channels-last (B, 3, H, W) float32
    x = u8_nhwc.permute(0, 3, 1, 2).float().div(255.0)
    return ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)

  padded = torch.from_numpy(np.pad(data["x_train"], ((0, 0), (pad, pad), (pad, pad), (0, 0)))).to(device)
  y_train = torch.from_numpy(np.asarray(data["y_train"], np.int64)).to(device)
  x_test = torch.from_numpy(data["x_test"]).to(device)
  y_test = torch.from_numpy(np.asarray(data["y_test"], np.int64)).to(device)
  t_start = time.perf_counter()
  for epoch in range(first_epoch, epochs + 1):
    lr = opt.param_groups[0]["lr"]
    t0 = time.perf_counter()
    plan = {k: torch.from_numpy(v).to(device) for k, v in epoch_plan(rng, n, pad).items()}
    net.train()
    loss_sum = torch.zeros((), device=device)
    for s in range(steps):
      sl = slice(s * batch, (s + 1) * batch)
      idx = plan["perm"][sl]
      x = normalise(crop_flip(padded, idx, plan["dy"][sl], plan["dx"][sl], plan["flip"][sl]))
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device, dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(net(x), y_train[idx])
      loss.backward()
      opt.step()
      loss_sum += loss.detach().float()
    sync()
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    net.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
      for s in range(0, len(y_test), eval_batch):
        logits = net(normalise(x_test[s:s + eval_batch]))
        correct += (logits.argmax(1) == y_test[s:s + eval_batch]).sum()
    acc = correct.item() / len(y_test)
    eval_s = time.perf_counter() - t1
    sched.step()  # main.py: train(epoch); test(epoch); scheduler.step()
    rows.append({"epoch": epoch, "test_accuracy": acc, "train_loss": loss_sum.item() / steps, "lr": lr,
                 "train_seconds": train_s, "eval_seconds": eval_s})
    log(f"peer epoch {epoch}/{epochs}: test accuracy {acc:.4f}, train loss {rows[-1]['train_loss']:.4f}, "
        f"train {train_s:.1f} s, eval {eval_s:.1f} s", flush=True)
    if ckpt is not None:
      save_ckpt()
    if epoch < epochs and stop is not None and stop(time.perf_counter() - t0):
      break
  train_s = [r["train_seconds"] for r in rows]
  return {"per_epoch": rows, "epochs_run": len(rows), "resumed_at_epoch": resumed,
          "steps_per_epoch": steps, "steps": steps * len(rows),
          "train_images": n, "batch": batch, "drop_last": False,
          "train_images_per_s": n * len(rows) / sum(train_s),
          "train_images_per_s_after_epoch_1": (n * (len(rows) - 1) / sum(train_s[1:]) if len(rows) > 1 else None),
          "wall_seconds_training_this_command": time.perf_counter() - t_start}


def decode(data_dir: pathlib.Path) -> dict:
  """The data file's images decoded once with our pipeline's decoder (identical pixels for both)."""
  from aila_jax.data.sources import decode_jpeg_array  # pylint: disable=g-import-not-at-top
  with np.load(pathlib.Path(data_dir) / DATA_FILE) as z:
    return {"x_train": decode_jpeg_array(z["train_jpeg"], z["train_offsets"]), "y_train": z["y_train"],
            "x_test": decode_jpeg_array(z["test_jpeg"], z["test_offsets"]), "y_test": z["y_test"]}


# --------------------------------------------------------------------------- ours

def ours_run(data_dir, epochs: int, batch: int, seed: int, overrides: list[str], smoke: bool) -> dict:
  """``bench.dla.cifar_run`` (configs/cifar10_dla.py through train_and_evaluate) with ``log_wall_clock`` on;
  the metric rows it reads are kept to give each epoch's training loss and seconds."""
  from aila_jax.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  read, seen = metrics_lib.read_metrics, []

  def capture(workdir):
    rows = read(workdir)
    seen[:] = rows
    return rows

  metrics_lib.read_metrics = capture  # cifar_run imports it at call time
  try:
    out = cifar_run(types.SimpleNamespace(set=["log_wall_clock=True", f"seed={seed}", *overrides], smoke=smoke),
                    data_dir, epochs, batch=batch)
  finally:
    metrics_lib.read_metrics = read
  spe = out["steps"] // epochs
  train = {r["step"]: r for r in seen if "train/loss" in r}
  evals = {r["step"]: r for r in seen if "eval/accuracy" in r}
  rows = []
  for e in range(1, epochs + 1):
    s, prev = e * spe, evals.get((e - 1) * spe)
    row = {"epoch": e, "step": s, "test_accuracy": evals[s]["eval/accuracy"] if s in evals else None,
           "train_loss": train[s]["train/loss"] if s in train else None,
           # the wall clock starts at the first logged row: epoch 1 (compilation included) has no seconds
           "train_seconds": (train[s]["wall"] - prev["wall"] if prev is not None and s in train else None),
           "eval_seconds": evals[s].get("eval/seconds") if s in evals else None}
    rows.append(row)
  timed = [r["train_seconds"] for r in rows[1:] if r["train_seconds"] is not None]
  out["per_epoch"] = rows
  out["steps_per_epoch"] = spe
  out["drop_last"] = True
  out["train_images_per_s_after_epoch_1"] = spe * batch * len(timed) / sum(timed) if timed else None
  return out


# --------------------------------------------------------------------------- main

def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--split_to", nargs=2, metavar=("DIR_A", "DIR_B"),
                  help="write the data file's two parts (test + train first half; train second half) and exit")
  ap.add_argument("--data_parts", nargs=2, metavar=("DIR_A", "DIR_B"), help="train on the file rebuilt from its parts")
  ap.add_argument("--data_dir", default=os.environ.get("AILA_DATA_DIR"), help=f"folder of {DATA_FILE}")
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--tag", default="")
  ap.add_argument("--epochs", type=int, default=15)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--order", default="ours,peer", help="phases in order, from {ours, peer}")
  ap.add_argument("--budget_s", type=float, default=520, help="a phase starts only if its estimate fits")
  ap.add_argument("--est_ours_img_s", type=float, default=9000, help="our images/s assumed by the estimate")
  ap.add_argument("--est_peer_img_s", type=float, default=4500, help="the peer's images/s assumed by the estimate")
  ap.add_argument("--ours_norm", choices=("ours", "peer"), default="ours",
                  help="our normalisation constants: CIFAR-10's (ours, configs/cifar10_dla.py) or the peer's "
                       "(config.image_mean / image_std set to kuangliu's)")
  ap.add_argument("--peer_norm", choices=("peer", "ours"), default="peer",
                  help="peer normalisation: its main.py's std (0.2023, 0.1994, 0.2010) or ours")
  ap.add_argument("--peer_compile", action="store_true", help="torch.compile the peer (default eager)")
  ap.add_argument("--peer_compile_mode", default=None,
                  help="torch.compile's mode with --peer_compile (reduce-overhead: CUDA graphs)")
  ap.add_argument("--peer_ckpt", default=None,
                  help="the peer's checkpoint file, written after every epoch; an existing one is resumed (a "
                       "schedule longer than one command: rerun the same command). The peer then starts "
                       "whatever its estimate and stops between epochs at the budget")
  ap.add_argument("--peers", default=str(REPO / "bench" / ".peers"), help="folder of the peer's code (ignored)")
  ap.add_argument("--set", action="append", default=[], help="key=value override of our config")
  ap.add_argument("--smoke", action="store_true", help="CPU: a few hundred images, 1 epoch, tiny model for ours")
  ap.add_argument("--smoke_train", type=int, default=256)
  args = ap.parse_args(argv)
  start = time.perf_counter()

  if args.split_to:
    src = pathlib.Path(args.data_dir or "") / DATA_FILE
    for p in split_parts(src, *map(pathlib.Path, args.split_to)):
      print(f"wrote {p} ({p.stat().st_size / 2**20:.1f} MiB)")
    return 0

  tmp = pathlib.Path(tempfile.mkdtemp(prefix="dla_cifar_"))
  if args.data_parts:
    data_dir = assemble_parts(*map(pathlib.Path, args.data_parts), tmp / "full").parent
    data_source = f"--data_parts {' '.join(args.data_parts)} (rebuilt, every array's sha256 checked)"
  elif args.data_dir:
    data_dir, data_source = pathlib.Path(args.data_dir), str(pathlib.Path(args.data_dir) / DATA_FILE)
  else:
    ap.error("give --data_parts DIR_A DIR_B or --data_dir (or $AILA_DATA_DIR)")
  epochs, batch = args.epochs, args.batch
  if args.smoke:
    subset_cifar(data_dir, tmp / "smoke", args.smoke_train, 64)
    data_dir, epochs, batch = tmp / "smoke", 1, 32
    data_source += f" (smoke: first {args.smoke_train} train, 64 evenly spaced test images)"

  import jax  # pylint: disable=g-import-not-at-top
  from aila_jax.data.sources import DATASETS  # pylint: disable=g-import-not-at-top
  import PIL  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  kind = getattr(device, "device_kind", device.platform)
  name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind)
  tdev = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
  with np.load(data_dir / DATA_FILE) as z:
    n_train, n_test = len(z["y_train"]), len(z["y_test"])
  cifar_norm = {"mean": list(DATASETS["cifar10"].mean), "std": list(DATASETS["cifar10"].std)}
  kuangliu_norm = {"mean": list(PEER_MEAN), "std": list(PEER_STD)}
  ours_norm = kuangliu_norm if args.ours_norm == "peer" else cifar_norm
  if args.ours_norm == "peer":
    args.set = [*args.set, f"image_mean={tuple(PEER_MEAN)}", f"image_std={tuple(PEER_STD)}"]
  peer_norm = kuangliu_norm if args.peer_norm == "peer" else cifar_norm
  result = {
      "device": kind, "jax": jax.__version__, "torch": getattr(torch, "__version__", None), "torch_device": tdev,
      "command": " ".join(sys.argv if argv is None else ["bench/dla_cifar.py", *argv]), "complete": False,
      "epochs": epochs, "batch": batch, "seed": args.seed, "budget_s": args.budget_s,
      "data": {"source": data_source, "train_images": n_train, "test_images": n_test,
               "decode": f"aila_jax.data.sources.decode_jpeg_array (Pillow {PIL.__version__})",
               "note": "offline JPEG q75 copy of CIFAR-10: not standard CIFAR-10 numbers"},
      "recipe": "SGD lr 0.1 momentum 0.9 weight_decay 5e-4 (coupled), CosineAnnealingLR(T_max=epochs) stepped per "
                "epoch, batch 128, RandomCrop(32, padding=4) + RandomHorizontalFlip, bf16 compute",
      "ours": None, "peer": None}
  paths = [pathlib.Path(args.out) / f"dla_cifar_{name}{'_' + args.tag if args.tag else ''}.json"]
  if os.environ.get("OUT"):
    paths.append(pathlib.Path(os.environ["OUT"]) / paths[0].name)

  def save():
    result["total_s"] = time.perf_counter() - start
    for p in paths:
      p.parent.mkdir(parents=True, exist_ok=True)
      save_result(p, result, indent=2)

  def left():
    return args.budget_s - (time.perf_counter() - start)

  save()
  for phase in args.order.split(","):
    if phase not in ("ours", "peer"):
      ap.error(f"--order: expected phases from ours, peer; got {phase!r}")
    rate = args.est_ours_img_s if phase == "ours" else args.est_peer_img_s
    estimate = (60 if phase == "ours" else 30) + epochs * (n_train / rate + 1.0)
    if phase == "peer" and torch is None:
      result["peer"] = {"skipped": "torch is not importable here"}
    elif estimate > left() and not (phase == "peer" and args.peer_ckpt):
      result[phase] = {"skipped": f"budget: estimated {estimate:.0f} s ({rate:.0f} images/s assumed) > "
                                  f"{left():.0f} s left of --budget_s {args.budget_s:.0f}"}
    else:
      print(f"{phase}: {epochs} epochs (estimated {estimate:.0f} s, {left():.0f} s left)", flush=True)
      t = time.perf_counter()
      try:
        if phase == "ours":
          r = ours_run(data_dir, epochs, batch, args.seed, args.set, args.smoke)
          r["normalisation"] = ours_norm
        else:
          data = decode(data_dir)
          torch.manual_seed(args.seed)
          if tdev == "cuda":
            torch.backends.cudnn.benchmark = True  # as kuangliu's main.py
          model = load_peer(ensure_peer(pathlib.Path(args.peers))).DLA(num_classes=10)
          r = train_peer(model, data, epochs=epochs, batch=batch, seed=args.seed, device=tdev,
                         compiled=args.peer_compile, compile_mode=args.peer_compile_mode,
                         ckpt=pathlib.Path(args.peer_ckpt) if args.peer_ckpt else None,
                         stop=lambda sec: sec * 1.1 > left(), **peer_norm)
          r.update(model="kuangliu/pytorch-cifar models/dla.py DLA",
                   params=sum(p.numel() for p in model.parameters()), compiled=args.peer_compile,
                   compile_mode=args.peer_compile_mode if args.peer_compile else None,
                   cudnn_benchmark=tdev == "cuda", autocast="bfloat16", channels_last=True,
                   normalisation={"name": args.peer_norm, **peer_norm})
          if r["epochs_run"] < epochs:
            r["stopped"] = (f"budget: stopped after {r['epochs_run']} of {epochs} epochs; its final accuracy is not "
                            f"the {epochs}-epoch result"
                            + (f" (its checkpoint {args.peer_ckpt}: rerun the command to go on)"
                               if args.peer_ckpt else ""))
        accs = [row["test_accuracy"] for row in r["per_epoch"] if row["test_accuracy"] is not None]
        r["final_epoch_test_accuracy"] = r["per_epoch"][-1]["test_accuracy"]
        r["best_epoch_test_accuracy"] = max(accs) if accs else None
        r["best_epoch"] = 1 + [row["test_accuracy"] for row in r["per_epoch"]].index(max(accs)) if accs else None
        r["phase_wall_seconds"] = time.perf_counter() - t
        result[phase] = r
      except Exception as e:  # pylint: disable=broad-except  (reported; the other phase still runs)
        traceback.print_exc()
        result[phase] = {"error": f"{type(e).__name__}: {e}", "phase_wall_seconds": time.perf_counter() - t}
    print(phase, {k: v for k, v in result[phase].items() if k not in ("per_epoch", "evals")}, flush=True)
    save()

  ours, peer = result["ours"] or {}, result["peer"] or {}
  both = (ours.get("final_epoch_test_accuracy") is not None and peer.get("final_epoch_test_accuracy") is not None
          and "stopped" not in peer)  # None: no evaluation at the last epoch (e.g. steps not a multiple of epochs)
  result["summary"] = {
      "final_epoch_test_accuracy": {"ours": ours.get("final_epoch_test_accuracy"),
                                    "peer": peer.get("final_epoch_test_accuracy")},
      "ours_minus_peer_final": (ours["final_epoch_test_accuracy"] - peer["final_epoch_test_accuracy"]
                                if both else None),
      "best_epoch_test_accuracy (as the peer's README reports)": {
          "ours": ours.get("best_epoch_test_accuracy"), "peer": peer.get("best_epoch_test_accuracy")},
      "train_images_per_s_after_epoch_1": {"ours": ours.get("train_images_per_s_after_epoch_1"),
                                           "peer": peer.get("train_images_per_s_after_epoch_1")}}
  result["complete"] = True
  save()
  shutil.rmtree(tmp, ignore_errors=True)

  def pct(v):
    return f"{100 * v:8.2f} %" if v is not None else "       -  "

  def rate(v):
    return f"{v:10,.0f}" if v is not None else "       -  "

  print(f"\nCIFAR-10 (offline JPEG copy), {epochs} epochs, {kind}")
  print(f"{'':44s} {'ours':>10s} {'peer':>10s}")
  print(f"{'final epoch test accuracy':44s} {pct(ours.get('final_epoch_test_accuracy'))} "
        f"{pct(peer.get('final_epoch_test_accuracy'))}")
  best_label = "best epoch (as the peer's README reports)"
  print(f"{best_label:44s} {pct(ours.get('best_epoch_test_accuracy'))} "
        f"{pct(peer.get('best_epoch_test_accuracy'))}")
  print(f"{'train images/s after epoch 1':44s} {rate(ours.get('train_images_per_s_after_epoch_1'))} "
        f"{rate(peer.get('train_images_per_s_after_epoch_1'))}")
  for phase in ("ours", "peer"):
    for key in ("skipped", "error", "stopped"):
      if key in (result[phase] or {}):
        print(f"{phase} {key}: {result[phase][key]}")
  print("wrote", *paths, flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
