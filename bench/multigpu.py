r"""Data-parallel training throughput on 1 GPU and on all GPUs of one host (issue 20, item 1).

For each workload, at the config's global batch (the same on every device count), the training step of the
trainer (``aila_jax.train.train_step``: forward, backward, optimizer update; state replicated, batch split over
the ``data`` axis of a ``Mesh``, state donated, the trainer's XLA options) on a random batch generated on the devices (no input pipeline),
in three layouts:

- ``one_gpu``: one process, ``CUDA_VISIBLE_DEVICES=0``;
- ``one_process``: one process driving all ``n`` GPUs;
- ``process_per_gpu``: ``n`` processes, process ``i`` on GPU ``i`` (``CUDA_VISIBLE_DEVICES=i``), joined by
  ``jax.distributed`` through a coordinator on ``127.0.0.1`` (``aila_jax.train.multihost.initialize``, the
  trainer's path).

Throughput is examples (images or sentence pairs) per second, and for the Transformer also target tokens per
second (padded: ``batch x max_len``; the step's cost does not depend on the padding). The JSON holds, per
workload and layout, the rate, :math:`\text{speedup} = r_n / r_1` and :math:`\text{speedup} / n` (1.0 is
linear). Each layout is a fresh process (``--worker``); the parent never touches a GPU itself.

Workloads: ``resnet56_mrla_light`` (configs/cifar10_resnet.py, depth 56, mixer mrla_light, batch 128),
``resnet56_aila2`` (the same with aila2), ``cifar_dla`` (configs/cifar10_dla.py, batch 128),
``multi30k`` (configs/multi30k_transformer.py, bf16, batch 256 of 64 + 64 tokens).

  python bench/multigpu.py                                   # all GPUs of this host, every workload
  python bench/multigpu.py --workloads=cifar_dla --steps=50
  python bench/multigpu.py --smoke                           # CPU: 2 forced host devices, tiny models

``--smoke`` runs the same three layouts on this CPU with 2 forced host devices (one per process in the
``process_per_gpu`` layout, gloo collectives) and tiny models: a check that the script works, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKLOADS = ("resnet56_mrla_light", "resnet56_aila2", "cifar_dla", "multi30k")
SMOKE_DEVICES = 2


def _config(workload: str, smoke: bool):
  """(config, Dataset-like stand-in) of a workload: model, task, optimizer exactly as the config builds them."""
  from aila_jax.data.datasets import Dataset  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  if workload.startswith("resnet56_"):
    from configs import cifar10_resnet  # pylint: disable=g-import-not-at-top
    config = cifar10_resnet.get_config()
    config.model.depth = 8 if smoke else 56
    config.model.mixer = workload.split("_", 1)[1]
  elif workload == "cifar_dla":
    from configs import cifar10_dla  # pylint: disable=g-import-not-at-top
    config = cifar10_dla.get_config()
  elif workload == "multi30k":
    from configs import multi30k_transformer  # pylint: disable=g-import-not-at-top
    config = multi30k_transformer.get_config()
    if smoke:
      config.model.update(d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1, num_decoder_layers=1)
  else:
    raise SystemExit(f"--workloads: unknown workload {workload!r}; expected some of {WORKLOADS}")
  if smoke:
    config.batch_size = 8
    config.dtype = "float32"
  if workload == "multi30k":
    max_len, vocab = (8, 64) if smoke else (config.dataset_kwargs.max_len, config.dataset_kwargs.vocab_size)
    example = {"inputs": np.full((1, max_len), 3, np.int32), "targets": np.full((1, max_len), 3, np.int32)}
    data = Dataset(name="random_tokens", train=None, eval={}, preprocess=None, example=example,
                   model_kwargs={"vocab_size": vocab, "max_len": max_len})
  else:
    side = 8 if smoke else 32
    example = {"image": np.zeros((1, side, side, 3), np.float32), "label": np.zeros((1,), np.int32)}
    data = Dataset(name="random_images", train=None, eval={}, preprocess=None, example=example,
                   model_kwargs={"num_classes": 10})
  return config, data


def _random_batch(example: dict, batch: int, vocab: int | None):
  """A function key -> a random global batch shaped like ``example`` with ``batch`` rows."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def make(key):
    out = {}
    for i, (k, v) in enumerate(sorted(example.items())):
      shape, sub = (batch,) + v.shape[1:], jax.random.fold_in(key, i)
      if k == "label":
        out[k] = jax.random.randint(sub, shape, 0, 10, jnp.int32)
      elif v.dtype.kind == "i":  # tokens: no padding (id 0), EOS (2) last
        out[k] = jax.random.randint(sub, shape, 3, vocab, jnp.int32).at[:, -1].set(2)
      else:
        out[k] = jax.random.normal(sub, shape, jnp.float32)
    return out
  return make


def worker(args) -> None:
  """One layout of one workload in this process; process 0 prints ``RESULT {json}``."""
  import functools  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  if args.num_processes > 1:
    from aila_jax.train import multihost  # pylint: disable=g-import-not-at-top
    multihost.initialize(ml_collections.ConfigDict(dict(
        multihost=True, coordinator_address=args.coordinator, num_processes=args.num_processes,
        process_id=args.process_id, coordinator_timeout_s=120)))
  import jax  # pylint: disable=g-import-not-at-top
  from aila_jax import models, tasks  # pylint: disable=g-import-not-at-top
  from aila_jax.train import optim, sharding, trainer, xla_options  # pylint: disable=g-import-not-at-top

  config, data = _config(args.workload, args.smoke)
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.batch_size, mesh, key="batch_size")
  model_kwargs = {**data.model_kwargs, **dict(config.get("model", {}) or {})}
  model = models.get_model(config.model_name, dtype=trainer.DTYPES[config.dtype], **model_kwargs)
  task = tasks.get_task(config.task, config, data)
  schedule = optim.make_schedule(config.schedule, num_train_steps=config.num_train_steps,
                                 base_lr=float(config.optimizer.learning_rate))
  tx = optim.make_optimizer(config.optimizer, schedule)
  state = trainer._build_state(model, tx, task, data.example, config.seed, mesh)  # pylint: disable=protected-access
  repl, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  step = jax.jit(functools.partial(trainer.train_step, task=task, schedule=schedule),
                 in_shardings=(repl, data_sharding), out_shardings=(repl, repl), donate_argnums=0,
                 compiler_options=xla_options.compiler_options(config))  # CUDA graphs on a GPU, as the trainer
  make = jax.jit(_random_batch(data.example, config.batch_size, data.model_kwargs.get("vocab_size")),
                 out_shardings=data_sharding)
  batches = [make(jax.random.PRNGKey(i)) for i in range(2)]  # two, so no step reuses its input's buffers
  pacer = trainer._Pacer()  # pylint: disable=protected-access  (at most 8 steps queued, as the trainer)
  t0 = time.perf_counter()
  for i in range(args.warmup):
    state, metrics = step(state, batches[i % 2])
    pacer.add(metrics)
  jax.block_until_ready((state, metrics))
  warmup_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for i in range(args.steps):
    state, metrics = step(state, batches[i % 2])
    pacer.add(metrics)
  jax.block_until_ready((state, metrics))
  seconds = time.perf_counter() - t0
  loss = float(jax.device_get(metrics["loss"]))
  if jax.process_index() == 0:
    rate = args.steps * config.batch_size / seconds
    row = {"workload": args.workload, "devices": jax.device_count(), "processes": jax.process_count(),
           "platform": jax.devices()[0].platform, "device_kind": jax.devices()[0].device_kind,
           "global_batch": config.batch_size, "steps": args.steps, "seconds": seconds,
           "examples_per_sec": rate, "warmup_steps": args.warmup, "warmup_seconds": warmup_s,
           "final_loss": loss, "dtype": config.dtype}
    if "targets" in data.example:
      row["target_tokens_per_sec"] = rate * data.example["targets"].shape[1]
    print("RESULT " + json.dumps(row), flush=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(smoke: bool, devices: list[int], per_process: int) -> dict:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
  if smoke:
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags + [
        f"--xla_force_host_platform_device_count={per_process}"]))
  else:
    env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
  return env


def _launch(args, workload: str, devices: list[int], per_gpu: bool) -> dict:
  """Runs one layout; returns process 0's RESULT row (raises with the output if a process failed)."""
  base = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", f"--workload={workload}",
          f"--steps={args.steps}", f"--warmup={args.warmup}"] + (["--smoke"] if args.smoke else [])
  if per_gpu:
    address = f"127.0.0.1:{_free_port()}"
    cmds = [(base + [f"--coordinator={address}", f"--num_processes={len(devices)}", f"--process_id={i}"],
             _env(args.smoke, [d], 1)) for i, d in enumerate(devices)]
  else:
    cmds = [(base, _env(args.smoke, devices, len(devices)))]
  procs = [subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
           for c, e in cmds]
  outs = [p.communicate(timeout=args.timeout)[0] for p in procs]
  for p, out in zip(procs, outs):
    if p.returncode != 0:
      raise RuntimeError(f"{workload} on devices {devices} (per_gpu={per_gpu}) failed:\n{out[-4000:]}")
  rows = [json.loads(line[7:]) for line in outs[0].splitlines() if line.startswith("RESULT ")]
  if len(rows) != 1:
    raise RuntimeError(f"{workload}: process 0 printed no RESULT line:\n{outs[0][-4000:]}")
  return rows[0]


def _device_count(smoke: bool) -> int:
  if smoke:
    return SMOKE_DEVICES
  out = subprocess.run([sys.executable, "-c", "import jax; print(jax.local_device_count())"],
                       capture_output=True, text=True, check=True, env=dict(os.environ))
  return int(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workloads", default=",".join(WORKLOADS))
  p.add_argument("--steps", type=int, default=None, help="timed steps (default 100; smoke 3)")
  p.add_argument("--warmup", type=int, default=None, help="untimed steps first, compile included (default 10)")
  p.add_argument("--smoke", action="store_true", help="CPU, 2 forced host devices, tiny models")
  p.add_argument("--out", default=None, help="JSON path (default bench/results/multigpu_<device>_x<n>.json)")
  p.add_argument("--timeout", type=int, default=1800, help="seconds per layout")
  # worker mode (started by the parent)
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--workload", help=argparse.SUPPRESS)
  p.add_argument("--coordinator", help=argparse.SUPPRESS)
  p.add_argument("--num_processes", type=int, default=1, help=argparse.SUPPRESS)
  p.add_argument("--process_id", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.steps = args.steps if args.steps is not None else (3 if args.smoke else 100)
  args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 10)  # --warmup=0: none
  if args.steps < 1 or args.warmup < 0:
    p.error(f"--steps must be >= 1 and --warmup >= 0; got --steps={args.steps} --warmup={args.warmup}")
  if args.worker:
    sys.path.insert(0, str(REPO))
    worker(args)
    return {}
  workloads = [w for w in args.workloads.split(",") if w]
  bad = sorted(set(workloads) - set(WORKLOADS))
  if bad:
    raise SystemExit(f"--workloads: unknown {bad}; expected some of {WORKLOADS}")
  n = _device_count(args.smoke)
  result = {"devices": n, "smoke": args.smoke, "steps": args.steps, "warmup": args.warmup, "workloads": {}}
  for w in workloads:
    rows = {"one_gpu": _launch(args, w, [0], False)}
    if n > 1:
      rows["one_process"] = _launch(args, w, list(range(n)), False)
      rows["process_per_gpu"] = _launch(args, w, list(range(n)), True)
    base = rows["one_gpu"]["examples_per_sec"]
    for name, row in rows.items():
      row["speedup"] = row["examples_per_sec"] / base
      row["speedup_over_linear"] = row["speedup"] / row["devices"]
      print(f"{w:22s} {name:16s} {row['devices']} device(s) {row['processes']} process(es): "
            f"{row['examples_per_sec']:10.1f} examples/s  x{row['speedup']:.2f} ({row['speedup_over_linear']:.0%} "
            "of linear)", flush=True)
    result["workloads"][w] = rows
  result["device_kind"] = next(iter(result["workloads"].values()))["one_gpu"]["device_kind"] if workloads else None
  out = pathlib.Path(args.out) if args.out else None
  if out is None and not args.smoke:
    kind = (result["device_kind"] or "unknown").replace(" ", "_")
    out = REPO / "bench" / "results" / f"multigpu_{kind}_x{n}.json"
  if out is not None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}", flush=True)
  return result


if __name__ == "__main__":
  main()
