"""Pinned: ECA's adaptive kernel size (aila_jax.attention.depth.eca_kernel_size) and the MRLA query/key kernels
it sizes, against values computed by hand from ECA-Net's formula k = odd(floor(|(log2 C + 1) / 2|))."""

import jax
import jax.numpy as jnp
import pytest

from aila_jax.attention import depth as da
from aila_jax.nn import depth as dn

# C: (log2 C + 1) / 2 -> floor -> next odd
HAND = {2: 1, 4: 1, 8: 3, 16: 3, 32: 3, 64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7, 4096: 7, 8192: 7}


def test_eca_kernel_size_by_hand():
  assert {c: da.eca_kernel_size(c) for c in HAND} == HAND
  assert da.eca_kernel_size(64, gamma=1, b=0) == 7  # log2 64 = 6 -> 7
  assert da.eca_kernel_size(256, gamma=3, b=1) == 3  # 9 / 3 = 3


@pytest.mark.parametrize("c", [8, 128])
def test_mrla_query_key_kernels_have_the_eca_size(c):
  params = dn._MRLAProjections().init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, c)))["params"]  # pylint: disable=protected-access
  for name in ("wq", "wk"):
    assert params[name]["kernel"].shape == (HAND[c], 1, 1)
