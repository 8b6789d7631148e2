"""The stacked weighted sums (the default, fast to compile) equal the per-slot sums, outputs and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.attention import depth as da

KEY = jax.random.PRNGKey(0)


def _slots(t, shape):
  return [jax.random.normal(jax.random.fold_in(KEY, i), shape) for i in range(t)]


def test_pure_functions_agree():
  xs, w = _slots(3, (2, 4, 5)), jax.nn.softmax(jax.random.normal(KEY, (2, 3)))
  for weights in (w, w[0]):
    np.testing.assert_allclose(da.mix_depth(weights, xs, impl="stacked"), da.mix_depth(weights, xs, impl="slots"),
                               rtol=1e-6, atol=1e-6)
  q, ks, vs = jax.random.normal(KEY, (2, 4, 8)), _slots(3, (2, 4, 8)), _slots(3, (2, 4, 8))
  a = da.per_token_depth_attention(q, ks, vs, num_heads=2, impl="stacked")
  b = da.per_token_depth_attention(q, ks, vs, num_heads=2, impl="slots")
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-6)
  q, ks = jax.random.normal(KEY, (2, 8)), _slots(3, (2, 8))
  a = da.pooled_depth_attention(q, ks, vs, num_heads=2, impl="stacked")
  b = da.pooled_depth_attention(q, ks, vs, num_heads=2, impl="slots")
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="impl"):
    da.mix_depth(w, xs, impl="loop")


@pytest.mark.parametrize("mixer", ["aila1", "mrla_base"])  # mix_depth and pooled attention in a network
def test_resnet_outputs_and_gradients_agree(mixer, monkeypatch):
  model = models.get_model("cifar_resnet", num_classes=3, depth=14, widths=(4,), mixer=mixer)  # one stage, 3 slots
  x = jax.random.normal(KEY, (2, 8, 8, 3))
  v = model.init(jax.random.PRNGKey(1), x)
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(KEY, p.shape), v["params"])  # no special values
  results = {}
  for impl in ("stacked", "slots"):
    monkeypatch.setattr(da, "DEFAULT_SUM_IMPL", impl)

    def loss(p):  # a new function per impl: traced again, never a cached trace of the other impl
      out, _ = model.apply({"params": p, "batch_stats": v["batch_stats"]}, x, train=True, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(out[0]))

    results[impl] = jax.jit(jax.value_and_grad(loss))(params)
  (l1, g1), (l2, g2) = results["stacked"], results["slots"]
  np.testing.assert_allclose(l1, l2, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
