"""DLAMixer details the node tests leave loose, against numpy: drop-path acts on the block output h_t only,
o_t = phi(DP(h_t) + x_{t-1}) (stochastic depth keeps the skip), not on the whole residual sum."""

import jax
import jax.numpy as jnp
import numpy as np

from aila_jax.nn import depth as dn


def test_dla_mixer_drop_path_drops_the_block_output_not_the_skip():
  rng = np.random.default_rng(0)
  b, rate = 64, 0.5
  prev = jnp.asarray(rng.normal(size=(b, 3)), jnp.float32)
  h = jnp.asarray(rng.normal(size=(b, 3)), jnp.float32)
  # layer 1 of a 4-block stage: odd position, no node, x_1 = o_1
  mixer = dn.make_mixer("dla", layer=1, depth=5, drop_path=rate, activation="relu", norm="none")
  buf = dn.DLAMixer.init_buffer(prev, 5)
  v = mixer.init(jax.random.PRNGKey(0), h, buf, train=False)
  x, _, _ = mixer.apply(v, h, buf, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  x, hn, pn = np.asarray(x, np.float64), np.asarray(h, np.float64), np.asarray(prev, np.float64)
  kept = np.maximum(hn / (1 - rate) + pn, 0.0)  # xi_b = 1: h_b / (1 - p) + x_{t-1}
  dropped = np.maximum(pn, 0.0)                 # xi_b = 0: the skip alone
  is_kept = np.all(np.abs(x - kept) < 1e-5, axis=1)
  is_dropped = np.all(np.abs(x - dropped) < 1e-5, axis=1)
  assert np.all(is_kept | is_dropped)
  assert 10 < is_dropped.sum() < b - 10  # both cases occur (Bernoulli(0.5) over 64 examples)
  # eval: no drop, no rescaling
  x_eval, _, _ = mixer.apply(v, h, buf, train=False)
  np.testing.assert_allclose(x_eval, np.maximum(hn + pn, 0.0), rtol=1e-6, atol=1e-6)
