"""Backbones with a depth mixer: depths, parameter budgets, intermediates for plotting, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.train.state import param_count


def _count(name, shape, **kw):
  model = models.get_model(name, num_classes=10, **kw)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape), train=False))
  return param_count(variables["params"])


def test_cifar_resnet_depths_match_he_et_al():
  # He et al. 2016, table 6: 0.27M / 0.85M / 1.7M (ours: projection shortcuts at the 2 stage changes)
  counts = {d: _count("cifar_resnet", (32, 32, 3), depth=d) for d in (20, 56, 110)}
  assert counts == {20: 272_474, 56: 855_770, 110: 1_730_714}
  assert _count("cifar_resnet", (32, 32, 3), depth=56, block="bottleneck") == 591_322


def test_mrla_light_costs_under_five_percent_params():
  base = _count("cifar_resnet", (32, 32, 3), depth=20)
  for mixer in ("mrla_light", "mrla_base", "aila1"):
    extra = _count("cifar_resnet", (32, 32, 3), depth=20, mixer=mixer) / base - 1
    assert 0 < extra < 0.05, (mixer, extra)


@pytest.mark.parametrize("mixer", ["aila2", "mrla_light"])
def test_cifar_resnet_trains_a_step(mixer):
  model = models.get_model("cifar_resnet", num_classes=10, depth=8, widths=(4, 8, 8), mixer=mixer,
                           mixer_kwargs={"num_heads": 2} if mixer == "aila2" else None, drop_path=0.2)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
  variables = jax.jit(lambda: model.init(jax.random.PRNGKey(1), x, train=False))()

  def loss(p):
    (out, inter), _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x, train=True,
                                  mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(2)})
    return (out ** 2).mean(), inter

  (value, inter), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
  assert np.isfinite(value)
  chex.assert_tree_all_finite(grads)
  if mixer in ("aila1", "aila2", "mrla_base", "dense"):
    for s in range(3):  # one row per block (n = 1 at depth 8), one column per buffer slot
      w = inter["depth_weights"][f"stage_{s}"]
      chex.assert_shape(w, (1, 2))
      np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
  else:
    assert "depth_weights" not in inter


def test_residual_resnet_is_the_plain_resnet():
  """With mixer='residual' each block is relu(F(x) + shortcut(x)): equal to mixer 'aila1' with raw
  weights initialised one-hot on the previous layer."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
  outs = []
  for mixer, kw in (("residual", None), ("aila1", {"normalization": "none"})):
    model = models.get_model("cifar_resnet", num_classes=10, depth=8, widths=(4, 8, 8), mixer=mixer,
                             mixer_kwargs=kw)
    variables = jax.jit(lambda m=model: m.init(jax.random.PRNGKey(1), x, train=False))()
    outs.append(jax.jit(lambda v, m=model: m.apply(v, x, train=False)[0])(variables))
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,mixer", [("depth_mlp", m) for m in ("none", "residual", "aila1", "aila2",
                                                                     "mrla_base", "mrla_light")]
                         + [("depth_lstm", m) for m in ("none", "aila2")])
def test_sequence_backbones(name, mixer):
  model = models.get_model(name, num_classes=3, width=16, depth=3, mixer=mixer)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 12, 1))
  variables = jax.jit(lambda: model.init(jax.random.PRNGKey(1), x, train=False))()
  out, inter = jax.jit(lambda v: model.apply(v, x, train=False))(variables)
  chex.assert_shape(out, (2, 3))
  chex.assert_tree_all_finite(out)
  if mixer in ("aila1", "aila2", "mrla_base"):
    chex.assert_shape(inter["depth_weights"]["stage_0"], (3, 4))


def test_backbone_errors():
  with pytest.raises(ConfigError, match=r"config.model.depth: a basic CIFAR ResNet has depth 6n \+ 2"):
    _count("cifar_resnet", (32, 32, 3), depth=21)
  with pytest.raises(ConfigError, match=r"config.model.depth: a bottleneck CIFAR ResNet has depth 9n \+ 2"):
    _count("cifar_resnet", (32, 32, 3), depth=20 + 6, block="bottleneck")
  with pytest.raises(ConfigError, match="config.model.block: expected 'basic' or 'bottleneck'"):
    _count("cifar_resnet", (32, 32, 3), block="wide")
  with pytest.raises(ConfigError, match="config.model.mixer: unknown depth mixer 'skip'"):
    _count("cifar_resnet", (32, 32, 3), mixer="skip")
  with pytest.raises(ConfigError, match=r"config.model.mixer_kwargs: mixer 'residual' takes no option"):
    _count("depth_mlp", (8, 1), mixer="residual", mixer_kwargs={"num_heads": 4})
  with pytest.raises(ConfigError, match="config.model.mixer_kwargs.num_heads: aila2 needs the width 20"):
    _count("depth_mlp", (8, 1), width=20, mixer="aila2", mixer_kwargs={"num_heads": 3})
  with pytest.raises(ConfigError, match="config.model.depth: expected an int >= 1"):
    _count("depth_lstm", (8, 1), depth=0)
  with pytest.raises(ValueError, match=r"cifar_resnet: expected images \[B, H, W, C\]"):
    _count("cifar_resnet", (32, 32))


def test_ela_on_stages_of_one_block_is_a_clear_error():
  """ELA compares adjacent blocks of a stage: with one block per stage (ResNet-8, a 1-layer MLP) there is
  nothing to measure, said at initialisation (the trainer used to stop at its first log step blaming the task)."""
  with pytest.raises(ConfigError, match=r"config.ela.enabled: cifar_resnet has no pair .*config.model.depth=8: 1 "
                                        r"basic block\(s\) per stage"):
    _count("cifar_resnet", (32, 32, 3), depth=8, mixer="mrla_base", ela_stats=True)
  with pytest.raises(ConfigError, match=r"config.ela.enabled: depth_mlp has no pair .*config.model.depth=1\)"):
    _count("depth_mlp", (8, 1), depth=1, mixer="aila1", ela_stats=True)
  _count("cifar_resnet", (32, 32, 3), depth=14, mixer="mrla_base", ela_stats=True)  # 2 blocks a stage: fine
