"""Text models pinned against numpy: masked pooling, the bag-of-embeddings vector, LSTM pooling, CLS pooling."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aila_jax.models.depth_text import DepthTextMLP, DepthTransformerClassifier, LSTMClassifier, masked_pool
from aila_jax.models.transformer import TransformerClassifier

TOKENS = np.array([[3, 5, 7, 0, 0], [9, 9, 2, 4, 6], [0, 0, 0, 0, 0]], np.int32)  # last row: all padding
LENGTHS = (TOKENS > 0).sum(1)


def _np_pool(x, valid, kind):
  """numpy reference: mean / max over the valid positions, 0 for a row without any."""
  out = np.zeros((x.shape[0], x.shape[2]), np.float64)
  for b in range(x.shape[0]):
    if valid[b].any():
      out[b] = x[b][valid[b]].mean(0) if kind == "mean" else x[b][valid[b]].max(0)
  return out


def test_masked_pool_matches_numpy_and_zeroes_empty_rows():
  # padding never enters the pool; a row with no real token pools to 0 (not NaN / -inf)
  x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32) - 3.0  # all-negative maxima likely
  valid = TOKENS > 0
  for kind in ("mean", "max"):
    got = np.asarray(masked_pool(jnp.asarray(x), jnp.asarray(valid), kind))
    np.testing.assert_allclose(got, _np_pool(x, valid, kind), rtol=1e-6, atol=1e-6)
    assert (got[2] == 0).all()


def _variables(model, tokens, seed=0):
  """Random normal variables of ``model``'s shapes, drawn with numpy (no init to compile: fast on CPU)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), tokens)
  return jax.tree_util.tree_map(lambda s: (0.5 * rng.normal(size=s.shape)).astype(s.dtype), shapes)


def test_text_mlp_pooled_vector_unigrams_and_hashed_bigrams():
  # pooled = [mean, max] over E[x_i] (x_i != 0) and B[(31 x_i + x_{i+1}) mod n] (both tokens real);
  # embed_dropout acts in training only (each value dropped or doubled at rate 0.5)
  n = 7
  model = DepthTextMLP(vocab_size=12, num_classes=2, embed_dim=3, pooling="mean_max", bigram_buckets=n,
                       width=4, depth=1, mixer="residual", embed_dropout=0.5)
  variables = _variables(model, TOKENS)
  inter, dropped = jax.jit(lambda v: [model.apply(v, TOKENS, train=t, rngs={"dropout": jax.random.key(1)})[1]
                                      for t in (False, True)])(variables)
  emb = np.asarray(variables["params"]["embedding"]["embedding"], np.float64)
  big = np.asarray(variables["params"]["bigram_embedding"]["embedding"], np.float64)
  pair = (TOKENS[:, :-1] * 31 + TOKENS[:, 1:]) % n
  x = np.concatenate([emb[TOKENS], big[pair]], axis=1)  # (B, 2L - 1, E)
  valid = np.concatenate([TOKENS > 0, (TOKENS[:, :-1] > 0) & (TOKENS[:, 1:] > 0)], axis=1)
  want = np.concatenate([_np_pool(x, valid, "mean"), _np_pool(x, valid, "max")], axis=-1)
  np.testing.assert_allclose(inter["pooled"], want, rtol=1e-5, atol=1e-6)
  d = np.asarray(dropped["pooled"])
  assert np.all(np.isclose(d, 0, atol=1e-7) | np.isclose(d, 2 * want, rtol=1e-5, atol=1e-6))
  assert np.isclose(d, 0, atol=1e-7)[:2].any() and not np.allclose(d, want)


def test_lstm_last_and_mean_pooling():
  # bidirectional 'last' = forward output at the last real token + backward output at the first (the
  # hidden states h, not the cells c); 'mean' = the outputs averaged over the real tokens
  last = LSTMClassifier(vocab_size=12, num_classes=2, embed_dim=3, hidden=2, pooling="last")
  mean = last.clone(pooling="mean")  # the same parameters
  tokens = TOKENS[:2]
  a, m = jax.jit(lambda v: (last.apply(v, tokens)[1], mean.apply(v, tokens)[1]))(_variables(last, tokens))
  out, h, b = np.asarray(a["layer_0"], np.float64), 2, np.arange(2)
  np.testing.assert_allclose(a["features"][:, :h], out[b, LENGTHS[:2] - 1, :h], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(a["features"][:, h:], out[:, 0, h:], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m["layer_0"], out, rtol=1e-6)
  np.testing.assert_allclose(m["features"], _np_pool(out, tokens > 0, "mean"), rtol=1e-5, atol=1e-6)


def test_lstm_two_layers_dropout_between_and_last_state():
  # layer 1 reads layer 0's outputs through dropout (rate 0.5: each value 0 or doubled) in training only;
  # one direction: 'last' is the last layer's output at each row's last real token
  model = LSTMClassifier(vocab_size=12, num_classes=2, embed_dim=3, hidden=2, num_layers=2, dropout_rate=0.5,
                         bidirectional=False, pooling="last")
  tokens = TOKENS[:2]

  def fn(variables):
    out = []
    for train in (False, True):
      seen = []

      def spy(next_fun, args, kwargs, context):
        if context.module.name == "lstm1" and context.method_name == "__call__":
          seen.append(args[0])  # the input of the second layer
        return next_fun(*args, **kwargs)

      with nn.intercept_methods(spy):
        _, inter = model.apply(variables, tokens, train=train, rngs={"dropout": jax.random.key(2)})
      out.append((inter, seen[0]))
    return out

  (inter, got), (inter_t, got_t) = jax.jit(fn)(_variables(model, tokens))
  np.testing.assert_array_equal(got, inter["layer_0"])  # eval: no dropout
  np.testing.assert_allclose(inter["features"], np.asarray(inter["layer_1"])[np.arange(2), LENGTHS[:2] - 1],
                             rtol=1e-5, atol=1e-6)
  prev_t, got_t = np.asarray(inter_t["layer_0"]), np.asarray(got_t)
  assert np.all(np.isclose(got_t, 0) | np.isclose(got_t, 2 * prev_t, rtol=1e-5))
  assert np.isclose(got_t, 0).any() and not np.allclose(got_t, prev_t)


def test_cls_pooling_is_the_plain_classifier_at_full_length():
  # residual mixer + CLS = TransformerClassifier(pooling='cls'): the CLS position is attended to and the
  # position table has max_len + 1 entries, so a row of exactly max_len tokens works
  kw = dict(vocab_size=12, num_classes=2, max_len=5, preset="transformer_tiny", pooling="cls", d_model=8,
            num_heads=2, d_ff=16, num_encoder_layers=1)
  tokens = TOKENS[:2]
  plain, depth = TransformerClassifier(**kw), DepthTransformerClassifier(mixer="residual", **kw)
  want, got = jax.jit(lambda v: (plain.apply(v, tokens)[0], depth.apply(v, tokens)[0]))(_variables(plain, tokens))
  assert np.abs(np.asarray(want)).max() > 1e-3
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
