"""Named sets of XLA compiler options that the GPU benchmarks time side by side (``jax.jit(compiler_options=)``).

A training step of a small network at a small batch (the CIFAR ResNets and the
CIFAR DLA at batch 128) runs hundreds of short kernels; when the host cannot
launch them as fast as the GPU runs them, the step is launch-bound. XLA can
record a step's kernels into CUDA graphs ("command buffers") and launch each
graph at once; which kinds of operations it records is the option
``xla_gpu_enable_command_buffer``. These presets let one process time the same
step with and without them (interleaved, as every benchmark here does):

* ``default``: XLA's own defaults;
* ``cmdbuf``: fusions, cuBLAS/cuBLASLt, cuDNN, custom calls and convolutions
  recorded into command buffers, graphs of any size (``xla_gpu_graph_min_graph_size=1``): what the trainer
  compiles with on a GPU (aila_jax/train/xla_options.py);
* ``cmdbuf_while``: ``cmdbuf`` and loops (``WHILE``, ``CONDITIONAL``): a ``lax.scan`` over several
  training steps (``steps=N`` in bench/depth.py specs) becomes one graph;
* ``noautotune``: no autotuning of convolution/GEMM algorithms
  (``xla_gpu_autotune_level=0``): faster compilation, maybe slower steps;
* ``notriton``: matrix products by cuBLAS/cuBLASLt only (``xla_gpu_enable_triton_gemm=False``): XLA
  does not generate and autotune a Triton kernel per GEMM shape (and fused GEMM); convolutions untouched.

The options are validated by XLA at compile time (an unknown name or enum value
is an ``INVALID_ARGUMENT`` error naming it).
"""

from __future__ import annotations

from aila_jax.train.xla_options import COMMAND_BUFFERS

PRESETS: dict[str, dict[str, object]] = {
    "default": {},
    "cmdbuf": dict(COMMAND_BUFFERS),  # the trainer's default on GPUs (config.xla_command_buffers)
    "cmdbuf_while": {**COMMAND_BUFFERS, "xla_gpu_enable_command_buffer":
                     COMMAND_BUFFERS["xla_gpu_enable_command_buffer"] + ",WHILE,CONDITIONAL"},
    "noautotune": {"xla_gpu_autotune_level": 0},
    "notriton": {"xla_gpu_enable_triton_gemm": False},
}


def options(name: str) -> dict[str, object] | None:
  """The compiler options of preset ``name`` (None for ``default``); ValueError naming the presets."""
  if name not in PRESETS:
    raise ValueError(f"unknown XLA preset {name!r}; expected one of {sorted(PRESETS)}")
  return dict(PRESETS[name]) or None
