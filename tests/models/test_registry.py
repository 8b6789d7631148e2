"""Every registered model: output shapes, (logits, intermediates) contract, pinned parameter counts."""
import chex
import jax
import jax.numpy as jnp
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.train.state import param_count

# name -> (kwargs, input shape, parameter count). A change of architecture must change this table.
PINNED = {
    "mlp": (dict(hidden=(32,)), (28, 28, 1), 784 * 32 + 32 + 32 * 10 + 10),
    "cnn": (dict(widths=(16, 32), hidden=128), (28, 28, 1),
            9 * 16 + 2 * 16 + 9 * 16 * 32 + 2 * 32 + 7 * 7 * 32 * 128 + 128 + 1290),
    # ResNet-20: stem, 3 stages of 3 BasicBlocks (conv weights + BN scale/bias), 1x1 projection
    # shortcuts at stages 2 and 3, head (He et al. 2016: 0.27M).
    "cifar_resnet": (dict(depth=20), (32, 32, 3),
                     (27 * 16 + 32) + 3 * (2 * 9 * 16 * 16 + 4 * 16)
                     + (9 * 16 * 32 + 9 * 32 * 32 + 4 * 32 + 16 * 32 + 2 * 32) + 2 * (2 * 9 * 32 * 32 + 4 * 32)
                     + (9 * 32 * 64 + 9 * 64 * 64 + 4 * 64 + 32 * 64 + 2 * 64) + 2 * (2 * 9 * 64 * 64 + 4 * 64)
                     + 64 * 10 + 10),
    # embed, 3 pre-norm blocks (LN, 32->64->32), LN, head
    "depth_mlp": (dict(width=32, depth=3), (16, 1),
                  (16 * 32 + 32) + 3 * (2 * 32 + 32 * 64 + 64 + 64 * 32 + 32) + 2 * 32 + 32 * 10 + 10),
    # embed, 2 LSTM layers (4 gates: input and hidden kernels, bias), head
    "depth_lstm": (dict(width=32, depth=2), (16, 1), (32 + 32) + 2 * (4 * (32 * 32 + 32 * 32 + 32)) + 330),
    # RAM (8x8 glimpse, 1 scale): glimpse net (what, where, what_out, where_out without bias), ReLU core
    # (h2h, i2h without bias), location mean, classifier, baseline
    "ram": ({}, (28, 28, 1), (64 * 128 + 128) + (2 * 128 + 128) + (128 * 256 + 256) + 128 * 256
            + (256 * 256 + 256) + 256 * 256 + (256 * 2 + 2) + 2570 + 257),
    # WS-RAM: RAM without the baseline, plus the inference net (hidden, label embedding, mean, log-std)
    "wsram": ({}, (28, 28, 1), (64 * 128 + 128) + (2 * 128 + 128) + (128 * 256 + 256) + 128 * 256
              + (256 * 256 + 256) + 256 * 256 + (256 * 2 + 2) + 2570
              + (256 * 256 + 256) + 10 * 256 + 2 * (256 * 2 + 2)),
}


# Models whose inputs are not images: pinned in their own test files.
PINNED_ELSEWHERE = {
    "transformer": "tests/models/test_transformer_models.py",
    "transformer_classifier": "tests/models/test_transformer_models.py",
    "depth_text_mlp": "tests/models/test_depth_text.py",
    "depth_transformer_classifier": "tests/models/test_depth_text.py",
    "lstm_classifier": "tests/models/test_depth_text.py",
    # Deep Layer Aggregation: counts checked without building the big ones (jax.eval_shape)
    "dla34": "tests/models/test_dla.py",
    "dla46_c": "tests/models/test_dla.py",
    "dla46x_c": "tests/models/test_dla.py",
    "dla60x_c": "tests/models/test_dla.py",
    "dla60": "tests/models/test_dla.py",
    "dla60x": "tests/models/test_dla.py",
    "dla102": "tests/models/test_dla.py",
    "dla102x": "tests/models/test_dla.py",
    "dla102x2": "tests/models/test_dla.py",
    "dla169": "tests/models/test_dla.py",
    "dla34_cifar": "tests/models/test_dla.py",
    "dla34_up": "tests/models/test_dla.py",
    "cifar_dla": "tests/models/test_dla.py",
    "cifar_simple_dla": "tests/models/test_dla.py",
    # ResNet-50 with a depth mixer: torchvision / official MRLA counts, with jax.eval_shape
    "resnet50_depth": "tests/models/test_depth_resnet.py",
}


def test_every_model_is_pinned():
  assert set(PINNED) | set(PINNED_ELSEWHERE) == set(models.MODELS)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shapes_and_param_count(name):
  kwargs, shape, count = PINNED[name]
  model = models.get_model(name, num_classes=10, **kwargs)
  x = jnp.zeros((3,) + shape)
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  assert param_count(variables["params"]) == count
  logits, inter = model.apply(variables, x, train=False)
  chex.assert_shape(logits, (3, 10))
  assert isinstance(inter, dict) and inter


def test_bfloat16_compute_keeps_float32_params():
  model = models.get_model("cnn", num_classes=10, dtype=jnp.bfloat16)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)), train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables["params"]))
  logits, inter = model.apply(variables, jnp.zeros((2, 28, 28, 1)), train=False)
  assert logits.dtype == jnp.float32 and inter["features"].dtype == jnp.bfloat16


def test_unknown_model_and_kwarg():
  with pytest.raises(ConfigError, match=r"config.model_name: unknown model 'vgg'; expected one of"):
    models.get_model("vgg", num_classes=10)
  with pytest.raises(ConfigError, match=r"takes no argument\(s\) \['depth'\]"):
    models.get_model("mlp", num_classes=10, depth=3)
