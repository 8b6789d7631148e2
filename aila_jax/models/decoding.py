r"""Autoregressive decoding with a KV cache: greedy search and beam search.

Both run one decoder step per generated token on the ``'cache'`` collection
of :class:`aila_jax.models.transformer.EncoderDecoder` (``decoding=True``),
inside one ``jax.jit`` with a static ``max_decode_len`` and a
``lax.while_loop`` that stops early once every sequence is finished.

Beam search ranks finished hypotheses by the GNMT length-normalised score
(Wu et al. 2016, eq. 14, used with :math:`\alpha = 0.6` and beam 4 in
"Attention Is All You Need", section 6.1):

.. math::

   s(Y) = \frac{\log p(Y \mid X)}{lp(Y)}, \qquad
   lp(Y) = \left(\frac{5 + |Y|}{6}\right)^{\alpha}

where :math:`|Y|` counts the generated tokens including EOS. It keeps the
``beam_size`` best live and finished hypotheses per step (the ``2 * beam``
top candidates guarantee ``beam`` live ones, as in tensor2tensor and flax's
``examples/wmt``) and stops when no live hypothesis can still beat the worst
finished one, :math:`\log p_{live} / lp(L_{max}) < \min s_{finished}` (exact
for :math:`\alpha \ge 0`, since log-probabilities only decrease).

Token conventions: 0 = padding, BOS = 1 starts the decoder input, EOS = 2
ends a sequence; outputs hold the generated tokens (no BOS), EOS included,
then zeros.

References:
  Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
  Wu et al., "Google's Neural Machine Translation System", 2016,
  https://arxiv.org/abs/1609.08144.
"""

from __future__ import annotations

import functools

import jax
from jax import lax
import jax.numpy as jnp

from aila_jax.nn.transformer import check_tokens

__all__ = ["greedy_decode", "beam_search", "length_penalty", "init_cache"]

NEG_INF = -1.0e7  # finite, so that NEG_INF + log p stays ordered and NaN-free


def length_penalty(length, alpha: float):
  r"""GNMT length penalty :math:`((5 + |Y|) / 6)^\alpha`.

  Example:

  >>> float(length_penalty(1, 0.6))
  1.0
  """
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0)**alpha


def _check(model, inputs, max_decode_len):
  check_tokens(inputs, "inputs")
  if not hasattr(model, "decoding"):
    raise TypeError(f"decoding needs an EncoderDecoder-like model with a "
                    f"'decoding' field; got {type(model).__name__}.")
  if not isinstance(max_decode_len, int) or max_decode_len < 1:
    raise ValueError(f"max_decode_len must be an int >= 1; got "
                     f"{max_decode_len!r}.")
  if max_decode_len > model.max_len:
    raise ValueError(
        f"max_decode_len={max_decode_len} exceeds the model's position table "
        f"max_len={model.max_len} (config.model.max_len).")


def init_cache(model, batch_size: int, src_len: int, max_decode_len: int):
  """A zero KV cache for ``batch_size`` sequences of up to ``max_decode_len`` tokens.

  Shapes come from ``jax.eval_shape`` of the decoding model's ``init``, so no
  parameters are computed.
  """
  dec = model.clone(decoding=True)
  shapes = jax.eval_shape(lambda: dec.init(
      jax.random.key(0), jnp.ones((batch_size, src_len), jnp.int32),
      jnp.ones((batch_size, max_decode_len), jnp.int32)))["cache"]
  return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _step(dec, params, cache, encoded, valid, tokens):
  """One cached decoder step: tokens ``[N, 1]`` -> (logits ``[N, V]``, cache)."""
  logits, new_vars = dec.apply({"params": params, "cache": cache}, encoded,
                               valid, tokens, method="decode",
                               mutable=["cache"])
  return logits[:, 0], new_vars["cache"]


@functools.partial(jax.jit, static_argnames=("model", "max_decode_len",
                                             "eos_id", "bos_id"))
def greedy_decode(model, variables, inputs: jax.Array, *,
                  max_decode_len: int, eos_id: int = 2,
                  bos_id: int = 1) -> tuple[jax.Array, jax.Array]:
  r"""Greedy decoding, :math:`y_t = \arg\max_y p(y \mid y_{<t}, x)`, with the KV cache.

  Args:
    model: an :class:`~aila_jax.models.transformer.EncoderDecoder` (static).
    variables: its variables (``{'params': ...}``).
    inputs: source tokens ``int32[B, S]``, 0 = padding.
    max_decode_len: most tokens to generate (static; <= ``model.max_len``).
    eos_id: end-of-sequence id.
    bos_id: begin-of-sequence id fed first.

  Returns:
    ``(tokens int32[B, max_decode_len], log_probs float32[B])``: the tokens
    up to and including EOS, then 0; and :math:`\log p(Y \mid X)`.

  Example:

  >>> from aila_jax.models.transformer import EncoderDecoder
  >>> model = EncoderDecoder(vocab_size=9, max_len=6, preset="transformer_tiny")
  >>> x = jnp.array([[4, 5, 2]])
  >>> variables = model.init(jax.random.key(0), x, x)
  >>> greedy_decode(model, variables, x, max_decode_len=5)[0].shape
  (1, 5)
  """
  _check(model, inputs, max_decode_len)
  b, s = inputs.shape
  params = variables["params"]
  encoded = model.apply(variables, inputs, method="encode")  # (B, S, D)
  valid = inputs > 0  # (B, S)
  dec = model.clone(decoding=True)
  cache = init_cache(model, b, s, max_decode_len)

  def cond(state):
    i, _, _, _, done, _ = state
    return (i < max_decode_len) & ~jnp.all(done)

  def body(state):
    i, cache, out, last, done, logp = state
    logits, cache = _step(dec, params, cache, encoded, valid, last[:, None])
    log_probs = jax.nn.log_softmax(logits)  # (B, V)
    nxt = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    logp = logp + jnp.where(done, 0.0, jnp.take_along_axis(
        log_probs, nxt[:, None], axis=-1)[:, 0])
    nxt = jnp.where(done, 0, nxt)
    out = lax.dynamic_update_slice(out, nxt[:, None], (0, i))
    return i + 1, cache, out, nxt, done | (nxt == eos_id), logp

  state = (jnp.zeros((), jnp.int32), cache,
           jnp.zeros((b, max_decode_len), jnp.int32),
           jnp.full((b,), bos_id, jnp.int32), jnp.zeros((b,), bool),
           jnp.zeros((b,), jnp.float32))
  _, _, out, _, _, logp = lax.while_loop(cond, body, state)
  return out, logp


def _gather_beams(x, index):
  """``x[b, index[b, k]]`` for ``x [B, K_in, ...]`` and ``index [B, K_out]``."""
  return jnp.take_along_axis(
      x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


@functools.partial(jax.jit, static_argnames=(
    "model", "beam_size", "alpha", "max_decode_len", "eos_id", "bos_id"))
def beam_search(model, variables, inputs: jax.Array, *, max_decode_len: int,
                beam_size: int = 4, alpha: float = 0.6, eos_id: int = 2,
                bos_id: int = 1) -> tuple[jax.Array, jax.Array]:
  r"""Beam search with the GNMT length penalty and the KV cache.

  Args:
    model: an :class:`~aila_jax.models.transformer.EncoderDecoder` (static).
    variables: its variables.
    inputs: source tokens ``int32[B, S]``, 0 = padding.
    max_decode_len: most tokens to generate (static; <= ``model.max_len``).
    beam_size: hypotheses kept per step (4 in the paper).
    alpha: length penalty exponent :math:`\alpha` (0.6 in the paper; 0 ranks
      by log-probability alone).
    eos_id: end-of-sequence id.
    bos_id: begin-of-sequence id fed first.

  Returns:
    ``(sequences int32[B, beam, max_decode_len], scores float32[B, beam])``,
    best first: the finished hypotheses and their scores :math:`s(Y)`, or,
    for a source with no finished hypothesis within ``max_decode_len``, the
    live ones with :math:`\log p / lp(L_{max})`.

  Example:

  >>> from aila_jax.models.transformer import EncoderDecoder
  >>> model = EncoderDecoder(vocab_size=9, max_len=6, preset="transformer_tiny")
  >>> x = jnp.array([[4, 5, 2]])
  >>> variables = model.init(jax.random.key(0), x, x)
  >>> seqs, scores = beam_search(model, variables, x, max_decode_len=5)
  >>> seqs.shape, scores.shape
  ((1, 4, 5), (1, 4))
  """
  _check(model, inputs, max_decode_len)
  if not isinstance(beam_size, int) or beam_size < 1:
    raise ValueError(f"beam_size must be an int >= 1; got {beam_size!r}.")
  if alpha < 0:
    raise ValueError(f"alpha must be >= 0 (the early stop is exact only "
                     f"then); got {alpha}.")
  b, s = inputs.shape
  k, n = beam_size, max_decode_len
  params = variables["params"]
  encoded = model.apply(variables, inputs, method="encode")  # (B, S, D)
  tile = lambda x: jnp.repeat(x, k, axis=0)  # (B, ...) -> (B*K, ...)
  encoded_f, valid_f = tile(encoded), tile(inputs > 0)
  dec = model.clone(decoding=True)
  cache = init_cache(model, b * k, s, n)

  def gather_cache(cache, index):  # index (B, K) of beams to keep
    def g(x):
      if x.ndim == 0:  # cache / position indices, the same for every beam
        return x
      y = _gather_beams(x.reshape((b, k) + x.shape[1:]), index)
      return y.reshape(x.shape)
    return jax.tree_util.tree_map(g, cache)

  max_lp = length_penalty(n, alpha)

  def cond(state):
    i, _, _, alive_lp, _, fin_score, fin_flag = state
    best_alive = alive_lp[:, 0] / max_lp  # (B,)
    worst_fin = jnp.min(jnp.where(fin_flag, fin_score, NEG_INF), axis=1)
    return (i < n) & ~jnp.all(worst_fin > best_alive)

  def body(state):
    i, cache, alive_seq, alive_lp, fin_seq, fin_score, fin_flag = state
    tokens = alive_seq[:, :, i].reshape(b * k, 1)
    logits, cache = _step(dec, params, cache, encoded_f, valid_f, tokens)
    vocab = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits).reshape(b, k, vocab)
    cand = (alive_lp[:, :, None] + log_probs).reshape(b, k * vocab)
    top_lp, top_idx = lax.top_k(cand, min(2 * k, k * vocab))  # (B, 2K)
    top_beam = top_idx // vocab
    top_tok = (top_idx % vocab).astype(jnp.int32)
    top_seq = _gather_beams(alive_seq, top_beam)  # (B, 2K, N+1)
    top_seq = lax.dynamic_update_slice(top_seq, top_tok[:, :, None],
                                       (0, 0, i + 1))
    is_eos = top_tok == eos_id
    real = top_lp > NEG_INF / 2  # not a descendant of an empty start beam
    # Live hypotheses: the best K candidates that did not end.
    alive_lp, pick = lax.top_k(jnp.where(is_eos, NEG_INF, top_lp), k)
    alive_seq = _gather_beams(top_seq, pick)
    cache = gather_cache(cache, _gather_beams(top_beam, pick))
    # Finished hypotheses: merge the new ones into the best K so far.
    new_flag = is_eos & real
    new_score = jnp.where(new_flag, top_lp / length_penalty(i + 1, alpha),
                          NEG_INF)
    fin_score, pick = lax.top_k(
        jnp.concatenate([fin_score, new_score], axis=1), k)
    fin_seq = _gather_beams(jnp.concatenate([fin_seq, top_seq], 1), pick)
    fin_flag = _gather_beams(jnp.concatenate([fin_flag, new_flag], 1), pick)
    return i + 1, cache, alive_seq, alive_lp, fin_seq, fin_score, fin_flag

  alive_seq = jnp.zeros((b, k, n + 1), jnp.int32).at[:, :, 0].set(bos_id)
  alive_lp = jnp.tile(jnp.asarray([0.0] + [NEG_INF] * (k - 1)), (b, 1))
  state = (jnp.zeros((), jnp.int32), cache, alive_seq, alive_lp,
           jnp.zeros((b, k, n + 1), jnp.int32), jnp.full((b, k), NEG_INF),
           jnp.zeros((b, k), bool))
  _, _, alive_seq, alive_lp, fin_seq, fin_score, fin_flag = lax.while_loop(
      cond, body, state)
  any_fin = jnp.any(fin_flag, axis=1)  # (B,)
  seqs = jnp.where(any_fin[:, None, None], fin_seq, alive_seq)[:, :, 1:]
  scores = jnp.where(any_fin[:, None], fin_score, alive_lp / max_lp)
  return seqs, scores
