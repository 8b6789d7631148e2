"""adjacent_kl, ebqm and ema against scipy (stats.beta, special.rel_entr, stats.entropy) on fixed inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from aila_jax.attention import redundancy as red

RNG = np.random.default_rng(0)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


P_PREV = _softmax(RNG.normal(size=(3, 2, 4)))  # (B, N, t-1)
P_NEXT = _softmax(RNG.normal(size=(3, 2, 5)))  # (B, N, t)


def _scipy_kl(p, q):
  return np.apply_along_axis(lambda pq: scipy.stats.entropy(pq[:p.shape[-1]], pq[p.shape[-1]:]), -1,
                             np.concatenate([p, q], -1))


@pytest.mark.parametrize("jit", [False, True])
def test_pad_kl_matches_scipy_and_the_decomposition(jit):
  f = jax.jit(red.adjacent_kl) if jit else red.adjacent_kl
  got = np.asarray(f(P_PREV, P_NEXT))
  padded = np.concatenate([P_PREV, np.zeros(P_PREV.shape[:-1] + (1,))], -1)
  np.testing.assert_allclose(got, scipy.special.rel_entr(padded, P_NEXT).sum(-1), rtol=1e-5)
  np.testing.assert_allclose(got, _scipy_kl(padded, P_NEXT), rtol=1e-5)
  # KL(P ⊕ 0 || Q) = KL(P || Q~) - log(1 - Q(new)), Q~ = Q without its new slot, renormalised
  renorm = P_NEXT[..., :-1] / P_NEXT[..., :-1].sum(-1, keepdims=True)
  np.testing.assert_allclose(got, _scipy_kl(P_PREV, renorm) - np.log1p(-P_NEXT[..., -1]), rtol=1e-5)
  assert got.shape == (3, 2) and np.all(np.isfinite(got)) and np.all(got > 0)


def test_renormalize_both_directions_match_scipy():
  renorm = P_NEXT[..., :-1] / P_NEXT[..., :-1].sum(-1, keepdims=True)
  np.testing.assert_allclose(red.adjacent_kl(P_PREV, P_NEXT, support="renormalize"), _scipy_kl(P_PREV, renorm),
                             rtol=1e-5)
  np.testing.assert_allclose(red.adjacent_kl(P_PREV, P_NEXT, support="renormalize", reverse=True),
                             _scipy_kl(renorm, P_PREV), rtol=1e-5)


def test_reverse_on_padded_support_needs_an_explicit_eps():
  with pytest.raises(ValueError, match="infinite.*eps"):
    red.adjacent_kl(P_PREV, P_NEXT, reverse=True)
  eps = 1e-3
  padded = np.concatenate([P_PREV, np.zeros(P_PREV.shape[:-1] + (1,))], -1)
  smooth = (padded + eps) / (1 + 5 * eps)
  np.testing.assert_allclose(red.adjacent_kl(P_PREV, P_NEXT, reverse=True, eps=eps), _scipy_kl(P_NEXT, smooth),
                             rtol=1e-5)


def test_equal_retrievals_give_zero_and_bad_shapes_are_named():
  p = np.array([0.2, 0.8])
  assert float(red.adjacent_kl(p, np.array([0.2, 0.8, 0.0]))) == 0.0  # block t copied block t-1
  with pytest.raises(ValueError, match=r"p_prev \[\.\.\., t-1\] and p_next \[\.\.\., t\].*\(2,\).*\(2,\)"):
    red.adjacent_kl(p, p)
  with pytest.raises(ValueError, match="support must be one of"):
    red.adjacent_kl(p, np.array([0.2, 0.8, 0.0]), support="truncate")


KL = np.array([0.02, 0.3, 0.45, 0.5, 0.9, 1.4, 0.08])


def _reference_ebqm(kl, tau, squash, eps=1e-6):
  s = {"ratio": kl / (1 + kl), "exp": 1 - np.exp(-kl),
       "minmax": (kl - kl.min()) / (kl.max() - kl.min())}[squash]
  s = np.clip(s, eps, 1 - eps)
  m, v = s.mean(), s.var()  # numpy's var is the population variance (ddof=0)
  c = m * (1 - m) / v - 1
  a, b = m * c, (1 - m) * c
  q = scipy.stats.beta.cdf(s, a, b)
  return q, q < tau, a, b


@pytest.mark.parametrize("squash", red.SQUASHES)
@pytest.mark.parametrize("jit", [False, True])
def test_ebqm_matches_scipy_beta(squash, jit):
  f = jax.jit(red.ebqm, static_argnames=("tau", "squash", "eps")) if jit else red.ebqm
  got = f(jnp.asarray(KL), tau=0.2, squash=squash)
  q, redundant, a, b = _reference_ebqm(KL, 0.2, squash)
  assert bool(got.valid)
  np.testing.assert_allclose(float(got.alpha), a, rtol=1e-4)
  np.testing.assert_allclose(float(got.beta), b, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(got.quantiles), q, rtol=2e-4, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(got.redundant), redundant)
  assert redundant.any() and not redundant.all()  # the fixed input exercises both outcomes


def test_ebqm_invalid_fits_mark_nothing():
  for same in (red.ebqm(jnp.full((4,), 0.3)), red.ebqm(jnp.full((7,), 0.5))):  # v == 0 (7 x 1/3: not exact sums)
    assert not bool(same.valid) and not np.asarray(same.redundant).any()
  assert np.isnan(np.asarray(same.quantiles)).all() and np.isnan(float(same.alpha))
  # v >= m (1 - m): half the layers at ~0, half at ~1 after the squash (v = m (1 - m) up to the clip)
  split = red.ebqm(jnp.array([0.0, 0.0, 1e9, 1e9]), eps=1e-6)
  s = np.clip(np.array([0, 0, 1e9 / (1 + 1e9), 1e9 / (1 + 1e9)]), 1e-6, 1 - 1e-6)
  assert (s.var() >= s.mean() * (1 - s.mean())) == (not bool(split.valid))
  assert not np.asarray(split.redundant).any()


@pytest.mark.parametrize("tau", [0.0, 1.0, -0.1, 1.5, True])
def test_ebqm_rejects_tau_outside_the_unit_interval(tau):
  with pytest.raises(ValueError, match=r"tau must be a number in \(0, 1\).*config.ela.tau"):
    red.ebqm(jnp.asarray(KL), tau=tau)


def test_ebqm_rejects_bad_squash_and_shapes():
  with pytest.raises(ValueError, match="squash must be one of"):
    red.ebqm(jnp.asarray(KL), squash="sigmoid")
  with pytest.raises(ValueError, match=r"expected per-layer KLs \[L\].*\(2, 3\)"):
    red.ebqm(jnp.ones((2, 3)))


def test_ema_matches_the_recursion():
  xs = [1.0, 3.0, 2.0, 5.0]
  avg = None
  for x in xs:
    avg = red.ema(avg, x, decay=0.8)
  ref = xs[0]
  for x in xs[1:]:
    ref = 0.8 * ref + 0.2 * x
  assert avg == pytest.approx(ref)
  np.testing.assert_allclose(red.ema(np.ones(3), np.zeros(3), decay=0.25), np.full(3, 0.25))
  with pytest.raises(ValueError, match=r"decay must be a number in \[0, 1\)"):
    red.ema(1.0, 2.0, decay=1.0)
