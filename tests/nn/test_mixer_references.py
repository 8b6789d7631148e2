"""Every depth mixer's output against an independent numpy reference computed from the module's own
parameters (all parameters and BatchNorm statistics redrawn at random, so no initial value hides a term),
on images with the ResNet path (BatchNorm + ReLU, train and eval) and on sequences with LayerNorm.

The references are written from the formulas in the mixers' docstrings (and, for MRLA, from the official
code's order of operations), not from aila_jax's functions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.nn import depth as dn

B, H, W, C = 2, 4, 4, 8
BN_EPS, LN_EPS = 1e-5, 1e-6


def _randomize(tree, seed):
  """Every leaf redrawn: normal values, positive ones for BatchNorm variances."""
  rng = np.random.default_rng(seed)
  def draw(path, x):
    name = jax.tree_util.keystr(path)
    v = rng.normal(size=x.shape) * 0.7
    if "'var'" in name:
      v = rng.uniform(0.5, 2.0, size=x.shape)
    return jnp.asarray(v, x.dtype)
  return jax.tree_util.tree_map_with_path(draw, tree)


def _np(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def _relu(x):
  return np.maximum(x, 0.0)


def _bn(x, p, stats, train):
  """BatchNorm over every axis but the channels: batch statistics (biased variance) in training."""
  axes = tuple(range(x.ndim - 1))
  mean, var = (x.mean(axes), x.var(axes)) if train else (stats["mean"], stats["var"])
  return (x - mean) / np.sqrt(var + BN_EPS) * p["scale"] + p["bias"]


def _ln(x, p):
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + LN_EPS) * p["scale"] + p["bias"]


def _norm(x, params, stats, norm, train):
  if norm == "batch":
    return _bn(x, params["norm"], stats["norm"], train)
  return _ln(x, params["norm"])


def _softmax(z, axis=-1):
  z = z - z.max(axis, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis, keepdims=True)


def _heads(x, n):
  return x.reshape(x.shape[:-1] + (n, x.shape[-1] // n))


def _eca(y, kernel):
  """1-D cross-correlation over the channel axis of pooled descriptors y [B, C], zero 'same' padding."""
  k = kernel.reshape(-1)
  r = len(k) // 2
  yp = np.pad(y, ((0, 0), (r, r)))
  return sum(k[o] * yp[:, o:o + y.shape[1]] for o in range(len(k)))


def _depthwise(x, kernel):
  """Depthwise cross-correlation, stride 1, zero 'same' padding; kernel [*k, 1, C]."""
  ks = kernel.shape[:-2]
  pads = [(0, 0)] + [(k // 2, k // 2) for k in ks] + [(0, 0)]
  xp = np.pad(x, pads)
  out = np.zeros_like(x)
  for offset in np.ndindex(*ks):
    window = (slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, x.shape[1:-1])) + (slice(None),)
    out += xp[window] * kernel[offset + (0,)]
  return out


def _pooled_attention(q, keys, values, heads):
  """softmax_i(q . k_i / sqrt(d)) per head, applied to values [B, *P, C]."""
  d = q.shape[-1] // heads
  logits = np.stack([(_heads(q, heads) * _heads(k, heads)).sum(-1) for k in keys], -1) / math.sqrt(d)
  w = _softmax(logits)  # (B, N, T)
  out = sum(w[:, None, None, :, i, None] * _heads(v, heads) if v.ndim == 4 else
            w[:, None, :, i, None] * _heads(v, heads) for i, v in enumerate(values))
  return out.reshape(values[0].shape), w


def _apply(mixer, h, buf, seed, train):
  variables = mixer.init({"params": jax.random.PRNGKey(0)}, h, buf, train=False)
  variables = _randomize(variables, seed)
  mutable = ["batch_stats"] if train and "batch_stats" in variables else []
  out = mixer.apply(variables, h, buf, train=train, mutable=mutable or False)
  (x, new_buf, w) = out[0] if mutable else out
  return np.asarray(x, np.float64), new_buf, w, _np(variables)


def _images(rng, n):
  return [jnp.asarray(rng.normal(size=(B, H, W, C)), jnp.float32) for _ in range(n)]


@pytest.mark.parametrize("train", [True, False])
def test_dense_and_aila1_on_the_resnet_path(train):
  rng = np.random.default_rng(0)
  t, T = 3, 5
  h, *xs = _images(rng, t + 1)
  buf = {"x": tuple(xs)}
  hn, xsn = np.asarray(h, np.float64), [np.asarray(a, np.float64) for a in xs]
  x, _, _, _ = _apply(dn.make_mixer("dense", layer=t, depth=T), h, buf, 1, train)
  np.testing.assert_allclose(x, _relu(hn + sum(xsn) / t), rtol=1e-5, atol=1e-5)
  for residual in (False, True):
    x, _, w, v = _apply(dn.make_mixer("aila1", layer=t, depth=T, residual=residual), h, buf, 2, train)
    a = _softmax(v["params"]["depth_logits"][:t])
    ref = _relu(hn + sum(a[i] * xsn[i] for i in range(t)) + (xsn[-1] if residual else 0.0))
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(w)[:t], a, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["per_token", "pooled"])
@pytest.mark.parametrize("query", ["block", "previous"])
def test_aila2_against_numpy(pooling, query):
  rng = np.random.default_rng(3)
  t, T, heads = 3, 4, 2
  h, *xs = _images(rng, t + 1)
  mixer = dn.make_mixer("aila2", layer=t, depth=T, num_heads=heads, pooling=pooling, query=query)
  x, _, w, v = _apply(mixer, h, {"x": tuple(xs)}, 4, train=True)
  p = v["params"]
  hn, xsn = np.asarray(h, np.float64), [np.asarray(a, np.float64) for a in xs]
  u = hn if query == "block" else xsn[-1]
  kin = xsn
  if pooling == "pooled":
    u, kin = u.mean((1, 2)), [a.mean((1, 2)) for a in xsn]
  q = _ln(u, p["q_norm"]) @ p["query"]["kernel"]
  keys = [_ln(a, p["k_norm"]) @ p["key"]["kernel"] for a in kin]
  d = C // heads
  logits = np.stack([(_heads(q, heads) * _heads(k, heads)).sum(-1) for k in keys], -1) / math.sqrt(d)
  a = _softmax(logits)  # (B, [H, W,] N, t)
  if pooling == "pooled":
    mix = sum(a[:, None, None, :, i, None] * _heads(xsn[i], heads) for i in range(t)).reshape(hn.shape)
    want_w = a
  else:
    mix = sum(a[..., i, None] * _heads(xsn[i], heads) for i in range(t)).reshape(hn.shape)
    want_w = a.mean((1, 2))
  assert np.abs(a - 1.0 / t).max() > 0.05, "the reference must be far from uniform to pin the keys"
  np.testing.assert_allclose(x, _relu(hn + mix), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(w)[..., :t], want_w, rtol=1e-4, atol=1e-5)


def _mrla_qkv(o, p):
  y = o.mean(tuple(range(1, o.ndim - 1)))
  q = _eca(y, p["mrla"]["wq"]["kernel"])
  k = _eca(y, p["mrla"]["wk"]["kernel"])
  v = _depthwise(o, p["mrla"]["wv"]["kernel"])
  return q, k, v


@pytest.mark.parametrize("train", [True, False])
def test_mrla_base_on_the_resnet_path(train):
  rng = np.random.default_rng(5)
  t, T, dph = 3, 5, 4  # 2 heads of 4 channels
  h, prev = _images(rng, 2)
  cache_k = tuple(jnp.asarray(rng.normal(size=(B, C)), jnp.float32) for _ in range(t - 1))
  cache_v = tuple(_images(rng, t - 1))
  buf = {"prev": prev, "k": cache_k, "v": cache_v}
  x, new_buf, w, v = _apply(dn.make_mixer("mrla_base", layer=t, depth=T, dim_per_head=dph), h, buf, 6, train)
  p, s = v["params"], v.get("batch_stats", {})
  o = _relu(np.asarray(h, np.float64) + np.asarray(prev, np.float64))
  q, k, val = _mrla_qkv(o, p)
  keys = [np.asarray(a, np.float64) for a in cache_k] + [k]
  values = [np.asarray(a, np.float64) for a in cache_v] + [val]
  att, a = _pooled_attention(q, keys, values, C // dph)
  ref = o + _relu(_bn(att, p["norm"], s.get("norm"), train))
  np.testing.assert_allclose(x, ref, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(w)[..., 1:t + 1], a, rtol=1e-4, atol=1e-6)  # slots 1 .. t
  np.testing.assert_allclose(np.asarray(new_buf["k"][-1]), k, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(new_buf["v"][-1]), val, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_mrla_light_on_the_resnet_path(train):
  rng = np.random.default_rng(7)
  t, T, dph = 2, 4, 4
  h, prev = _images(rng, 2)
  x, _, _, v = _apply(dn.make_mixer("mrla_light", layer=t, depth=T, dim_per_head=dph), h, {"prev": prev}, 8, train)
  p, s = v["params"], v.get("batch_stats", {})
  prevn = np.asarray(prev, np.float64)
  o = _relu(np.asarray(h, np.float64) + prevn)
  q, k, val = _mrla_qkv(o, p)
  heads, d = C // dph, dph
  gates = 1.0 / (1.0 + np.exp(-(_heads(q, heads) * _heads(k, heads)).sum(-1) / math.sqrt(d)))  # (B, N)
  gated = (gates[:, None, None, :, None] * _heads(val, heads)).reshape(val.shape)
  out = p["lambda"] * prevn + gated  # lambda_t * o_{t-1} + sigma(q.k / sqrt d) v_t
  np.testing.assert_allclose(x, o + _bn(out, p["norm"], s.get("norm"), train), rtol=1e-4, atol=1e-4)


def test_mrla_light_on_sequences_with_layer_norm():
  rng = np.random.default_rng(9)
  L = 5
  h, prev = (jnp.asarray(rng.normal(size=(B, L, C)), jnp.float32) for _ in range(2))
  mixer = dn.make_mixer("mrla_light", layer=2, depth=4, dim_per_head=4, norm="layer", activation="none")
  x, _, _, v = _apply(mixer, h, {"prev": prev}, 10, train=True)
  p = v["params"]
  prevn = np.asarray(prev, np.float64)
  o = np.asarray(h, np.float64) + prevn
  q, k, val = _mrla_qkv(o, p)  # the value conv is 1-D with kernel 3 on sequences
  gates = 1.0 / (1.0 + np.exp(-(_heads(q, 2) * _heads(k, 2)).sum(-1) / 2.0))
  out = p["lambda"] * prevn + (gates[:, None, :, None] * _heads(val, 2)).reshape(val.shape)
  np.testing.assert_allclose(x, o + _ln(out, p["norm"]), rtol=1e-4, atol=1e-4)
