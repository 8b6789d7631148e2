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
"""

from __future__ import annotations

from typing import Any

import jax

from aila_jax.train import config_check

COMMAND_BUFFERS: dict[str, Any] = {
    "xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL,CONVOLUTION",
    "xla_gpu_graph_min_graph_size": 1,
}

config_check.register_config_keys({
    "xla_command_buffers": (bool, None, "a bool (record GPU steps into CUDA graphs)"),
})


def compiler_options(config=None, backend: str | None = None) -> dict[str, Any] | None:
  """The ``jax.jit(compiler_options=...)`` of the train and eval steps: :data:`COMMAND_BUFFERS` on a GPU
  backend unless ``config.xla_command_buffers`` is False; None (XLA's defaults) otherwise."""
  enabled = config.get("xla_command_buffers", True) if config is not None else True
  backend = backend or jax.default_backend()
  return dict(COMMAND_BUFFERS) if enabled and backend in ("gpu", "cuda", "rocm") else None
