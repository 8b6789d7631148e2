"""Bad configs fail before compiling, naming the key and the expectation."""
import ml_collections
import pytest

from aila_jax.errors import ConfigError, DataError
from aila_jax.train import config_check, train_and_evaluate
from helpers import make_testing_config


def test_testing_and_default_configs_are_valid():
  from configs import default, testing
  config_check.check_config(default.get_config())
  config_check.check_config(testing.get_config())


def test_prices_configs_are_valid_and_differ_only_in_the_model():
  from configs import prices_aila, prices_aila_lstm, prices_lstm
  configs = [m.get_config() for m in (prices_aila, prices_lstm, prices_aila_lstm)]
  for config in configs:
    config_check.check_config(config)
  assert configs[2].model_name == "depth_lstm" and configs[2].model.mixer == "aila1"
  strip = lambda c: {k: v for k, v in c.to_dict().items() if k not in ("model", "model_name")}  # noqa: E731
  assert strip(configs[0]) == strip(configs[1]) == strip(configs[2])
  assert {k: v for k, v in configs[2].model.to_dict().items() if k != "mixer"} == \
      {k: v for k, v in configs[1].model.to_dict().items() if k != "mixer"}


@pytest.mark.parametrize("key,value,match", [
    ("batch_size", 0, r"config.batch_size: expected an int > 0, got 0"),
    ("batch_size", 3.5, r"config.batch_size: expected an int > 0 \(type int\), got 3.5"),
    ("dtype", "float16", r"config.dtype: expected 'float32' or 'bfloat16', got 'float16'"),
    ("optimizer.learning_rate", -1.0, r"config.optimizer.learning_rate: expected a number > 0"),
    ("optimizer.name", "adamm", r"config.optimizer.name: expected one of"),
    ("schedule.name", "exp", r"config.schedule.name: expected one of"),
    ("label_smoothing", 1.5, r"config.label_smoothing"),
    ("progress", 1, r"config.progress: expected a bool"),
    ("num_train_steps", True, r"config.num_train_steps"),
])
def test_wrong_type_or_value(key, value, match, tmp_path):
  # A config file may hold any type; ConfigDict only type-checks later assignments.
  config = ml_collections.ConfigDict(make_testing_config(tmp_path).to_dict(), type_safe=False)
  node, *rest = key.split(".")
  if rest:
    config[node][rest[0]] = value
  else:
    config[node] = value
  with pytest.raises(ConfigError, match=match):
    config_check.check_config(config)


def test_unknown_key_is_named(tmp_path):
  config = make_testing_config(tmp_path)
  config.optimizer.learnig_rate = 0.1
  with pytest.raises(ConfigError, match=r"config.optimizer.learnig_rate: unknown key"):
    config_check.check_config(config)


@pytest.mark.parametrize("key,value,exc,match", [
    ("model_name", "resnet9000", ConfigError, r"config.model_name: unknown model 'resnet9000'"),
    ("dataset", "mnits", ConfigError, r"config.dataset: unknown dataset 'mnits'"),
    ("task", "regression", ConfigError, r"config.task: unknown task"),
    ("augment", "mixup", ConfigError, r"config.augment: expected one of \['crop_flip', 'none'\], got 'mixup'"),
    ("task_kwargs", {"bogus": 1}, ConfigError, r"config.task_kwargs: task 'classification' takes no option"),
    ("dataset_kwargs", {"lookback": 3}, ConfigError, r"config.dataset_kwargs: dataset 'mnist' takes no option"),
    ("batch_size", 12, ConfigError, r"config.batch_size: 12 is not divisible by the 8 devices"),
    ("model", {"hiden": (3,)}, ConfigError, r"config.model: model 'mlp' takes no argument\(s\) \['hiden'\]"),
])
def test_errors_raised_before_compiling(key, value, exc, match, tmp_path, data_dir):
  config = make_testing_config(data_dir)
  config[key] = value
  with pytest.raises(exc, match=match):
    train_and_evaluate(config, tmp_path)
  assert not (tmp_path / "checkpoints").exists()


def test_missing_data_dir_named(tmp_path):
  config = make_testing_config(tmp_path / "absent", data_source="local")
  with pytest.raises(ConfigError, match=r"config.data_dir: .*absent.* is not a directory"):
    train_and_evaluate(config, tmp_path / "w")


def test_data_dir_with_wrong_arrays(tmp_path):
  import numpy as np
  np.savez(tmp_path / "mnist.npz", x_train=np.zeros((8, 28, 28), np.float64),
           y_train=np.zeros(8, np.int64), x_test=np.zeros((8, 28, 28), np.uint8), y_test=np.zeros(8))
  with pytest.raises(DataError, match=r"'x_train' .* dtype float64; expected shape \(N, 28, 28\)"):
    train_and_evaluate(make_testing_config(tmp_path), tmp_path / "w")


def test_apply_override_reads_literals_and_names_bad_keys():
  c = ml_collections.ConfigDict({"model": {"widths": (1,), "name": "a"}, "lr": 0.1})
  config_check.apply_override(c, "model.widths=(32, 64)")
  config_check.apply_override(c, "model.name=lstm")
  assert c.model.widths == (32, 64) and c.model.name == "lstm"
  with pytest.raises(ConfigError, match="no key 'optim'"):
    config_check.apply_override(c, "optim.lr=3")
  with pytest.raises(ConfigError, match="key=value"):
    config_check.apply_override(c, "lr")


@pytest.mark.parametrize("name,overrides,want", [
    ("cifar10_resnet", ["--config.model.skip_layers=('stage_1/block_4',)", "--config.ela.tau=0.3"],
     {("model", "skip_layers"): ("stage_1/block_4",), ("ela", "tau"): 0.3, ("ela", "enabled"): False}),
    ("wsram_mnist", ["--config.model.inference_input=image"], {("model", "inference_input"): "image"}),
    ("ram_mnist", ["--config.task_kwargs.eval_samples=5"], {("task_kwargs", "eval_samples"): 5}),
])
def test_documented_command_line_overrides_parse(name, overrides, want, monkeypatch):
  # the README's overrides, parsed as train.py parses them (a locked config loaded by config_flags, which reads
  # the override flags from sys.argv when the config flag is defined)
  import sys
  from absl import flags
  from ml_collections import config_flags
  from helpers import REPO
  fv = flags.FlagValues()
  path = str(REPO / "configs" / f"{name}.py")
  argv = ["train.py", f"--config={path}", *overrides]
  monkeypatch.setattr(sys, "argv", argv)
  config_flags.DEFINE_config_file("config", path, flag_values=fv, lock_config=True)
  fv(argv)
  for (group, key), value in want.items():
    assert fv["config"].value[group][key] == value
