"""bench/mix_variants.py: each way of writing the weighted sum over depth gives the formula's value and gradients
(numpy, from sum_i w_i x_i), for one mix per batch [T] and one per example [B, T], and `using` restores the
library's function."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import mix_variants  # noqa: E402
from aila_jax.attention import depth as da  # noqa: E402

KEY = jax.random.PRNGKey(3)


@pytest.mark.parametrize("name", sorted(mix_variants.VARIANTS))
@pytest.mark.parametrize("per_example", [False, True])
def test_value_and_gradients_equal_the_formula(name, per_example):
  t, shape = 4, (2, 3, 5)
  xs = tuple(jax.random.normal(jax.random.fold_in(KEY, i), shape) for i in range(t))
  w = jax.random.normal(jax.random.fold_in(KEY, 9), (2, t) if per_example else (t,))
  c = jax.random.normal(jax.random.fold_in(KEY, 10), shape)  # cotangent: loss = sum(c * mix)
  fn = mix_variants.VARIANTS[name]
  out, (gw, gx) = jax.jit(jax.value_and_grad(lambda w, xs: jnp.sum(c * fn(w, xs)), argnums=(0, 1)))(w, xs)
  x, wn, cn = np.stack([np.asarray(a, np.float64) for a in xs]), np.asarray(w, np.float64), np.asarray(c, np.float64)
  if per_example:
    mix = np.einsum("bt,tbij->bij", wn, x)
    want_gw = np.einsum("bij,tbij->bt", cn, x)
    want_gx = [wn[:, i, None, None] * cn for i in range(t)]
  else:
    mix = np.einsum("t,tbij->bij", wn, x)
    want_gw = np.einsum("bij,tbij->t", cn, x)
    want_gx = [wn[i] * cn for i in range(t)]
  np.testing.assert_allclose(out, np.sum(cn * mix), rtol=1e-5)
  np.testing.assert_allclose(fn(w, xs), mix, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(gw, want_gw, rtol=1e-5, atol=1e-5)
  for got, want in zip(gx, want_gx):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_using_swaps_the_mixers_function_and_restores_it():
  library = da.mix_depth
  with mix_variants.using("vjp"):
    assert da.mix_depth is mix_variants.VARIANTS["vjp"]
  assert da.mix_depth is library
  with pytest.raises(ValueError, match="mix='nope': expected one of"):
    mix_variants.using("nope")


@pytest.mark.parametrize("name", sorted(mix_variants.VARIANTS))
def test_each_variant_traces_through_a_mixer_with_the_networks_values(name):
  from aila_jax import models
  model = models.get_model("cifar_resnet", num_classes=3, depth=14, widths=(4,), mixer="aila1")
  x = jax.random.normal(KEY, (2, 8, 8, 3))
  v = model.init(jax.random.PRNGKey(1), x)
  want = model.apply(v, x)[0]
  with mix_variants.using(name):  # the mixer calls mix_depth(weights, slots, barrier=...)
    got = jax.jit(lambda v: model.apply(v, x)[0])(v)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
