"""XLA compiler options of the training and evaluation steps: CUDA graphs on GPUs (``config.xla_command_buffers``).

A training step of a small network at a small batch (a CIFAR ResNet-56 or the
CIFAR DLA at batch 128) runs a thousand or more short kernels; launched one by
one from the host, the GPU waits between them. XLA can record the step's
kernels into CUDA graphs ("command buffers") and launch each graph at once.
:data:`COMMAND_BUFFERS` asks it to record fusions, cuBLAS/cuBLASLt calls,
cuDNN graphs, custom calls and convolutions, into graphs of any size.

Measured on one H200 (bench/results, interleaved in one process, bf16): the
CIFAR DLA's training step at batch 128 went from 15,665 to 23,737 images/s,
a ResNet-56 step at batch 128 from 11.7 to 5.1 ms; at batch 512 (CIFAR DLA,
41,099 -> 42,279) and for DLA-34 at 224 (7,190 -> 7,293), where the kernels are
long, it changes little. The maths is unchanged: the same kernels run in the
same order.

``config.xla_command_buffers`` (default True) applies the options on a GPU
backend only; False leaves XLA's defaults (and any ``XLA_FLAGS`` the user set).

``config.xla_graph_loops`` (default False) also records while loops and
conditionals (:data:`GRAPH_LOOPS`): with ``config.steps_per_call = K > 1`` the
``lax.scan`` over K updates then becomes one graph instead of K launches of the
loop body's graphs from the host. Measured on one H100 (bench/ela_time.py,
``xla=cmdbuf_while,steps=8``, ResNet-56 b128 bf16, interleaved): residual 4.44
ms per update, MRLA-base 7.54, AILA-2 11.32
(``ela_time_NVIDIA-H100-80GB-HBM3_resnet56_cmdbuf_while8_skips.json``); one
update per call with the default graphs measured 5.71 / 11.71 / 12.37 ms on an
H200 (``ela_time_NVIDIA-H200_resnet56_cmdbuf.json``). Not the default: the
trainer with it is measured only in the ELA runs (bench/ela_accuracy.py).
"""

from __future__ import annotations

from typing import Any

import jax

from aila_jax.train import config_check

COMMAND_BUFFERS: dict[str, Any] = {
    "xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL,CONVOLUTION",
    "xla_gpu_graph_min_graph_size": 1,
}

GRAPH_LOOPS = ",WHILE,CONDITIONAL"  # appended to xla_gpu_enable_command_buffer by config.xla_graph_loops

config_check.register_config_keys({
    "xla_command_buffers": (bool, None, "a bool (record GPU steps into CUDA graphs)"),
    "xla_graph_loops": (bool, None, "a bool (also record while loops and conditionals into the CUDA graphs)"),
})


def compiler_options(config=None, backend: str | None = None) -> dict[str, Any] | None:
  """The ``jax.jit(compiler_options=...)`` of the train and eval steps: :data:`COMMAND_BUFFERS` on a GPU
  backend unless ``config.xla_command_buffers`` is False (with :data:`GRAPH_LOOPS` added where
  ``config.xla_graph_loops`` is True); None (XLA's defaults) otherwise."""
  enabled = config.get("xla_command_buffers", True) if config is not None else True
  backend = backend or jax.default_backend()
  if not (enabled and backend in ("gpu", "cuda", "rocm")):
    return None
  options = dict(COMMAND_BUFFERS)
  if config is not None and config.get("xla_graph_loops", False):
    options["xla_gpu_enable_command_buffer"] += GRAPH_LOOPS
  return options


class CommandBufferError(RuntimeError):
  """A GPU step failed while XLA recorded it into CUDA graphs (:data:`COMMAND_BUFFERS`); says what to change."""


_RECORDING_FAILURES = ("cudnn", "command buffer", "cuda graph", "stream capture")


def explain_step_failure(err: Exception, options: dict[str, Any] | None) -> CommandBufferError | None:
  """A :class:`CommandBufferError` naming the config keys to change when ``err`` (raised by a train or eval step
  compiled with ``options``) looks like a failure to record CUDA graphs; None when the step ran without them or
  the error is something else (then it is re-raised as it is).

  Seen on one H100 (2026-12-05, reproduced 2026-12-06): the CIFAR DLA's first training step, loaded from the
  persistent compilation cache by a second run of the same config, failed with ``cuDNN status 5003`` while XLA
  traced a convolution into a command buffer; the same step compiled afresh in the first run trained. Since then
  the trainer leaves the persistent cache off while the steps are CUDA graphs (:mod:`compile_cache`)."""
  if not options or "xla_gpu_enable_command_buffer" not in options:
    return None
  text = str(err)
  if not any(k in text.lower() for k in _RECORDING_FAILURES):
    return None
  return CommandBufferError(
      "a GPU step failed while XLA recorded it into CUDA graphs (config.xla_command_buffers=True): "
      f"{text.splitlines()[0] if text else type(err).__name__}. Run again with --config.xla_command_buffers=False "
      "(kernels launched one by one: slower for small steps, same maths). If a JAX compilation cache of your own "
      "is on (JAX_COMPILATION_CACHE_DIR or jax_compilation_cache_dir), turn it off: the failure was seen on steps "
      "read back from the cache. Nothing in the workdir was changed by this step: a rerun resumes from its last "
      "checkpoint.")
