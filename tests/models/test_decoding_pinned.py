"""Pinned maths of aila_jax.models.decoding against independent references.

Greedy search is checked against a plain Python loop over the uncached,
teacher-forced model; beam search with a beam wider than the whole search
space against exhaustive enumeration (all finished hypotheses, not just the
best); the length penalty against the GNMT formula typed in by hand.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.models import decoding
from aila_jax.models.transformer import EncoderDecoder

X = jnp.array([[3, 4, 3, 2, 0], [4, 2, 0, 0, 0]], jnp.int32)


@pytest.fixture(scope="module")
def model_and_vars():
  model = EncoderDecoder(vocab_size=5, max_len=8, preset="transformer_tiny", d_model=32,
                         d_ff=64, num_encoder_layers=1, num_decoder_layers=1)
  variables = jax.jit(model.init)(jax.random.key(0), X, X)
  variables = jax.tree_util.tree_map(lambda a: 3.0 * a, variables)
  return model, variables, jax.jit(lambda v, x, y: model.apply(v, x, y)[0])


def _seq_log_probs(apply, variables, x, seqs):
  """float64 per-token log p of ``seqs [C, L]`` given ``x [C, S]`` (teacher forcing)."""
  lp = np.asarray(jax.nn.log_softmax(apply(variables, x, seqs)), np.float64)
  return np.take_along_axis(lp, np.asarray(seqs)[..., None], -1)[..., 0]


def test_length_penalty_is_the_gnmt_formula():
  for length in (1, 2, 3, 7, 20):
    for alpha in (0.0, 0.6, 1.0, 2.0):
      want = ((5.0 + length) / 6.0)**alpha
      np.testing.assert_allclose(float(decoding.length_penalty(length, alpha)), want, rtol=1e-6)
  np.testing.assert_allclose(decoding.length_penalty(jnp.array([4, 7]), 0.5), [1.5**0.5, 2.0**0.5],
                             rtol=1e-6)


@pytest.mark.parametrize("eos", [2, 3])
def test_greedy_matches_an_uncached_argmax_loop(model_and_vars, eos):
  model, variables, apply = model_and_vars
  n = 5
  got, got_lp = decoding.greedy_decode(model, variables, X, max_decode_len=n, eos_id=eos)
  y = np.zeros((2, n), np.int32)
  logp = np.zeros(2)
  done = np.zeros(2, bool)
  for t in range(n):
    lp = np.asarray(jax.nn.log_softmax(apply(variables, X, jnp.asarray(y))[:, t]), np.float64)
    nxt = lp.argmax(-1)
    logp += np.where(done, 0.0, lp[np.arange(2), nxt])
    y[:, t] = np.where(done, 0, nxt)
    done |= y[:, t] == eos
  np.testing.assert_array_equal(got, y)
  np.testing.assert_allclose(got_lp, logp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 2])
def test_wide_beam_returns_every_finished_hypothesis_in_order(model_and_vars, rows):
  # All 1 + 4 + 16 = 21 sequences ending in EOS within 3 tokens; beam 40 holds them all,
  # so the returned finished list must be exactly the sorted exhaustive list. With rows=1 the
  # source's most likely first token is EOS, so a wrong early stop (e.g. on the best instead
  # of the worst finished score) would end the search after one step.
  model, variables, apply = model_and_vars
  x_src = X[:rows]
  vocab, n, alpha, eos = 5, 3, 0.6, 2
  cands = []
  for length in range(1, n + 1):
    for prefix in itertools.product([t for t in range(vocab) if t != eos], repeat=length - 1):
      cands.append(list(prefix) + [eos] + [0] * (n - length))
  cands = np.array(cands, np.int32)
  c = len(cands)
  lengths = (cands == eos).argmax(1) + 1
  tok = _seq_log_probs(apply, variables, jnp.repeat(x_src, c, 0),
                       jnp.tile(cands, (rows, 1))).reshape(rows, c, n)
  upto = np.arange(n)[None] < lengths[:, None]
  scores = (tok * upto).sum(-1) / ((5.0 + lengths) / 6.0)**alpha  # (B, C)
  seqs, got = decoding.beam_search(model, variables, x_src, max_decode_len=n, beam_size=40,
                                   alpha=alpha)
  for b in range(rows):
    order = np.argsort(-scores[b], kind="stable")
    np.testing.assert_allclose(got[b, :c], scores[b, order], rtol=1e-4, atol=1e-4)
    # Sequences: compare as sets keyed by score rank (ties are not expected with random weights).
    np.testing.assert_array_equal(seqs[b, :c], cands[order])
    assert bool((np.asarray(got[b, c:]) < -1e5).all())  # the rest are empty slots


def test_without_any_eos_the_live_beams_are_scored_by_lp_of_max_len(model_and_vars):
  # eos_id outside the vocabulary: nothing finishes; beam 40 >= 5**2 keeps every length-2
  # sequence alive, ranked by log p / lp(max_decode_len).
  model, variables, apply = model_and_vars
  vocab, n, alpha = 5, 2, 0.6
  cands = np.array(list(itertools.product(range(vocab), repeat=n)), np.int32)  # (25, 2)
  c = len(cands)
  tok = _seq_log_probs(apply, variables, jnp.repeat(X, c, 0), jnp.tile(cands, (2, 1))).reshape(2, c, n)
  scores = tok.sum(-1) / ((5.0 + n) / 6.0)**alpha
  seqs, got = decoding.beam_search(model, variables, X, max_decode_len=n, beam_size=40, alpha=alpha,
                                   eos_id=99)
  for b in range(2):
    order = np.argsort(-scores[b], kind="stable")
    np.testing.assert_allclose(got[b, :c], scores[b, order], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(seqs[b, :c], cands[order])
