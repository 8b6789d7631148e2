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


def test_the_options_are_ones_xla_accepts():
  # XLA validates every name and enum value at compile time on any backend (a typo is INVALID_ARGUMENT)
  f = jax.jit(lambda x: jnp.tanh(x) * 2.0, compiler_options=xla_options.COMMAND_BUFFERS)
  assert float(f(jnp.float32(0.5))) == pytest.approx(2 * 0.46211716)


def test_trainer_compiles_its_steps_with_them(monkeypatch, tmp_path, data_dir):
  # a bad option proves the trainer's jit receives whatever compiler_options returns
  from aila_jax.train import trainer  # pylint: disable=import-outside-toplevel
  from helpers import make_testing_config  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(xla_options, "compiler_options",
                      lambda config: {"xla_gpu_enable_command_buffer": "NOT_A_COMMAND_TYPE"})
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
