"""Tests for aila_jax.models.decoding: KV-cache steps, greedy search, beam search."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.models import decoding
from aila_jax.models.transformer import EncoderDecoder

X = jnp.array([[3, 4, 3, 2, 0], [4, 2, 0, 0, 0]], jnp.int32)


def _random_model(vocab, scale=3.0, **kw):
  model = EncoderDecoder(vocab_size=vocab, max_len=8, preset="transformer_tiny", d_model=32,
                         d_ff=64, num_encoder_layers=1, num_decoder_layers=1, **kw)
  variables = jax.jit(model.init)(jax.random.key(0), X, X)
  # Larger weights make the output distributions peaked and the hypotheses well separated.
  return model, jax.tree_util.tree_map(lambda a: scale * a, variables)


class CacheTest(chex.TestCase):

  @chex.variants(with_jit=True)  # the op-by-op path is covered in tests/nn (and slow here)
  def test_cached_decoding_equals_full_recomputation(self):
    model, variables = _random_model(5, pre_ln=True, positions="learned", num_kv_heads=2)
    y = jnp.array([[3, 4, 1, 4, 2, 0], [4, 4, 3, 2, 0, 0]], jnp.int32)
    full = jax.jit(model.apply)(variables, X, y)[0]  # (B, T, V)
    encoded = jax.jit(lambda v: model.apply(v, X, method="encode"))(variables)
    cache = decoding.init_cache(model, 2, 5, 6)
    dec = model.clone(decoding=True)
    step = self.variant(lambda c, t: decoding._step(dec, variables["params"], c, encoded, X > 0, t))
    y_in = jnp.concatenate([jnp.ones((2, 1), jnp.int32), y[:, :-1]], axis=1)
    logits = []
    for t in range(6):
      out, cache = step(cache, y_in[:, t:t + 1])
      logits.append(out)
    np.testing.assert_allclose(jnp.stack(logits, 1), full, rtol=1e-4, atol=1e-4)


def test_beam_search_finds_the_exhaustive_optimum():
  vocab, max_len, alpha, eos = 5, 3, 0.6, 2
  model, variables = _random_model(vocab)
  # Every sequence that ends with EOS within max_len (tokens 0..4, EOS only last): 21.
  cands = []
  for n in range(1, max_len + 1):
    for prefix in itertools.product([t for t in range(vocab) if t != eos], repeat=n - 1):
      cands.append(list(prefix) + [eos] + [0] * (max_len - n))
  cands = jnp.array(cands, jnp.int32)  # (C, L)
  c = len(cands)
  lengths = (cands == eos).argmax(1) + 1  # tokens up to and including EOS
  x = jnp.repeat(X, c, axis=0)  # (B * C, S)
  y = jnp.tile(cands, (X.shape[0], 1))  # (B * C, L)
  log_probs = jax.nn.log_softmax(jax.jit(model.apply)(variables, x, y)[0])
  tok_lp = jnp.take_along_axis(log_probs, y[..., None], -1)[..., 0].reshape(-1, c, max_len)
  upto = jnp.arange(max_len)[None] < lengths[:, None]  # (C, L)
  scores = (tok_lp * upto).sum(-1) / decoding.length_penalty(lengths, alpha)  # (B, C)
  # 2 * beam >= the 4 * 4 * 5 candidates of the last step, so the search is exhaustive.
  seqs, got = decoding.beam_search(model, variables, X, max_decode_len=max_len, beam_size=40,
                                   alpha=alpha)
  best = jnp.argmax(scores, axis=1)
  np.testing.assert_array_equal(seqs[:, 0], cands[best])
  np.testing.assert_allclose(got[:, 0], scores[jnp.arange(2), best], rtol=1e-4)
  assert bool((jnp.diff(got, axis=1) <= 1e-6).all())  # best first


# Greedy vs beam search on a trained model (beam 1 = greedy, beam 4 >= greedy, EOS handling) is
# tested end to end in tests/train/test_transformer_copy_e2e.py.


def test_decoding_errors():
  model = EncoderDecoder(vocab_size=7, max_len=8, preset="transformer_tiny")
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), X, X))
  # Errors come at trace time, so abstract tracing is enough.
  trace = lambda fn, x=X: jax.eval_shape(lambda v: fn(model, v, x), shapes)
  with pytest.raises(ValueError, match=r"max_decode_len=9 exceeds the model's position table "
                     r"max_len=8 \(config.model.max_len\)"):
    trace(lambda m, v, x: decoding.greedy_decode(m, v, x, max_decode_len=9))
  with pytest.raises(ValueError, match=r"beam_size must be an int >= 1; got 0"):
    trace(lambda m, v, x: decoding.beam_search(m, v, x, max_decode_len=4, beam_size=0))
  with pytest.raises(ValueError, match=r"alpha must be >= 0"):
    trace(lambda m, v, x: decoding.beam_search(m, v, x, max_decode_len=4, alpha=-1.0))
  with pytest.raises(ValueError, match=r"inputs has an empty batch"):
    trace(lambda m, v, x: decoding.greedy_decode(m, v, x, max_decode_len=4), X[:0])
  with pytest.raises(TypeError, match=r"EncoderDecoder-like model"):
    decoding.greedy_decode(object(), {}, X, max_decode_len=4)
