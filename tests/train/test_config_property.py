"""Property test over config overrides: random valid and invalid values for the main keys either train a
step or raise ConfigError naming one of the overridden keys, never another exception."""
import re

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from aila_jax.errors import ConfigError
from aila_jax.train import train_and_evaluate
from aila_jax.train.config_check import apply_override
from helpers import make_testing_config

_NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 3))
_ANY = st.one_of(_NUMBERS, st.text(max_size=4), st.none(), st.booleans())

KEYS = {  # key -> values to draw from: valid ones and invalid ones of the right and the wrong type
    "batch_size": st.one_of(st.sampled_from([8, 16, 0, -8, 12, 7]), _ANY),
    "eval_batch_size": st.one_of(st.sampled_from([1000, 2000, 0, 12]), _ANY),
    "optimizer.name": st.one_of(st.sampled_from(["sgd", "adam", "adamw", "lamb", "adamm", ""]), _ANY),
    "optimizer.learning_rate": st.one_of(st.sampled_from([1e-3, 0.1, 0.0, -1.0]), _ANY),
    "optimizer.weight_decay": st.one_of(st.sampled_from([0.0, 1e-4, -1.0]), _ANY),
    "optimizer.grad_clip_norm": st.one_of(st.sampled_from([None, 1.0, 0.0, -1.0]), _ANY),
    "schedule.name": st.one_of(st.sampled_from(["constant", "cosine", "warmup_cosine", "linear", "cosin"]),
                               _ANY),
    "schedule.warmup_steps": st.one_of(st.sampled_from([0, 1, 5, -1]), _ANY),
    "dtype": st.one_of(st.sampled_from(["float32", "bfloat16", "float16"]), _ANY),
    "label_smoothing": st.one_of(st.sampled_from([0.0, 0.1, 1.0, -0.1]), _ANY),
    "log_every": st.one_of(st.sampled_from([1, 0, -1]), _ANY),
    "seed": st.one_of(st.sampled_from([0, 3, -1]), _ANY),
    "model.hidden": st.one_of(st.sampled_from([(8,), (4, 4), (), (0,), (-4,), 8, "8"]), _ANY),
    "model.dropout_rate": st.one_of(st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.5]), _ANY),
}


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(overrides=st.dictionaries(st.sampled_from(sorted(KEYS)), st.none(), min_size=1, max_size=3).flatmap(
    lambda d: st.fixed_dictionaries({k: KEYS[k] for k in d})))
def test_overrides_train_a_step_or_name_the_key(overrides, data_dir, tmp_path_factory):
  config = make_testing_config(data_dir, num_train_steps=1, eval_every=0, checkpoint_every=1, log_every=1,
                               **{"model.hidden": (8,), "eval_batch_size": 2000})
  try:
    for key, value in overrides.items():
      apply_override(config, f"{key}={value!r}")
    result = train_and_evaluate(config, tmp_path_factory.mktemp("run"))
  except ConfigError as e:
    named = re.findall(r"config\.([\w.]+)", str(e))
    assert named and any(n == k or n.startswith(k + ".") or k.startswith(n + ".") for n in named
                         for k in overrides), f"{overrides}: the error names none of the keys: {e}"
    return
  assert result["step"] == 1, overrides
