"""config.xla_command_buffers: the CUDA-graph options are valid XLA options and reach the trainer's steps."""

import jax
import jax.numpy as jnp
import pytest

from aila_jax.errors import ConfigError
from aila_jax.train import config_check, xla_options


def test_only_on_a_gpu_backend_and_switchable():
  assert xla_options.compiler_options({}, backend="cpu") is None
  assert xla_options.compiler_options({}, backend="gpu") == xla_options.COMMAND_BUFFERS
  assert xla_options.compiler_options({"xla_command_buffers": False}, backend="gpu") is None
  loops = xla_options.compiler_options({"xla_graph_loops": True}, backend="gpu")
  assert loops["xla_gpu_enable_command_buffer"].split(",")[-2:] == ["WHILE", "CONDITIONAL"]
  assert xla_options.compiler_options({"xla_graph_loops": True}, backend="cpu") is None
  assert xla_options.compiler_options({"xla_graph_loops": True, "xla_command_buffers": False}, backend="gpu") is None


def test_the_loop_options_are_ones_xla_accepts():
  options = xla_options.compiler_options({"xla_graph_loops": True}, backend="gpu")
  f = jax.jit(lambda x: jax.lax.fori_loop(0, 3, lambda i, y: y * 2.0, x), compiler_options=options)
  assert float(f(jnp.float32(0.5))) == 4.0


def test_the_options_are_ones_xla_accepts():
  # XLA validates every name and enum value at compile time on any backend (a typo is INVALID_ARGUMENT)
  f = jax.jit(lambda x: jnp.tanh(x) * 2.0, compiler_options=xla_options.COMMAND_BUFFERS)
  assert float(f(jnp.float32(0.5))) == pytest.approx(2 * 0.46211716)


def test_trainer_compiles_its_steps_with_them(monkeypatch, tmp_path, data_dir):
  # a bad option proves the trainer's jit receives whatever compiler_options returns
  from aila_jax.train import trainer  # pylint: disable=import-outside-toplevel
  from helpers import make_testing_config  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(xla_options, "compiler_options",
                      lambda config, backend=None: {"xla_gpu_enable_command_buffer": "NOT_A_COMMAND_TYPE"})
  # the data directory from the fixture, not from $AILA_DATA_DIR (CI finds ../shared/data without it)
  config = make_testing_config(data_dir, num_train_steps=2, eval_every=2, checkpoint_every=2)
  with pytest.raises(Exception, match="NOT_A_COMMAND_TYPE"):
    trainer.train_and_evaluate(config, tmp_path / "run")


def test_config_key_is_checked():
  from configs import testing  # pylint: disable=import-outside-toplevel
  config = testing.get_config()
  with config.ignore_type():  # typed in configs/default.py; a dict-built config can hold anything
    config.xla_command_buffers = "on"
  with pytest.raises(ConfigError, match="config.xla_command_buffers"):
    config_check.check_config(config)


def test_command_line_switches_exist_in_the_default_config():
  # `--config.KEY=...` only overrides keys the config has: the README's switches must be there (they were not)
  from configs import default  # pylint: disable=import-outside-toplevel
  config = default.get_config()
  assert config.xla_command_buffers is True and config.compilation_cache is True
  assert "compilation_cache_dir" in config and config.compilation_cache_dir is None
  config_check.check_config(config)


def test_a_failure_to_record_cuda_graphs_names_the_keys_to_change():
  cudnn = jax.errors.JaxRuntimeError("UNKNOWN: <unknown cudnn status: 5003>\nin external/xla+/cuda_dnn.cc(5245)")
  err = xla_options.explain_step_failure(cudnn, xla_options.COMMAND_BUFFERS)
  assert isinstance(err, xla_options.CommandBufferError)
  assert "--config.xla_command_buffers=False" in str(err) and "JAX_COMPILATION_CACHE_DIR" in str(err)
  assert "cudnn status: 5003" in str(err) and "cuda_dnn.cc" not in str(err)  # the first line only
  assert xla_options.explain_step_failure(cudnn, None) is None  # no CUDA graphs: the error is not ours to explain
  oom = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 1.00GiB")
  assert xla_options.explain_step_failure(oom, xla_options.COMMAND_BUFFERS) is None


def test_trainer_explains_a_first_step_that_fails_to_record(monkeypatch, tmp_path, data_dir):
  from aila_jax.train import trainer  # pylint: disable=import-outside-toplevel
  from helpers import make_testing_config  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(xla_options, "compiler_options",
                      lambda config, backend=None: dict(xla_options.COMMAND_BUFFERS))

  def fail(x):
    raise jax.errors.JaxRuntimeError("UNKNOWN: <unknown cudnn status: 5003> [executable_name='jit_train_step']")
  monkeypatch.setattr(trainer.jax, "block_until_ready", fail)
  config = make_testing_config(data_dir, num_train_steps=2, eval_every=2, checkpoint_every=2)
  with pytest.raises(xla_options.CommandBufferError, match="xla_command_buffers=False") as info:
    trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert isinstance(info.value.__cause__, jax.errors.JaxRuntimeError)
