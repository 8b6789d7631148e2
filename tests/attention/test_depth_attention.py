"""Tests for aila_jax.attention.depth against numpy references (MRLA's official forward re-derived)."""

import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.attention import depth as da


def _softmax(x, axis=-1):
  x = x - x.max(axis, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis, keepdims=True)


def test_depth_mask():
  np.testing.assert_array_equal(da.depth_mask(3, 5), [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(da.depth_mask(3, 5, include_input=False), [0, 1, 1, 0, 0])
  np.testing.assert_array_equal(da.depth_mask(3, 5, include_input=False, include_current=True), [0, 1, 1, 1, 0])
  # a traced index gives the same mask
  np.testing.assert_array_equal(jax.jit(lambda t: da.depth_mask(t, 5))(3), [1, 1, 1, 0, 0])
  with pytest.raises(ValueError, match="layer index 5 outside"):
    da.depth_mask(5, 5, include_current=True)
  with pytest.raises(ValueError, match="layer index 0 outside"):
    da.depth_mask(0, 5)


class NormalizeTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_each_normalization(self):
    logits = np.array([0.3, -1.2, 2.0, 0.7, 5.0], np.float32)
    mask = da.depth_mask(4, 5)
    valid = logits[:4]
    expected = {
        "softmax": np.r_[_softmax(valid), 0.0],
        "sum": np.r_[valid / valid.sum(), 0.0],
        "l1": np.r_[np.abs(valid) / (1e-6 + np.abs(valid).sum()), 0.0],
        "none": np.r_[valid, 0.0],
    }
    for name, want in expected.items():
      got = self.variant(lambda w, m, n=name: da.normalize_depth_weights(w, m, n))(logits, mask)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)

  def test_masked_slots_get_no_gradient(self):
    mask = da.depth_mask(2, 4)
    g = jax.grad(lambda w: (da.normalize_depth_weights(w, mask) * jnp.arange(4.0)).sum())(jnp.zeros(4))
    assert np.all(np.isfinite(g)) and g[2] == 0 and g[3] == 0 and g[1] != 0

  def test_errors(self):
    with pytest.raises(ValueError, match="normalization: expected one of"):
      da.normalize_depth_weights(jnp.zeros(3), da.depth_mask(1, 3), "max")
    with pytest.raises(ValueError, match=r"mask shape \(4,\) does not match"):
      da.normalize_depth_weights(jnp.zeros(3), da.depth_mask(1, 4))


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(b=st.integers(1, 3), t=st.integers(1, 5), f=st.integers(1, 4), shared=st.booleans())
def test_mix_depth_matches_numpy(b, t, f, shared):
  rng = np.random.default_rng(b * 100 + t * 10 + f)
  buf = rng.normal(size=(b, t, f, 2)).astype(np.float32)
  w = rng.normal(size=(t,) if shared else (b, t)).astype(np.float32)
  want = np.einsum("t,btfd->bfd" if shared else "bt,btfd->bfd", w, buf)
  np.testing.assert_allclose(da.mix_depth(jnp.asarray(w), jnp.asarray(buf)), want, rtol=1e-5, atol=1e-5)


def test_mix_depth_shape_error():
  with pytest.raises(ValueError, match="disagree on the depth axis"):
    da.mix_depth(jnp.ones(3), jnp.ones((2, 4, 5)))
  with pytest.raises(ValueError, match=r"weights \(3,\) and a buffer of 2 slots"):
    da.mix_depth(jnp.ones(3), (jnp.ones((2, 5)), jnp.ones((2, 5))))
  with pytest.raises(ValueError, match="a buffer of 2 slots"):
    da.mix_depth(jnp.ones(2), (jnp.ones((2, 5)), jnp.ones((2, 4))))


def _slots(stacked):
  """``[B, T, ...]`` -> the tuple of ``T`` per-slot arrays ``[B, ...]`` (the mixers' buffer layout)."""
  return tuple(stacked[:, i] for i in range(stacked.shape[1]))


class SequenceFormTest(chex.TestCase):
  """Input-form plumbing, not maths: the stacked ``[B, T, ...]`` form is split into its slots and runs the
  same per-slot code, so these check the splitting, the mask and the readable-slot slice (equal to the
  masked result once padded back), and dtypes. The maths is pinned by the numpy references below and in
  tests/nn/test_mixer_references.py."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_mix_depth(self):
    rng = np.random.default_rng(11)
    buf = jnp.asarray(rng.normal(size=(2, 4, 3, 5)), jnp.float32)
    for w in (rng.normal(size=(4,)), rng.normal(size=(2, 4))):
      w = jnp.asarray(w, jnp.float32)
      got = self.variant(lambda w, *xs: da.mix_depth(w, xs))(w, *_slots(buf))
      np.testing.assert_allclose(got, da.mix_depth(w, buf), rtol=1e-5, atol=1e-6)
    # bf16 slots: the weights are cast to the slots' dtype, as in the stacked form
    got = da.mix_depth(jnp.ones(4) / 4, _slots(buf.astype(jnp.bfloat16)))
    assert got.dtype == jnp.bfloat16

  @chex.variants(with_jit=True, without_jit=True)
  def test_per_token(self):
    rng = np.random.default_rng(12)
    b, t, hh, ww, d, n = 2, 4, 3, 2, 8, 2
    q = jnp.asarray(rng.normal(size=(b, hh, ww, d)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(b, t, hh, ww, d)), jnp.float32) for _ in range(2))
    for mask in (None, da.depth_mask(3, t)):
      want, want_w = da.per_token_depth_attention(q, k, v, mask, num_heads=n)
      got, got_w = self.variant(lambda q, k, v: da.per_token_depth_attention(q, k, v, mask, num_heads=n))(
          q, _slots(k), _slots(v))
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-7)
    # the readable slots alone give the masked result, the weights padded back with pad_depth
    sl = da.readable_slots(3, t)
    got, got_w = da.per_token_depth_attention(q, _slots(k)[sl], _slots(v)[sl], num_heads=n)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(da.pad_depth(got_w, sl, t), want_w, rtol=1e-5, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_pooled(self):
    rng = np.random.default_rng(13)
    b, t, hh, ww, c, heads = 2, 4, 3, 3, 8, 2
    q = jnp.asarray(rng.normal(size=(b, c)), jnp.float32)
    keys = jnp.asarray(rng.normal(size=(b, t, c)), jnp.float32)
    values = jnp.asarray(rng.normal(size=(b, t, hh, ww, c)), jnp.float32)
    for mask in (None, da.depth_mask(2, t, include_input=False, include_current=True)):
      want, want_w = da.pooled_depth_attention(q, keys, values, mask, num_heads=heads)
      got, got_w = self.variant(lambda q, k, v: da.pooled_depth_attention(q, k, v, mask, num_heads=heads))(
          q, _slots(keys), _slots(values))
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-7)
    sl = da.readable_slots(2, t, include_input=False, include_current=True)
    got, got_w = da.pooled_depth_attention(q, _slots(keys)[sl], _slots(values)[sl], num_heads=heads)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(da.pad_depth(got_w, sl, t), want_w, rtol=1e-5, atol=1e-7)
    # vectors (no positions), as in the MLP backbone
    want, _ = da.pooled_depth_attention(q, keys, values[:, :, 0, 0], num_heads=heads)
    got, _ = da.pooled_depth_attention(q, _slots(keys), _slots(values[:, :, 0, 0]), num_heads=heads)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_errors(self):
    one = jnp.ones((2, 4, 8))
    with pytest.raises(ValueError, match=r"keys/values sequences of T arrays \[B, \*P, D\]"):
      da.per_token_depth_attention(one, (one, one), (one,), num_heads=2)
    with pytest.raises(ValueError, match=r"keys/values sequences of T arrays"):
      da.per_token_depth_attention(one, (one, jnp.ones((2, 3, 8))), (one, one), num_heads=2)
    with pytest.raises(ValueError, match=r"mask \(3,\) does not match the 2 layers"):
      da.per_token_depth_attention(one, (one, one), (one, one), da.depth_mask(1, 3), num_heads=2)
    with pytest.raises(ValueError, match=r"sequences of T keys \[B, C\] and T values \[B, \*P, C\]"):
      da.pooled_depth_attention(jnp.ones((2, 8)), (jnp.ones((2, 8)),), (one, one), num_heads=2)
    with pytest.raises(ValueError, match=r"sequences of T keys \[B, C\]"):
      da.pooled_depth_attention(jnp.ones((2, 8)), (jnp.ones((2, 6)),), (one,), num_heads=2)


class PerTokenTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_numpy(self):
    rng = np.random.default_rng(0)
    b, t, l, d, n = 2, 5, 3, 8, 2
    q = rng.normal(size=(b, l, d)).astype(np.float32)
    k = rng.normal(size=(b, t, l, d)).astype(np.float32)
    v = rng.normal(size=(b, t, l, d)).astype(np.float32)
    mask = np.array([1, 1, 1, 0, 0], bool)
    out, w = self.variant(lambda *a: da.per_token_depth_attention(*a, num_heads=n))(q, k, v, jnp.asarray(mask))
    chex.assert_shape(out, (b, l, d))
    chex.assert_shape(w, (b, l, n, t))
    qh, kh, vh = q.reshape(b, l, n, 4), k.reshape(b, t, l, n, 4), v.reshape(b, t, l, n, 4)
    logits = np.einsum("blnd,btlnd->blnt", qh, kh) / 2.0
    logits = np.where(mask, logits, -np.inf)
    want_w = _softmax(logits)
    want = np.einsum("blnt,btlnd->blnd", want_w, vh).reshape(b, l, d)
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)

  def test_equals_dot_product_attention_with_layers_as_keys(self):
    from aila_jax.attention import dot_product_attention
    rng = np.random.default_rng(7)
    b, t, hh, ww, d, n = 2, 4, 3, 2, 8, 2  # image-shaped positions
    q = jnp.asarray(rng.normal(size=(b, hh, ww, d)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(b, t, hh, ww, d)), jnp.float32) for _ in range(2))
    mask = da.depth_mask(3, t)
    out, w = da.per_token_depth_attention(q, k, v, mask, num_heads=n)
    flat = lambda a: jnp.moveaxis(a, 1, 3).reshape(b * hh * ww, t, n, d // n)  # (BP, T, N, d)
    want, want_w = dot_product_attention(q.reshape(b * hh * ww, 1, n, d // n), flat(k), flat(v),
                                         mask=mask[None, None, None, :], return_weights=True,
                                         implementation="xla")
    np.testing.assert_allclose(out, want.reshape(q.shape), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w, want_w.reshape(b, hh, ww, n, t), rtol=1e-5, atol=1e-6)

  def test_masked_layers_do_not_matter(self):
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((2, 4, 8), (2, 3, 4, 8), (2, 3, 4, 8)))
    mask = da.depth_mask(2, 3)
    out1, _ = da.per_token_depth_attention(q, k, v, mask, num_heads=2)
    out2, _ = da.per_token_depth_attention(q, k.at[:, 2].set(99.0), v.at[:, 2].set(-99.0), mask, num_heads=2)
    np.testing.assert_allclose(out1, out2, rtol=1e-6)

  def test_errors(self):
    with pytest.raises(ValueError, match=r"expected query \[B, \*P, D\] and keys/values \[B, T, \*P, D\]"):
      da.per_token_depth_attention(jnp.ones((2, 4, 8)), jnp.ones((2, 3, 5, 8)), jnp.ones((2, 3, 5, 8)),
                                   da.depth_mask(1, 3), num_heads=2)
    with pytest.raises(ValueError, match="width 8 is not divisible by num_heads=3"):
      da.per_token_depth_attention(jnp.ones((2, 4, 8)), jnp.ones((2, 3, 4, 8)), jnp.ones((2, 3, 4, 8)),
                                   da.depth_mask(1, 3), num_heads=3)


@pytest.mark.parametrize("pooled", [False, True])
def test_key_kernel_folded_into_the_query_matches_numpy(pooled):
  # key_kernel=W: logits q^(n) . (x_i W)^(n) / sqrt(d) per head, from the unprojected keys x_i (numpy); the
  # slots as a sequence and as one array
  rng = np.random.default_rng(21)
  b, t, l, c, n = 2, 3, 4, 8, 2
  q = rng.normal(size=(b, c) if pooled else (b, l, c)).astype(np.float32)
  x = rng.normal(size=(b, t, c) if pooled else (b, t, l, c)).astype(np.float32)
  v = rng.normal(size=(b, t, l, c)).astype(np.float32)
  kernel = rng.normal(size=(c, c)).astype(np.float32)
  fn = da.pooled_depth_attention if pooled else da.per_token_depth_attention
  for keys, values in ((jnp.asarray(x), jnp.asarray(v)), (_slots(jnp.asarray(x)), _slots(jnp.asarray(v)))):
    out, w = fn(jnp.asarray(q), keys, values, num_heads=n, key_kernel=jnp.asarray(kernel))
    k = (x.astype(np.float64) @ kernel).reshape(x.shape[:-1] + (n, c // n))
    qh = q.astype(np.float64).reshape(q.shape[:-1] + (n, c // n))
    logits = (np.einsum("bnd,btnd->bnt", qh, k) if pooled else np.einsum("blnd,btlnd->blnt", qh, k)) / 2.0
    want_w = _softmax(logits)
    vh = v.reshape(b, t, l, n, c // n)
    want = (np.einsum("bnt,btlnd->blnd", want_w, vh) if pooled
            else np.einsum("blnt,btlnd->blnd", want_w, vh)).reshape(b, l, c)
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match=r"key_kernel: expected the \[D, D\] = \(8, 8\) key projection"):
    fn(jnp.asarray(q), jnp.asarray(x), jnp.asarray(v), num_heads=n, key_kernel=jnp.ones((8, 4)))


def mrla_base_reference(x_pooled_q, keys, values, valid, heads):
  """MRLA-base's attention as the official mrla_base_layer computes it (numpy, NCHW-free)."""
  b, t, c = keys.shape
  d = c // heads
  q = x_pooled_q.reshape(b, heads, 1, d)
  kk = keys[:, valid].reshape(b, -1, heads, d).transpose(0, 2, 1, 3)  # b g t d
  vv = values[:, valid]  # b t h w c
  vv = vv.reshape(vv.shape[:2] + (-1, heads, d)).transpose(0, 3, 1, 2, 4)  # b g t (hw) d
  att = _softmax(np.einsum("bgid,bgtd->bgit", q, kk) / np.sqrt(d))
  out = np.einsum("bgit,bgtpd->bgpd", att, vv)  # b g (hw) d
  return out.transpose(0, 2, 1, 3).reshape(values.shape[:1] + values.shape[2:]), att[:, :, 0]


class PooledTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_official_mrla_base(self):
    rng = np.random.default_rng(2)
    b, t, h, w, c, heads = 2, 4, 3, 3, 8, 2
    q = rng.normal(size=(b, c)).astype(np.float32)
    keys = rng.normal(size=(b, t, c)).astype(np.float32)
    values = rng.normal(size=(b, t, h, w, c)).astype(np.float32)
    mask = da.depth_mask(2, t, include_input=False, include_current=True)  # slots 1, 2
    out, weights = self.variant(lambda *a: da.pooled_depth_attention(*a, num_heads=heads))(q, keys, values, mask)
    want, want_w = mrla_base_reference(q, keys, values, np.asarray(mask), heads)
    chex.assert_shape(weights, (b, heads, t))
    np.testing.assert_allclose(np.asarray(weights)[..., 1:3], want_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(weights)[..., [0, 3]], 0.0)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)

  def test_errors(self):
    with pytest.raises(ValueError, match=r"expected query \[B, C\], keys \[B, T, C\]"):
      da.pooled_depth_attention(jnp.ones((2, 6)), jnp.ones((2, 3, 8)), jnp.ones((2, 3, 8)), da.depth_mask(1, 3),
                                num_heads=2)


class MRLALightTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_step_matches_numpy(self):
    rng = np.random.default_rng(3)
    b, h, w, c, heads = 2, 3, 3, 8, 2
    prev, v = (rng.normal(size=(b, h, w, c)).astype(np.float32) for _ in range(2))
    q, k = (rng.normal(size=(b, c)).astype(np.float32) for _ in range(2))
    lam = rng.normal(size=(c,)).astype(np.float32)
    out, gates = self.variant(lambda *a: da.mrla_light_step(*a, num_heads=heads))(prev, q, k, v, lam)
    g = 1 / (1 + np.exp(-np.einsum("bnd,bnd->bn", q.reshape(b, heads, 4), k.reshape(b, heads, 4)) / 2.0))
    want = lam * prev + (v.reshape(b, h, w, heads, 4) * g[:, None, None, :, None]).reshape(b, h, w, c)
    np.testing.assert_allclose(gates, g, rtol=1e-5)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)

  def test_unrolled_weights_reproduce_the_recurrence(self):
    rng = np.random.default_rng(4)
    t, c = 5, 4
    gates = rng.uniform(size=(t, c)).astype(np.float32)
    lams = rng.normal(size=(t, c)).astype(np.float32)
    vs = rng.normal(size=(t, c)).astype(np.float32)
    o = np.zeros(c, np.float32)
    for i in range(t):
      o = lams[i] * o + gates[i] * vs[i]
    beta = da.mrla_light_unrolled_weights(jnp.asarray(gates), jnp.asarray(lams))
    np.testing.assert_allclose((np.asarray(beta) * vs).sum(0), o, rtol=1e-5, atol=1e-6)

  def test_errors(self):
    with pytest.raises(ValueError, match="lam"):
      da.mrla_light_step(jnp.ones((2, 8)), jnp.ones((2, 8)), jnp.ones((2, 8)), jnp.ones((2, 8)), jnp.ones(4),
                         num_heads=2)


def test_eca_kernel_size_matches_eca_rule():
  for c, want in ((16, 3), (64, 3), (128, 5), (512, 5), (1024, 5), (2048, 7)):
    assert da.eca_kernel_size(c) == want, c
