"""Tests for aila_jax.attention.dot_product against a float64 reference."""

import functools

from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.attention import dot_product as dpa

dot_product_attention = dpa.dot_product_attention


def _x64():
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64  # pylint: disable=g-import-not-at-top
  return enable_x64()


def _on_cuda_gpu():
  return dpa._compute_capability() is not None  # pylint: disable=protected-access


def reference(q, k, v, bias=None, mask=None, is_causal=False, scale=None):
  """Float64 numpy attention; fully masked rows give zero weights and output."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  b, t, n, h = q.shape
  s, kh = k.shape[1], k.shape[2]
  k = np.repeat(k, n // kh, axis=2)  # query head i uses kv head i // G
  v = np.repeat(v, n // kh, axis=2)
  scale = 1.0 / np.sqrt(h) if scale is None else scale
  logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
  if bias is not None:
    logits = logits + np.asarray(bias, np.float64)
  valid = np.ones((b, n, t, s), bool)
  if mask is not None:
    valid &= np.asarray(mask)
  if is_causal:
    valid &= np.tril(np.ones((t, s), bool))
  weights = np.zeros((b, n, t, s))
  for idx in np.ndindex(b, n, t):
    row = valid[idx]
    if row.any():
      x = logits[idx][row]
      e = np.exp(x - x.max())
      weights[idx][row] = e / e.sum()
  out = np.einsum("bnts,bsnh->btnh", weights, v)
  return out, weights


def _inputs(seed, b=2, t=5, s=6, n=4, k=2, h=8, dtype=jnp.float32,
            mask_shape=None, bias_shape=None):
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((b, t, n, h))
  key = rng.standard_normal((b, s, k, h))
  v = rng.standard_normal((b, s, k, h))
  mask = None if mask_shape is None else rng.random(mask_shape) < 0.7
  bias = None if bias_shape is None else rng.standard_normal(bias_shape)
  cast = lambda x: jnp.asarray(x, dtype)
  return (cast(q), cast(key), cast(v),
          None if mask is None else jnp.asarray(mask),
          None if bias is None else cast(bias))


_CASES = [
    dict(testcase_name="plain"),
    dict(testcase_name="mha", k=4),
    dict(testcase_name="mqa", k=1),
    dict(testcase_name="causal", is_causal=True, t=6, s=6),
    dict(testcase_name="causal_t_lt_s", is_causal=True, t=3, s=7),
    dict(testcase_name="causal_t_gt_s", is_causal=True, t=7, s=3),
    dict(testcase_name="full_mask", mask_shape=(2, 4, 5, 6)),
    dict(testcase_name="padding_mask", mask_shape=(2, 1, 1, 6)),
    dict(testcase_name="rank2_mask", mask_shape=(5, 6)),
    dict(testcase_name="head_bias", bias_shape=(1, 4, 5, 6)),
    dict(testcase_name="rank3_bias", bias_shape=(4, 1, 6)),
    dict(testcase_name="everything", mask_shape=(2, 4, 6, 6),
         bias_shape=(2, 1, 6, 6), is_causal=True, t=6, s=6),
]


class DotProductAttentionTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_CASES)
  def test_matches_float64_reference(self, is_causal=False, mask_shape=None,
                                     bias_shape=None, **sizes):
    q, k, v, mask, bias = _inputs(0, mask_shape=mask_shape,
                                  bias_shape=bias_shape, **sizes)
    fn = self.variant(functools.partial(
        dot_product_attention, is_causal=is_causal, return_weights=True))
    out, weights = fn(q, k, v, mask=mask, bias=bias)
    ref_out, ref_w = reference(q, k, v, bias, mask, is_causal)
    chex.assert_shape(out, q.shape)
    chex.assert_shape(weights, (q.shape[0], q.shape[2], q.shape[1],
                                k.shape[1]))
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_float64_inputs_match_to_rounding(self):
    with _x64():
      q, k, v, mask, bias = _inputs(1, dtype=jnp.float64,
                                    mask_shape=(2, 4, 5, 6),
                                    bias_shape=(2, 4, 5, 6))
      out = self.variant(dot_product_attention)(q, k, v, mask=mask, bias=bias)
      self.assertEqual(out.dtype, jnp.float64)
      ref_out, _ = reference(q, k, v, bias, mask)
      np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradients_match_float64_reference(self):
    # Every row keeps at least one key (the mask always allows key 0) so the
    # reference's plain softmax is well defined.
    q, k, v, mask, bias = _inputs(2, mask_shape=(2, 4, 5, 6),
                                  bias_shape=(1, 4, 5, 6))
    mask = mask.at[..., 0].set(True)
    cot = jax.random.normal(jax.random.key(0), q.shape)

    def loss(fn, q, k, v, bias):
      return jnp.sum(fn(q, k, v, bias) * cot)

    def ours(q, k, v, bias):
      return dot_product_attention(q, k, v, bias=bias, mask=mask,
                                   is_causal=True)

    def ref(q, k, v, bias):  # Independent float64 formulation.
      n, kh = q.shape[2], k.shape[2]
      k = jnp.repeat(k, n // kh, axis=2)
      v = jnp.repeat(v, n // kh, axis=2)
      logits = jnp.einsum("btnh,bsnh->bnts", q, k) / jnp.sqrt(q.shape[-1])
      valid = mask & jnp.tril(jnp.ones(logits.shape[-2:], bool))
      logits = jnp.where(valid, logits + bias, -jnp.inf)
      return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(logits), v)

    grads = self.variant(jax.grad(functools.partial(loss, ours),
                                  argnums=(0, 1, 2, 3)))(q, k, v, bias)
    with _x64():
      to64 = lambda x: jnp.asarray(np.asarray(x), jnp.float64)
      ref_grads = jax.grad(
          lambda *a: jnp.sum(ref(*a) * to64(cot)), argnums=(0, 1, 2, 3))(
              *map(to64, (q, k, v, bias)))
      ref_grads = [np.asarray(g) for g in ref_grads]
    for name, g, rg in zip("qkvb", grads, ref_grads):
      np.testing.assert_allclose(g, rg, rtol=1e-4, atol=1e-5, err_msg=name)

  @chex.variants(with_jit=True, without_jit=True)
  def test_bfloat16_close_to_reference(self):
    q, k, v, mask, _ = _inputs(3, dtype=jnp.bfloat16, mask_shape=(2, 1, 5, 6))
    out = self.variant(dot_product_attention)(q, k, v, mask=mask)
    self.assertEqual(out.dtype, jnp.bfloat16)
    ref_out, _ = reference(q, k, v, mask=mask)
    err = np.linalg.norm(np.asarray(out, np.float64) - ref_out)
    self.assertLess(err / np.linalg.norm(ref_out), 1e-2)

  @chex.variants(with_jit=True, without_jit=True)
  def test_fully_masked_rows_give_zero_output_and_gradient(self):
    q, k, v, _, _ = _inputs(4)
    key_valid = jnp.array([[True] * 6, [True, True, False, False, False,
                                        False]])
    query_valid = jnp.array([[True] * 5, [True, True, True, False, False]])
    mask = dpa.make_padding_mask(key_valid, query_valid)
    fn = self.variant(functools.partial(dot_product_attention,
                                        return_weights=True))
    out, weights = fn(q, k, v, mask=mask)
    np.testing.assert_array_equal(out[1, 3:], 0.0)
    np.testing.assert_array_equal(weights[1, :, 3:], 0.0)
    np.testing.assert_array_equal(weights[1, :, :, 2:], 0.0)
    ref_out, _ = reference(q, k, v, mask=mask)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    dq = jax.grad(lambda q: jnp.sum(dot_product_attention(q, k, v,
                                                          mask=mask)))(q)
    self.assertTrue(np.isfinite(dq).all())
    np.testing.assert_array_equal(dq[1, 3:], 0.0)

  def test_all_minus_inf_bias_row_is_zero_in_xla_path(self):
    q, k, v, _, _ = _inputs(5)
    bias = jnp.zeros((1, 1, 5, 6)).at[:, :, 2].set(-jnp.inf)
    out = dot_product_attention(q, k, v, bias=bias, implementation="xla")
    np.testing.assert_array_equal(out[:, 2], 0.0)
    self.assertTrue(np.isfinite(out).all())

  def test_scale(self):
    q, k, v, _, _ = _inputs(6)
    out = dot_product_attention(q, k, v, scale=0.3)
    np.testing.assert_allclose(out, reference(q, k, v, scale=0.3)[0],
                               rtol=1e-5, atol=1e-5)

  def test_auto_on_cpu_is_xla_and_cudnn_is_refused(self):
    if _on_cuda_gpu():
      self.skipTest("CPU-only behaviour")
    q, k, v, _, _ = _inputs(7, dtype=jnp.bfloat16)
    np.testing.assert_array_equal(
        dot_product_attention(q, k, v),
        dot_product_attention(q, k, v, implementation="xla"))
    with self.assertRaisesRegex(ValueError, "cudnn.*cannot run here.*CUDA"):
      dot_product_attention(q, k, v, implementation="cudnn")


class DropoutTest(chex.TestCase):

  def test_statistics(self):
    # With values = identity over keys (head_dim == kv_len), the output row
    # *is* the dropped-out weight row: each entry is 0 or w / (1 - p).
    rate, samples = 0.3, 2000
    b, t, n, s = 1, 3, 2, 8
    q = jax.random.normal(jax.random.key(1), (b, t, n, s))
    k = jax.random.normal(jax.random.key(2), (b, s, n, s))
    v = jnp.broadcast_to(jnp.eye(s)[None, :, None, :], (b, s, n, s))
    _, w = dot_product_attention(q, k, v, return_weights=True)
    w = np.asarray(jnp.transpose(w, (0, 2, 1, 3)))  # (B, T, N, S)

    keys = jax.random.split(jax.random.key(3), samples)
    outs = np.asarray(jax.jit(jax.vmap(lambda r: dot_product_attention(
        q, k, v, dropout_rate=rate, dropout_rng=r)))(keys))

    kept = np.isclose(outs, w / (1 - rate), rtol=1e-5)
    dropped = outs == 0.0
    self.assertTrue((kept | dropped).all())
    frac = dropped.mean()
    self.assertLess(abs(frac - rate), 5 * np.sqrt(rate * (1 - rate) /
                                                  dropped.size))
    # Inverted dropout preserves the expectation: E[out] = no-dropout out.
    std = w / (1 - rate) * np.sqrt(rate * (1 - rate) / samples)
    np.testing.assert_array_less(np.abs(outs.mean(0) - w), 5 * std + 1e-7)

  def test_deterministic_given_rng_and_weights_are_before_dropout(self):
    q, k, v, _, _ = _inputs(8)
    f = functools.partial(dot_product_attention, q, k, v, dropout_rate=0.5,
                          return_weights=True)
    out1, w1 = f(dropout_rng=jax.random.key(0))
    out2, _ = f(dropout_rng=jax.random.key(0))
    out3, _ = f(dropout_rng=jax.random.key(1))
    np.testing.assert_array_equal(out1, out2)
    self.assertGreater(np.abs(out1 - out3).max(), 1e-3)
    np.testing.assert_allclose(w1, reference(q, k, v)[1], rtol=1e-5,
                               atol=1e-6)


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(
    b=st.integers(1, 2), t=st.integers(1, 6), s=st.integers(1, 6),
    kv_heads=st.integers(1, 2), groups=st.integers(1, 3), h=st.integers(1, 5),
    is_causal=st.booleans(), mask_bcast=st.lists(st.booleans(), min_size=4,
                                                 max_size=4),
    use_mask=st.booleans(), use_bias=st.booleans(), seed=st.integers(0, 99))
def test_random_shapes_match_reference(b, t, s, kv_heads, groups, h, is_causal,
                                       mask_bcast, use_mask, use_bias, seed):
  n = kv_heads * groups
  full = (b, n, t, s)
  shape = tuple(1 if one else d for one, d in zip(mask_bcast, full))
  q, k, v, mask, bias = _inputs(
      seed, b=b, t=t, s=s, n=n, k=kv_heads, h=h,
      mask_shape=shape if use_mask else None,
      bias_shape=shape[::-1][:3][::-1] if use_bias else None)
  out = jax.jit(functools.partial(dot_product_attention, is_causal=is_causal))(
      q, k, v, mask=mask, bias=bias)
  ref_out, _ = reference(q, k, v, bias, mask, is_causal)
  np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)


def test_make_causal_mask():
  m = dpa.make_causal_mask(2, 4, offset=2)
  chex.assert_shape(m, (1, 1, 2, 4))
  np.testing.assert_array_equal(m[0, 0], [[1, 1, 1, 0], [1, 1, 1, 1]])
  np.testing.assert_array_equal(dpa.make_causal_mask(3)[0, 0],
                                np.tril(np.ones((3, 3), bool)))


def test_make_padding_mask():
  kv = jnp.array([[1, 1, 0], [1, 0, 0]], bool)
  chex.assert_shape(dpa.make_padding_mask(kv), (2, 1, 1, 3))
  m = dpa.make_padding_mask(kv, jnp.array([[1, 0], [1, 1]], bool))
  chex.assert_shape(m, (2, 1, 2, 3))
  np.testing.assert_array_equal(m[0, 0], [[1, 1, 0], [0, 0, 0]])
  with pytest.raises(ValueError, match="key_valid must be"):
    dpa.make_padding_mask(jnp.ones((3,), bool))
  with pytest.raises(ValueError, match="query_valid must be"):
    dpa.make_padding_mask(kv, jnp.ones((3, 2), bool))


_Q = (2, 5, 4, 8)
_KV = (2, 6, 2, 8)


def _zeros(shape, dtype=jnp.float32):
  return jnp.zeros(shape, dtype)


@pytest.mark.parametrize("kwargs, match", [
    (dict(query=_zeros((5, 4, 8))), r"query must have rank 4.*got shape \(5, 4, 8\)"),
    (dict(key=_zeros((2, 6, 2, 8, 1))), r"key must have rank 4"),
    (dict(query=_zeros((0, 5, 4, 8)), key=_zeros((0, 6, 2, 8)),
          value=_zeros((0, 6, 2, 8))), r"query has an empty batch"),
    (dict(key=_zeros((2, 0, 2, 8)), value=_zeros((2, 0, 2, 8))),
     r"key has a zero-size length axis"),
    (dict(query=_zeros((2, 5, 3, 8))),
     r"query heads must be a multiple of key/value heads.*3 query heads.*2 "
     r"key/value heads"),
    (dict(query=_zeros((2, 5, 4, 16))), r"same head_dim.*16.*8"),
    (dict(value=_zeros((2, 6, 2, 4))), r"value must have the shape of key"),
    (dict(key=_zeros((3, 6, 2, 8)), value=_zeros((3, 6, 2, 8))),
     r"batch size of query \(2\)"),
    (dict(key=_zeros(_KV, jnp.bfloat16)), r"share one dtype"),
    (dict(query=_zeros(_Q, jnp.int32)), r"query must have a floating dtype"),
    (dict(mask=jnp.ones((2, 4, 5, 7), bool)),
     r"mask of shape \(2, 4, 5, 7\) does not broadcast to "
     r"\[batch, heads, q_len, kv_len\] = \(2, 4, 5, 6\)"),
    (dict(mask=jnp.ones((2, 3, 1, 1), bool)), r"mask of shape .* does not"),
    (dict(mask=jnp.ones((1, 2, 4, 5, 6), bool)), r"mask of shape .* does not"),
    (dict(mask=jnp.ones((2, 1, 1, 6), jnp.float32)), r"mask must be boolean"),
    (dict(bias=jnp.ones((5, 5))), r"bias of shape \(5, 5\) does not"),
    (dict(bias=jnp.ones((5, 6), bool)), r"bias must have a floating dtype"),
    (dict(dropout_rate=0.1), r"dropout_rate=0.1 needs a dropout_rng"),
    (dict(dropout_rate=1.0, dropout_rng=jax.random.key(0)),
     r"dropout_rate must lie in \[0, 1\)"),
    (dict(implementation="flash"), r"implementation must be None, 'xla' or"),
])
def test_bad_inputs_raise_clear_errors(kwargs, match):
  args = dict(query=_zeros(_Q), key=_zeros(_KV), value=_zeros(_KV))
  args.update(kwargs)
  q, k, v = args.pop("query"), args.pop("key"), args.pop("value")
  with pytest.raises(ValueError, match=match):
    dot_product_attention(q, k, v, **args)


def test_cudnn_refuses_dropout_and_weights():
  q, k, v, _, _ = _inputs(9, dtype=jnp.bfloat16)
  with pytest.raises(ValueError, match="cannot run here"):
    dot_product_attention(q, k, v, return_weights=True,
                          implementation="cudnn")
  with pytest.raises(ValueError, match="cannot run here"):
    dot_product_attention(q, k, v, dropout_rate=0.1,
                          dropout_rng=jax.random.key(0),
                          implementation="cudnn")


# ----------------------------------------------------------------------------
# Dispatch cases: on a CUDA GPU the fused and the einsum paths compute the
# same function; elsewhere the auto dispatch takes the einsum path, which
# matches the float64 reference in bf16, and forcing cuDNN says why it cannot.
# ----------------------------------------------------------------------------
_DISPATCH_CASES = [
    dict(),
    dict(is_causal=True),
    dict(is_causal=True, t=64, s=128),
    dict(k=2),
    dict(mask_shape=(2, 1, 1, 128)),
    dict(mask_shape=(2, 4, 128, 128), bias_shape=(1, 4, 128, 128)),
    dict(mask_shape=(2, 1, 128, 128), is_causal=True, k=1),
    dict(fully_masked=True),
]


@pytest.mark.parametrize("case", _DISPATCH_CASES, ids=str)
def test_dispatch_cases_cudnn_matches_xla_where_it_runs(case):
  case = dict(case)
  fully_masked = case.pop("fully_masked", False)
  is_causal = case.pop("is_causal", False)
  sizes = dict(b=2, t=128, s=128, n=4, k=4, h=64)
  sizes.update(case)
  q, k, v, mask, bias = _inputs(10, dtype=jnp.bfloat16, **sizes)
  if fully_masked:
    mask = dpa.make_padding_mask(
        jnp.arange(128)[None] < jnp.array([[128], [50]]),
        jnp.arange(128)[None] < jnp.array([[128], [90]]))
  cot = jax.random.normal(jax.random.key(0), q.shape, jnp.bfloat16)

  def run(impl):
    f = lambda q, k, v: dot_product_attention(
        q, k, v, mask=mask, bias=bias, is_causal=is_causal,
        implementation=impl)
    out, vjp = jax.vjp(f, q, k, v)
    return (out, *vjp(cot))

  hlo = jax.jit(lambda q, k, v: dot_product_attention(
      q, k, v, mask=mask, bias=bias, is_causal=is_causal)).lower(
          q, k, v).as_text()
  ref = run("xla")
  with _x64():
    out64, _ = reference(q, k, v, bias, mask, is_causal)
  np.testing.assert_allclose(np.asarray(ref[0], np.float64), out64,
                             rtol=5e-2, atol=5e-2)
  if not _on_cuda_gpu():
    assert "cudnn" not in hlo, "auto dispatch picked cuDNN without a CUDA GPU"
    with pytest.raises(ValueError, match="implementation='cudnn' cannot run here: it needs a CUDA GPU"):
      run("cudnn")
    return
  assert "cudnn" in hlo, "auto dispatch did not pick the cuDNN kernel"
  for name, a, b in zip(("out", "dq", "dk", "dv"), jax.jit(
      functools.partial(run, "cudnn"))(), ref):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rel = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
    assert rel < 2e-2, (name, rel)
  if fully_masked:
    out = jax.jit(functools.partial(run, "cudnn"))()[0]
    np.testing.assert_array_equal(np.asarray(out[1, 90:], np.float32), 0.0)
