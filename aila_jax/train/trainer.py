"""One trainer for every task: ``train_and_evaluate(config, workdir)``.

Data parallel over every device (of every process) with ``jax.jit`` on a
``Mesh``: batches are sharded over the ``data`` axis, the train state is
replicated, and the state's buffers are donated to each step. Running again on
the same workdir resumes from the latest readable checkpoint, data iterator
included, so a run that was killed ends with the same parameters and metrics as
one that was not (bit for bit on CPU).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import json
import pathlib
import signal
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aila_jax import models, tasks
from aila_jax.data import datasets, device_augment, pipeline
from aila_jax.train import checkpoint, config_check, ela as ela_lib, metrics as metrics_lib, optim, sharding
from aila_jax.train import compile_cache, multihost, xla_options
from aila_jax.train.state import TrainState, param_count, unfreeze

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class NonFiniteLossError(FloatingPointError):
  """The training loss (or gradient norm) became NaN or Inf."""


def step_rngs(rng: jax.Array, step) -> dict[str, jax.Array]:
  """One key per RNG stream (``dropout``, ``glimpse``), a pure function of (rng, step)."""
  base = jax.random.fold_in(rng, step)
  return {name: jax.random.fold_in(base, i) for i, name in enumerate(tasks.RNG_STREAMS)}


def train_step(state: TrainState, batch: dict, *, task, schedule, transform=None) -> tuple[TrainState, dict]:
  """One optimizer update; returns the new state and this step's metrics (batch means). ``transform`` (the
  dataset's ``device_transform``, ``config.augment_on='device'``) augments and normalises the batch first."""
  if transform is not None:
    batch = transform(batch, device_augment.step_key(state.rng, state.step))
  rngs = step_rngs(state.rng, state.step)
  mutable = tuple(state.model_state.keys())

  def loss_fn(params):
    loss, step_metrics, new_model_state = task.train_loss(
        state.apply_fn, state.variables(params), batch, rngs=rngs, mutable=mutable)
    return loss, (step_metrics, new_model_state if mutable else state.model_state)

  (_, (step_metrics, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  step_metrics = dict(step_metrics, grad_norm=optax.tree.norm(grads),
                      learning_rate=jnp.asarray(schedule(state.step), jnp.float32))
  return state.apply_gradients(grads, model_state=new_model_state), step_metrics


def train_steps(state: TrainState, batches: dict, *, task, schedule, transform=None) -> tuple[TrainState, dict]:
  """``K`` optimizer updates in one call (``config.steps_per_call``): a ``lax.scan`` of :func:`train_step` over
  ``batches`` stacked ``[K, B, ...]``; the metrics come back stacked ``[K]``. The same updates as K calls of
  :func:`train_step` (each step's random streams come from ``state.step``), in one dispatch."""
  return jax.lax.scan(lambda st, batch: train_step(st, batch, task=task, schedule=schedule, transform=transform),
                      state, batches)


def eval_step(state: TrainState, batch: dict, *, task, transform=None) -> dict:
  if transform is not None:  # normalisation only
    batch = transform(batch, None)
  rngs = step_rngs(jax.random.fold_in(state.rng, 0x5EED), 0)  # the same draws at every eval
  return task.eval_sums(state.apply_fn, state.variables(), batch, rngs=rngs)


def _build_state(model, tx, task, example: dict, seed: int, mesh) -> TrainState:
  root = jax.random.PRNGKey(seed)
  init_rng, stream_rng, state_rng = jax.random.split(root, 3)
  inputs = task.model_inputs(jax.tree_util.tree_map(jnp.asarray, example))

  def init():
    rngs = {"params": init_rng, **step_rngs(stream_rng, 0)}
    variables = unfreeze(model.init(rngs, *inputs, train=False))
    params = variables.pop("params")
    variables.pop("intermediates", None)
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx, model_state=variables,
                             rng=state_rng)

  return jax.jit(init, out_shardings=sharding.replicated(mesh))()


# Calls the host may dispatch ahead of the devices. XLA's PjRt clients admit at most 32 programs in flight per
# device (a semaphore each) and take each device's slot on a thread of their own, so with several devices and
# more than 32 queued a later program can take a device's last slot before an earlier one that shares an
# all-reduce with it: both wait for ever and XLA aborts the process ("waiting for `all reduce ...` ... may be
# stuck", then the rendezvous's termination timeout). Seen with 8 forced CPU devices on 2 loaded cores (the
# eval loop over cached batches, 1 run in 4; a 20-batch stand-alone loop 3 in 3, none paced at 8). Waiting for
# the result of the call `_IN_FLIGHT` back keeps the queue below that and never drains it.
_IN_FLIGHT = 8


class _Pacer:
  """Keeps at most ``depth`` dispatched calls unfinished: ``add(out)`` after each call waits for the output of
  the call ``depth`` before it (already done in the steady state, so the devices' queue never runs dry)."""

  def __init__(self, depth: int = _IN_FLIGHT):
    self.depth, self.outputs = depth, collections.deque()

  def add(self, out) -> None:
    self.outputs.append(out)
    if len(self.outputs) > self.depth:
      jax.block_until_ready(self.outputs.popleft())


@jax.jit
def _add_sums(total: dict, sums: dict) -> dict:
  return jax.tree_util.tree_map(jnp.add, total, sums)  # one program per batch, not one per metric


def evaluate(state, eval_fn, batches) -> dict[str, float]:
  """Sums ``eval_fn`` over all batches (global arrays) on device, then divides by the example count."""
  total, pacer = None, _Pacer()
  for batch in batches:
    sums = eval_fn(state, batch)
    total = sums if total is None else _add_sums(total, sums)
    pacer.add(total)
  total = jax.device_get(total)
  count = float(total.pop("count"))
  return {f"eval/{k}": float(v) / max(count, 1.0) for k, v in total.items()} | {"eval/count": count}


def _aval(x):
  """The shape, dtype and sharding of an array (what lowering needs; its buffer is not touched)."""
  return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, "sharding", None))


class _AheadStep:
  """A jitted ``fn(state, batch)`` that remembers the batch shapes it was called with, and can be compiled for
  another step's remembered shapes ahead of time (ELA's ``compile_ahead``: in a background thread). A call
  whose batch shapes were compiled ahead runs that executable; any other call goes through ``jax.jit``."""

  def __init__(self, jitted):
    self.jitted = jitted
    self.seen: dict[tuple, Any] = {}      # batch shapes -> batch avals (this step's calls)
    self.compiled: dict[tuple, Any] = {}  # batch shapes -> executable compiled ahead

  @staticmethod
  def _key(batch) -> tuple:
    return tuple((np.shape(x), str(x.dtype)) for x in jax.tree_util.tree_leaves(batch))

  def __call__(self, state, batch):
    key = self._key(batch)
    if key not in self.seen:
      self.seen[key] = jax.tree_util.tree_map(_aval, batch)
    fn = self.compiled.get(key)
    return (fn or self.jitted)(state, batch)

  def compile_like(self, other: "_AheadStep", state_avals) -> int:
    """Compiles this step for every batch shape ``other`` has run; returns how many programs."""
    for key, batch_avals in list(other.seen.items()):
      if key not in self.compiled:
        self.compiled[key] = self.jitted.lower(state_avals, batch_avals).compile()
    return len(other.seen)


class _Preemption:
  """SIGTERM -> save a checkpoint at the end of the current step and exit cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handler)
    except ValueError:  # not the main thread (e.g. inside a notebook kernel thread)
      self._previous = None
    return self

  def _handler(self, signum, frame):  # pylint: disable=unused-argument
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _flush(pending: list[tuple[int, dict]], writer, progress, ckpt, workdir, observe=None) -> dict[str, float]:
  """Fetches pending step metrics, stops on the first non-finite one, logs their mean.

  ``observe(step, metrics)`` (the ELA controller's) sees every step's host metrics, in order.
  """
  if not pending:
    return {}
  steps, values = [], []
  for (first, count), m in zip([s for s, _ in pending], jax.device_get([m for _, m in pending])):
    if count is None:  # one step's scalars
      steps.append(first)
      values.append(m)
    else:  # a call of train_steps: metrics stacked over its `count` steps
      steps += range(first, first + count)
      values += [{k: v[i] for k, v in m.items()} for i in range(count)]
  for step, m in zip(steps, values):
    bad = {k: float(v) for k, v in m.items() if not np.isfinite(v)}
    if bad:
      last = ckpt.latest_step()
      raise NonFiniteLossError(
          f"non-finite training metrics at step {step}: {bad}. Training stopped; the last good "
          f"checkpoint is {'step ' + str(last) if last is not None else 'none'} in "
          f"{workdir / 'checkpoints'}. Lower config.optimizer.learning_rate or set "
          f"config.optimizer.grad_clip_norm.")
    if observe is not None:
      observe(step, m)
  mean = {f"train/{k}": float(np.mean([m[k] for m in values])) for k in values[0]}
  rate = progress.steps_per_sec(steps[-1])
  mean["train/steps_per_sec"] = rate
  writer.write(steps[-1], mean)
  progress.print(steps[-1], mean, rate)
  pending.clear()
  return mean


def initialize_multihost(config) -> None:
  """``jax.distributed.initialize()``: auto-detected on TPU pods, SLURM, Open MPI and k8s; else from
  ``config.coordinator_address`` / ``num_processes`` / ``process_id`` (or ``$JAX_COORDINATOR_ADDRESS``).

  CPU processes talk through gloo, so the multi-process path also runs (and is tested) on CPUs. A layout that
  cannot form a cluster is a ConfigError; an unreachable coordinator raises after
  ``config.coordinator_timeout_s`` (:mod:`aila_jax.train.multihost`).
  """
  multihost.initialize(config)


def train_and_evaluate(config, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final metrics."""
  config_check.check_config(config)
  ela_lib.check_config(config)
  multihost.check_config(config)  # a process layout that cannot form a cluster stops here
  if config.get("multihost", False):
    initialize_multihost(config)
  # A rerun reads its compiled steps back (config.compilation_cache), except where they are CUDA graphs.
  if compile_cache.enable(config) is None and config.get("compilation_cache", True):
    logging.info(compile_cache.GPU_GRAPHS_NOTE)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  pi, pc = jax.process_index(), jax.process_count()

  # --- everything that can be wrong is checked before compiling ---
  dataset = datasets.build_dataset(config)
  if "tokenizer" in dataset.info and pi == 0:  # tie the checkpoints to their vocabulary
    from aila_jax.data.tokenizer import check_workdir_vocab  # pylint: disable=g-import-not-at-top
    check_workdir_vocab(workdir, dataset.info)
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.batch_size, mesh, key="batch_size")
  sharding.check_batch_divisible(config.eval_batch_size, mesh, key="eval_batch_size")
  model_kwargs = {**dataset.model_kwargs, **dict(config.get("model", {}) or {})}
  controller = ela_lib.make_controller(config)  # None unless config.ela.enabled
  if controller is not None:  # the skip set comes from the controller; the parameters do not depend on it
    model_kwargs.update(skip_layers=(), ela_stats=True, ela_kl_support=controller.s["kl_support"])
  model = models.get_model(config.model_name, dtype=DTYPES[config.get("dtype", "float32")], **model_kwargs)
  task = tasks.get_task(config.task, config, dataset)
  schedule = optim.make_schedule(config.schedule, num_train_steps=config.num_train_steps,
                                 base_lr=float(config.optimizer.learning_rate))
  tx = optim.make_optimizer(config.optimizer, schedule)
  # records read per process (reported at the end); grain's worker processes would count in their own copies
  read_counter = multihost.count_reads(dataset.train) if config.get("worker_count", 0) == 0 else None
  transform = dataset.device_transform  # config.augment_on='device': augment and normalise in the steps
  host_preprocess = dataset.preprocess if transform is None else transform.host_preprocess
  train_ds = pipeline.train_dataset(dataset.train if read_counter is None else read_counter,
                                    preprocess=host_preprocess,
                                    augment=dataset.augment if transform is None else None,
                                    batch_size=config.batch_size, seed=config.seed, process_index=pi,
                                    process_count=pc)

  state = _build_state(model, tx, task, dataset.example, config.seed, mesh)
  if pi == 0:
    print(f"model {config.model_name}: {param_count(state.params):,} parameters; "
          f"{jax.device_count()} device(s) ({jax.devices()[0].platform}); mesh {dict(mesh.shape)}",
          flush=True)

  # restore first: a checkpoint that does not fit this config stops the run before anything is written
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=config.get("keep_checkpoints", 3))
  data_iter = pipeline.make_iterator(train_ds, worker_count=config.get("worker_count", 0))
  try:
    restored = ckpt.restore_latest(state.to_checkpoint())
  except checkpoint.IncompatibleCheckpointError as e:
    ckpt.close()
    raise checkpoint.IncompatibleCheckpointError(
        f"{e}\n{config_check.describe_config_changes(workdir / 'config.json', config)}"
        f"Nothing in {workdir} was changed. Run with the config that wrote it, or a new --workdir.") from None
  except Exception:
    ckpt.close()
    raise
  if pi == 0:
    config_check.write_config_json(workdir, config)
  writer = metrics_lib.MetricWriter(workdir, enabled=pi == 0, wall_clock=config.get("log_wall_clock", False))
  if restored is not None:
    step0, tree, data_state = restored
    state = state.from_checkpoint(tree)
    data_iter.set_state(data_state["iterator"])
    if controller is not None and "ela" in data_state:  # skip the same blocks as before the restart
      controller.load_state_dict(data_state["ela"])
    writer.mark_resume(step0)
    if pi == 0:
      print(f"resumed from the checkpoint at step {step0} in {ckpt.directory}", flush=True)
  else:
    step0 = 0
    writer.mark_resume(0)

  repl, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  variants: dict[tuple, tuple] = {}  # ELA skip set -> (apply_fn, jitted train step, jitted eval step)
  xla_opts = xla_options.compiler_options(config)  # CUDA graphs on a GPU (config.xla_command_buffers)
  stacked_sharding = sharding.stacked_batch_sharding(mesh)

  ahead = controller is not None and bool(controller.s["compile_ahead"])  # ELA compiles skip sets ahead
  wrap = _AheadStep if ahead else (lambda jitted: jitted)  # only then do the steps remember their batch shapes

  def variant(skip: tuple, ahead_of: int | None = None) -> tuple:
    """The model and steps for a skip set: built (and later compiled, each when first called) once per set."""
    if skip not in variants:
      apply_fn = model.apply if not skip else model.clone(skip_layers=skip).apply
      variants[skip] = (apply_fn,
                        wrap(jax.jit(functools.partial(train_step, task=task, schedule=schedule,
                                                             transform=transform),
                                           in_shardings=(repl, data_sharding), out_shardings=(repl, repl),
                                           donate_argnums=0, compiler_options=xla_opts)),
                        wrap(jax.jit(functools.partial(eval_step, task=task, transform=transform),
                                           in_shardings=(repl, data_sharding), out_shardings=repl,
                                           compiler_options=xla_opts)),
                        wrap(jax.jit(functools.partial(train_steps, task=task, schedule=schedule,
                                                             transform=transform),
                                           in_shardings=(repl, stacked_sharding), out_shardings=(repl, repl),
                                           donate_argnums=0, compiler_options=xla_opts)))
      if len(variants) > 1 and pi == 0:
        when = "" if ahead_of is None else f" in the background (it takes effect after step {ahead_of})"
        print(f"ELA: compiling the step for skip set {list(skip)}{when} (recompile #{len(variants) - 1})",
              flush=True)
    return variants[skip]

  _, p_train, p_eval, p_chunk = variant(())
  current_skip = ()
  compiling: dict[tuple, concurrent.futures.Future] = {}  # ELA compile_ahead: skip set -> its background compile
  compile_wait = 0.0  # seconds the training waited at switches for a background compile to finish
  executor = None

  def compile_ahead(step: int) -> None:
    """ELA ``compile_ahead``: start compiling the decided skip set's steps (for the batch shapes the current
    set's steps have run) in a background thread, unless it was compiled before."""
    nonlocal executor
    nxt = controller.pending(step)
    if nxt is None or nxt in variants:
      return
    _, *now = variant(current_skip)
    apply_fn, *new = variant(nxt, ahead_of=controller.switch_step)
    state_avals = jax.tree_util.tree_map(_aval, state.replace(apply_fn=apply_fn))
    executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ela_compile")
    compiling[nxt] = executor.submit(lambda: sum(b.compile_like(a, state_avals) for a, b in zip(now, new)))

  def wait_for(skip: tuple, step: int) -> None:
    """At a switch to ``skip``: wait for its background compile (an error in it is raised here)."""
    nonlocal compile_wait
    future = compiling.pop(skip, None)
    if future is None:
      return
    t = time.perf_counter()
    programs = future.result()
    waited = time.perf_counter() - t
    compile_wait += waited
    writer.write(step, {"ela/compile_wait_seconds": waited})
    if pi == 0:
      print(f"ELA at step {step}: skip set {list(skip)} in effect ({programs} program(s) compiled ahead; "
            f"waited {waited:.1f} s)", flush=True)

  eval_cache: dict[str, list | None] = {}  # split -> its batches on the devices; None: larger than the budget
  eval_cache_bytes = int(float(config.get("eval_cache_mb", 512)) * 2**20)

  def eval_inputs(split, source):
    """The split's eval batches as global arrays. The first eval reads them through the pipeline and keeps
    them on the devices when this process's share fits ``config.eval_cache_mb`` (0: never), so later evals
    do no host work; a larger split is read anew each time."""
    if eval_cache.get(split) is not None:
      yield from eval_cache[split]
      return
    keep = [] if split not in eval_cache and eval_cache_bytes > 0 else None
    size = 0
    for batch in pipeline.eval_batches(source, preprocess=host_preprocess, batch_size=config.eval_batch_size,
                                       process_index=pi, process_count=pc):
      size += sum(np.asarray(v).nbytes for v in batch.values())
      batch = sharding.to_global(batch, data_sharding)
      if keep is not None and size > eval_cache_bytes:
        keep = None
      if keep is not None:
        keep.append(batch)
      yield batch
    eval_cache[split] = keep

  def run_eval(step):
    t = time.perf_counter()
    result = {}
    eval_state, p_eval_now = state, p_eval
    if controller is not None:  # evaluate the model as it trains on (its skip set), also after a probe step
      apply_fn, _, p_eval_now, _ = variant(controller.active(step + 1))
      eval_state = state.replace(apply_fn=apply_fn)
    for split, source in dataset.eval.items():
      prefix = "eval" if split == "test" else f"eval_{split}"
      sums = evaluate(eval_state, p_eval_now, eval_inputs(split, source))
      result.update({prefix + k[4:]: v for k, v in sums.items()})
    result["eval/seconds"] = time.perf_counter() - t
    writer.write(step, result)
    if pi == 0:
      print(f"eval at step {step}: " + ", ".join(
          f"{k[5:]} {v:.4f}" for k, v in result.items() if k in ("eval/loss", "eval/accuracy")),
          flush=True)
    return result

  observe = None if controller is None else controller.observe
  total = config.num_train_steps
  progress = metrics_lib.Progress(total, step0, enabled=pi == 0 and config.get("progress", True))
  pending: list[tuple[int, dict]] = []
  last_train, last_eval, last_eval_step = {}, {}, None
  saved_step = step0 if restored is not None else None
  train_start = time.perf_counter()
  per_call = config.get("steps_per_call", 1)
  pacer = _Pacer()

  def steps_in_call(step: int) -> int:
    """``per_call`` if steps ``step .. step + per_call - 1`` hold no log, eval or checkpoint step before the last
    and share one skip set; else 1 (so every boundary falls at the end of a call, as with one step per call)."""
    last = step + per_call - 1
    if per_call == 1 or last > total:
      return 1
    for s in range(step, last):
      if (s % config.log_every == 0 or (config.eval_every and s % config.eval_every == 0)
          or s % config.checkpoint_every == 0):
        return 1
    if controller is not None and len({controller.skips_for(s) for s in range(step, last + 1)}) > 1:
      return 1
    return per_call

  with _Preemption() as preemption:
    step = step0
    while step < total:
      count = steps_in_call(step + 1)
      step += count
      if controller is not None and controller.skips_for(step) != current_skip:
        current_skip = controller.skips_for(step)
        wait_for(current_skip, step)
        apply_fn, p_train, _, p_chunk = variant(current_skip)
        state = state.replace(apply_fn=apply_fn)
      if count == 1:
        batch = sharding.to_global(next(data_iter), data_sharding)
        state, step_metrics = p_train(state, batch)
        pending.append(((step, None), step_metrics))
      else:  # `count` updates in one call (config.steps_per_call)
        batches = [next(data_iter) for _ in range(count)]
        stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *batches)
        state, step_metrics = p_chunk(state, sharding.to_global(stacked, stacked_sharding))
        pending.append(((step - count + 1, count), step_metrics))
      pacer.add(step_metrics)  # the metrics, not the state: its buffers are donated to the next call
      if step == step0 + count:  # one sync: the first call's time is mostly compilation
        try:
          jax.block_until_ready(state)
        except jax.errors.JaxRuntimeError as e:  # a failure to record CUDA graphs gets the keys to change
          explained = xla_options.explain_step_failure(e, xla_opts)
          if explained is None:
            raise
          raise explained from e
        first_step_seconds, first_call_steps = time.perf_counter() - train_start, count
        if ahead:  # a run resumed between a decision and its switch: compile ahead now
          compile_ahead(step)
      if step % config.log_every == 0 or step == total:
        last_train = _flush(pending, writer, progress, ckpt, workdir, observe)
        if controller is not None and controller.due(step):
          before = controller.skip
          row = controller.decide(step)
          writer.write(step, {**row, "ela/recompiles": float(len(variants) - 1)})
          if controller.skip != before and pi == 0:
            print(f"ELA at step {step}: skip set {list(before)} -> {list(controller.skip)}"
                  + (f" after step {controller.switch_step}" if ahead else ""), flush=True)
        if ahead:
          compile_ahead(step)
      if config.eval_every and step % config.eval_every == 0 and step != total:
        last_eval, last_eval_step = run_eval(step), step
      if step % config.checkpoint_every == 0 or step == total or preemption.requested:
        _flush(pending, writer, progress, ckpt, workdir, observe)  # never save a non-finite state
        extra = {} if controller is None else {"ela": controller.state_dict()}
        ckpt.save(step, state.to_checkpoint(), {"iterator": data_iter.get_state(), **extra})
        saved_step = step
        if preemption.requested:
          print(f"SIGTERM: saved the checkpoint at step {step}; exiting.", flush=True)
          if executor is not None:  # a compile under way still ends before the process does
            executor.shutdown(wait=False, cancel_futures=True)
          ckpt.close()
          writer.close()
          return {"step": step, "preempted": True, **last_train}
    train_seconds = time.perf_counter() - train_start
    final_step = int(jax.device_get(state.step))
    if last_eval_step != final_step:
      last_eval = run_eval(final_step)
  if read_counter is not None:  # a collective: every process reaches it
    reads = multihost.records_read_report(read_counter)  # into final_metrics.json, not the step metrics
    if pc > 1:  # one process: the counts are in final_metrics.json, not worth a line of its own
      print(f"process {pi} of {pc}: read {read_counter.records:,} training records in this run, "
            f"{int(read_counter.seen.sum()):,} distinct (grain's read-ahead included); all processes: "
            f"{int(reads['data/distinct_records']):,} distinct, "
            f"{int(reads['data/records_read_by_several_processes'])} read by more than one", flush=True)
  if executor is not None:
    executor.shutdown(wait=False, cancel_futures=True)
  ckpt.close()
  writer.close()
  result = {"step": final_step, "train_seconds": train_seconds, **last_train, **last_eval,
            **(reads if read_counter is not None else {})}
  if controller is not None:
    result.update({"ela/skip_set": list(controller.skip), "ela/recompiles": len(variants) - 1})
    if ahead:
      result["ela/compile_wait_seconds"] = compile_wait
  if final_step > step0:  # this run trained: how much of train_seconds was its first step (compilation)
    result["first_step_seconds"] = first_step_seconds  # the first call's (with steps_per_call > 1: its steps)
    result["first_call_steps"] = first_call_steps
  if pi == 0:
    shown = ", ".join(f"{k.replace('/', ' ')} {v:.4f}" for k, v in sorted(result.items())
                      if k.startswith("eval") and k.split("/")[-1] in ("accuracy", "loss", "mse"))
    print(f"done: step {final_step}, {shown}; checkpoint at step {saved_step} in {ckpt.directory}",
          flush=True)
    (workdir / "final_metrics.json").write_text(json.dumps(result, indent=2))
  logging.info("final metrics: %s", result)
  return result
