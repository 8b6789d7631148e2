"""normalize_depth_weights' l1 epsilon, pinned by hand-computed cases: a_i = |w_i| / (eps + sum_V |w_j|)."""

import jax.numpy as jnp
import numpy as np

from aila_jax.attention import depth as da


def test_l1_normalization_epsilon():
  mask = da.depth_mask(3, 4)  # slots 0, 1, 2 readable
  # |w| = (1e-6, 1e-6, 0) over V, eps = 1e-6: each a = 1e-6 / 3e-6 = 1/3 (without eps it would be 1/2)
  w = da.normalize_depth_weights(jnp.array([1e-6, -1e-6, 0.0, 7.0]), mask, "l1")
  np.testing.assert_allclose(w, [1 / 3, 1 / 3, 0.0, 0.0], rtol=1e-4, atol=1e-7)
  # all-zero logits: zero weights, not 0/0
  np.testing.assert_array_equal(da.normalize_depth_weights(jnp.zeros(4), mask, "l1"), np.zeros(4))
  # a custom eps enters the denominator as given
  w = da.normalize_depth_weights(jnp.array([1.0, 2.0, -1.0, 5.0]), mask, "l1", eps=1.0)
  np.testing.assert_allclose(w, [1 / 5, 2 / 5, 1 / 5, 0.0], rtol=1e-6)


def test_no_readable_slot_gives_zero_weights():
  # _masked_softmax: "exactly 0 elsewhere", also when nothing is readable (layer 1 without the input)
  mask = da.depth_mask(1, 4, include_input=False)
  assert not np.asarray(mask).any()
  w = da.normalize_depth_weights(jnp.array([0.5, 1.0, -2.0, 3.0]), mask, "softmax")
  np.testing.assert_array_equal(w, np.zeros(4))
