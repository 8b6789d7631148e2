"""MRLA's official initialisation (issue 16, item 5) and AILA-1's linear connection (item 9)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.nn import depth as dn

KEY = jax.random.PRNGKey(0)


def _proj_params(init, c, n):
  """``n`` independent initialisations of MRLA's projections for a ``[1, 2, 2, c]`` block output."""
  mod = dn._MRLAProjections(mrla_init=init)  # pylint: disable=protected-access
  x = jnp.zeros((1, 2, 2, c))
  return jax.vmap(lambda k: mod.init(k, x)["params"])(jax.random.split(KEY, n))


def test_official_value_init_is_he_fan_out():
  c = 1024
  wv = np.asarray(_proj_params("official", c, 2)["wv"]["kernel"])  # (2, 3, 3, 1, C)
  assert wv.shape == (2, 3, 3, 1, c)
  want = math.sqrt(2.0 / (9 * c))  # kaiming_normal_(fan_out) of Conv2d(C, C, 3, groups=C): fan_out = 9C
  assert abs(wv.std() / want - 1) < 0.02  # 18432 draws: relative s.e. of the std ~0.5%
  assert abs(wv.mean()) < 3 * want / math.sqrt(wv.size)
  assert np.abs(wv).max() > 3 * want  # a normal, not a truncated one


def test_official_query_key_init_is_torch_default():
  c = 64  # ECA kernel 3: PyTorch's Conv1d(1, 1, 3) default is U(-1/sqrt(3), 1/sqrt(3))
  p = _proj_params("official", c, 1000)
  bound = 1 / math.sqrt(3)
  for name in ("wq", "wk"):
    w = np.asarray(p[name]["kernel"])  # (1000, 3, 1, 1)
    assert w.shape[1:] == (3, 1, 1)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.08  # the variance of U(-b, b) is b^2 / 3
  flax = np.asarray(_proj_params("flax", c, 2)["wv"]["kernel"])
  assert abs(flax.std() * 3 - 1) < 0.3  # the earlier LeCun init: std 1/3 for a 3x3 depthwise kernel


@pytest.mark.parametrize("mixer", ["mrla_light", "mrla_base"])
def test_init_only_change_and_zero_last_bn(mixer):
  kw = dict(num_classes=3, depth=8, widths=(4, 8, 8), mixer=mixer)
  x = jax.random.normal(KEY, (2, 8, 8, 3))
  new = models.get_model("cifar_resnet", **kw)
  old = models.get_model("cifar_resnet", mixer_kwargs={"mrla_init": "flax"}, **kw)
  v_new, v_old = new.init(KEY, x), old.init(KEY, x)
  assert jax.tree.structure(v_new) == jax.tree.structure(v_old)  # checkpoints load either way
  for s in range(3):  # the last BN of every residual branch starts at zero with the official init
    assert np.all(np.asarray(v_new["params"][f"stage{s}_block1"]["b"]["bn"]["scale"]) == 0)
    assert np.all(np.asarray(v_old["params"][f"stage{s}_block1"]["b"]["bn"]["scale"]) == 1)
  # for given weights the two networks are the same function
  y_new = new.apply(v_old, x, train=False)[0]
  y_old = old.apply(v_old, x, train=False)[0]
  np.testing.assert_array_equal(np.asarray(y_new), np.asarray(y_old))
  # zero_init_last_bn overrides the mixer's default; the residual network keeps torchvision's ones
  forced = models.get_model("cifar_resnet", zero_init_last_bn=False, **kw).init(KEY, x)
  assert np.all(np.asarray(forced["params"]["stage0_block1"]["b"]["bn"]["scale"]) == 1)
  res = models.get_model("cifar_resnet", **dict(kw, mixer="residual")).init(KEY, x)
  assert np.all(np.asarray(res["params"]["stage0_block1"]["b"]["bn"]["scale"]) == 1)


def test_mrla_init_bad_value():
  x = jnp.zeros((1, 4, 4, 8))
  with pytest.raises(ConfigError, match="mixer_kwargs.mrla_init"):
    dn.MRLALightMixer(layer=1, depth=2, mrla_init="torch").init(KEY, x, {"prev": x})


def _slots(t, shape):
  return tuple(jax.random.normal(jax.random.fold_in(KEY, i), shape) for i in range(t))


@pytest.mark.parametrize("include_input,residual", [(True, False), (False, True)])
def test_aila1_linear_matches_numpy(include_input, residual):
  b, p, d, depth, t = 2, 5, 4, 5, 3
  xs, h = _slots(t, (b, p, d)), jax.random.normal(jax.random.fold_in(KEY, 99), (b, p, d))
  m = dn.AILA1Mixer(layer=t, depth=depth, activation="relu", connection="linear", include_input=include_input,
                    residual=residual)
  maps = np.asarray(jax.random.normal(KEY, (depth, d, d)))
  out, buf, w = m.apply({"params": {"depth_maps": maps}}, h, {"x": xs})
  lo = 0 if include_input else 1
  xs_np = [np.asarray(x) for x in xs]
  pre = np.asarray(h) + sum(xs_np[i] @ maps[i] for i in range(lo, t)) + (xs_np[-1] if residual else 0)
  np.testing.assert_allclose(np.asarray(out), np.maximum(pre, 0), rtol=1e-5, atol=1e-5)
  norms = np.sqrt((maps ** 2).sum(axis=(1, 2)))
  norms[:lo], norms[t:] = 0, 0
  np.testing.assert_allclose(np.asarray(w), norms / norms.sum(), rtol=1e-6)
  assert len(buf["x"]) == t + 1


@pytest.mark.parametrize("normalization", ["softmax", "none"])
def test_aila1_linear_starts_as_the_scalar_mix(normalization):
  kw = dict(num_classes=3, depth=14, widths=(4, 8, 8), mixer="aila1")
  x = jax.random.normal(KEY, (2, 8, 8, 3))
  lin = models.get_model("cifar_resnet", mixer_kwargs={"connection": "linear", "normalization": normalization}, **kw)
  sca = models.get_model("cifar_resnet", mixer_kwargs={"normalization": normalization}, **kw)
  v_lin, v_sca = lin.init(KEY, x), sca.init(KEY, x)
  maps = np.asarray(v_lin["params"]["stage1_mixer2"]["depth_maps"])  # (3, 8, 8): layer 2 reads slots 0, 1
  want = [0.5, 0.5, 0.0] if normalization == "softmax" else [0.0, 1.0, 0.0]
  np.testing.assert_allclose(maps, np.asarray(want)[:, None, None] * np.eye(8), atol=1e-7)
  np.testing.assert_allclose(np.asarray(lin.apply(v_lin, x)[0]), np.asarray(sca.apply(v_sca, x)[0]), atol=1e-5)
  with pytest.raises(ConfigError, match="mixer_kwargs.connection"):
    models.get_model("cifar_resnet", mixer_kwargs={"connection": "conv"}, **kw).init(KEY, x)
