"""Pins of aila_jax.train.xla_options against literal values (not against its own constants)."""

import jax

from aila_jax.train import xla_options

# the option set documented in the module (and measured in bench/results): every kind of command, graphs of any size
_DOCUMENTED = {"xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL,CONVOLUTION",
               "xla_gpu_graph_min_graph_size": 1}


def test_gpu_options_are_the_documented_literal_set():
  # pins every command type and the minimum graph size, on each GPU backend name (ROCm included)
  for backend in ("gpu", "cuda", "rocm"):
    assert xla_options.compiler_options({}, backend=backend) == _DOCUMENTED
  assert xla_options.compiler_options(None, backend="rocm") == _DOCUMENTED
  assert xla_options.compiler_options({}, backend="tpu") is None


def test_graph_loops_appends_while_and_conditional_without_changing_the_defaults():
  # pins that xla_graph_loops returns a copy: a later call without it must not see WHILE/CONDITIONAL
  loops = xla_options.compiler_options({"xla_graph_loops": True}, backend="gpu")
  assert loops["xla_gpu_enable_command_buffer"] == _DOCUMENTED["xla_gpu_enable_command_buffer"] + ",WHILE,CONDITIONAL"
  again = xla_options.compiler_options({"xla_graph_loops": True}, backend="gpu")
  assert again == loops  # not appended twice
  assert xla_options.compiler_options({}, backend="gpu") == _DOCUMENTED
  assert xla_options.COMMAND_BUFFERS == _DOCUMENTED


def test_recording_failures_are_recognised_whatever_the_case():
  # pins the case-insensitive match: XLA writes "cuDNN", "Command buffer", "CUDA graph"
  for text in ("INTERNAL: cuDNN status 5003 while tracing", "INTERNAL: Command buffer update failed",
               "INTERNAL: CUDA graph instantiation failed", "Stream Capture is invalidated"):
    err = xla_options.explain_step_failure(jax.errors.JaxRuntimeError(text), _DOCUMENTED)
    assert isinstance(err, xla_options.CommandBufferError), text
    assert text in str(err)
  # options without the command-buffer key: not a CUDA-graph step
  other = xla_options.explain_step_failure(jax.errors.JaxRuntimeError("cuDNN status 5003"),
                                           {"xla_gpu_graph_min_graph_size": 1})
  assert other is None
