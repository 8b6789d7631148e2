"""Pins of redundancy.py that test_redundancy.py leaves open: eps smoothing outside 'pad'+reverse, squash_kl's
values (incl. minmax's all-equal case), EBQM's clip margin and its strict `u < tau`. References: numpy/scipy
written from the docstrings' formulas, or hand-computed values."""
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from aila_jax.attention import redundancy as red

RNG = np.random.default_rng(1)
P_PREV = scipy.special.softmax(RNG.normal(size=(2, 3, 4)), axis=-1)
P_NEXT = scipy.special.softmax(RNG.normal(size=(2, 3, 5)), axis=-1)


def _smooth(q, eps):  # the docstring's q -> (q + eps) / (1 + n eps)
  return (q + eps) / (1 + q.shape[-1] * eps)


def _kl(p, q):
  return scipy.special.rel_entr(p, q).sum(-1)


@pytest.mark.parametrize("support,reverse", [("pad", False), ("renormalize", False), ("renormalize", True)])
def test_eps_smooths_the_second_argument_in_every_mode(support, reverse):
  # docstring: "eps smooths the second argument in the other modes too"
  eps = 0.05
  renorm = P_NEXT[..., :-1] / P_NEXT[..., :-1].sum(-1, keepdims=True)
  padded = np.concatenate([P_PREV, np.zeros(P_PREV.shape[:-1] + (1,))], -1)
  p, q = {("pad", False): (padded, P_NEXT), ("renormalize", False): (P_PREV, renorm),
          ("renormalize", True): (renorm, P_PREV)}[(support, reverse)]
  want = _kl(p, _smooth(q, eps))
  got = np.asarray(red.adjacent_kl(P_PREV, P_NEXT, support=support, reverse=reverse, eps=eps))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert np.abs(want - _kl(p, q)).min() > 1e-3  # eps=0.05 moves every value: the check can tell


def test_squash_kl_hand_values():
  kl = np.array([0.0, 1.0, 3.0, 5.0])
  np.testing.assert_allclose(red.squash_kl(kl, "ratio"), [0.0, 0.5, 0.75, 5 / 6], rtol=1e-6)
  np.testing.assert_allclose(red.squash_kl(kl, "exp"), 1 - np.exp(-kl), rtol=1e-6)
  np.testing.assert_allclose(red.squash_kl(kl, "minmax"), [0.0, 0.2, 0.6, 1.0], rtol=1e-6)
  np.testing.assert_allclose(red.squash_kl(kl + 2.0, "minmax"), [0.0, 0.2, 0.6, 1.0], rtol=1e-6)  # shift-free
  # documented: minmax is 0 where all KLs are equal (no 0/0)
  np.testing.assert_array_equal(np.asarray(red.squash_kl(np.full(3, 0.7), "minmax")), np.zeros(3))


@pytest.mark.parametrize("squash", ["minmax", "ratio"])
def test_ebqm_clips_to_eps_and_one_minus_eps(squash):
  # a wide clip margin (eps = 0.1) so that the clip changes the moments and the quantiles visibly
  kl = np.array([0.0, 0.01, 0.3, 0.5, 0.9, 1.4, 40.0])
  eps = 0.1
  s = {"minmax": (kl - kl.min()) / (kl.max() - kl.min()), "ratio": kl / (1 + kl)}[squash]
  s = np.clip(s, eps, 1 - eps)
  m, v = s.mean(), s.var()
  c = m * (1 - m) / v - 1
  a, b = m * c, (1 - m) * c
  q = scipy.stats.beta.cdf(s, a, b)
  got = red.ebqm(jnp.asarray(kl), tau=0.2, squash=squash, eps=eps)
  assert bool(got.valid)
  np.testing.assert_allclose([float(got.alpha), float(got.beta)], [a, b], rtol=1e-4)
  np.testing.assert_allclose(np.asarray(got.quantiles), q, rtol=2e-4, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(got.redundant), q < 0.2)


def test_ebqm_threshold_is_strict():
  # docstring: redundant = u < tau. With tau equal to a layer's own quantile that layer is not redundant.
  kl = jnp.array([0.01, 0.5, 0.6, 0.7, 0.8])
  u = np.asarray(red.ebqm(kl).quantiles)
  i = int(np.argmin(np.abs(u - 0.5)))  # some layer's quantile, as the (float32-exact) threshold
  tau = float(u[i])
  assert 0 < tau < 1
  r = np.asarray(red.ebqm(kl, tau=tau).redundant)
  np.testing.assert_array_equal(r, u < tau)
  assert not r[i] and r.any()  # the layer at the threshold is out; a lower one is in
