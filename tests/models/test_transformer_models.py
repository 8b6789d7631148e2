"""Tests for aila_jax.models.transformer: presets, tied embeddings, masks, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.models.transformer import PRESETS, EncoderDecoder, TransformerClassifier
from aila_jax.train.state import param_count

X = jnp.array([[5, 6, 7, 2, 0], [8, 2, 0, 0, 0]], jnp.int32)
Y = jnp.array([[7, 6, 5, 2, 0, 0], [8, 2, 0, 0, 0, 0]], jnp.int32)


def _expected_count(v, d, f, n_enc, n_dec, max_len=None):
  attn = 4 * d * d + 4 * d
  ffn = d * f + f + f * d + d
  enc = attn + ffn + 2 * 2 * d
  dec = 2 * attn + ffn + 3 * 2 * d
  return v * d + n_enc * enc + n_dec * dec


@pytest.mark.parametrize("preset,vocab,count", [
    ("transformer_base", 37000, 63_082_496),   # paper, Table 3: 65M
    ("transformer_big", 37000, 214_245_376),   # paper, Table 3: 213M
    ("transformer_small", 8000, None),
    ("transformer_tiny", 16, None),
])
def test_preset_parameter_counts_are_pinned(preset, vocab, count):
  p = PRESETS[preset]
  want = _expected_count(vocab, p["d_model"], p["d_ff"], p["num_encoder_layers"],
                         p["num_decoder_layers"])
  if count is not None:
    assert want == count
  model = models.get_model("transformer", preset=preset, vocab_size=vocab, max_len=64)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), X, Y))
  assert param_count(shapes["params"]) == want


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_classifier_parameter_count_is_pinned(pooling):
  # transformer_small encoder only: embedding, 3 encoder layers, (cls vector), head.
  want = _expected_count(8000, 256, 1024, 3, 0) + 256 * 2 + 2 + (256 if pooling == "cls" else 0)
  model = models.get_model("transformer_classifier", vocab_size=8000, num_classes=2, max_len=32,
                           pooling=pooling)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), X))
  assert param_count(shapes["params"]) == want == (4_417_794 if pooling == "mean" else 4_418_050)


def test_paper_sizes_of_the_presets():
  assert PRESETS["transformer_base"] == dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6,
                                             num_decoder_layers=6, dropout_rate=0.1)
  assert PRESETS["transformer_big"] == dict(d_model=1024, num_heads=16, d_ff=4096, num_encoder_layers=6,
                                            num_decoder_layers=6, dropout_rate=0.3)


@pytest.fixture(scope="module")
def tiny():
  model = EncoderDecoder(vocab_size=11, max_len=8, preset="transformer_tiny", dropout_rate=0.0,
                         return_attention=True)
  return model, jax.jit(model.init)(jax.random.key(0), X, Y)


def test_logits_and_attention_maps(tiny):
  model, variables = tiny
  logits, inter = jax.jit(model.apply)(variables, X, Y)
  chex.assert_shape(logits, (2, 6, 11))
  assert logits.dtype == jnp.float32
  chex.assert_shape(inter["encoder/layer_1/self_attention"], (2, 4, 5, 5))
  chex.assert_shape(inter["decoder/layer_0/self_attention"], (2, 4, 6, 6))
  chex.assert_shape(inter["decoder/layer_1/cross_attention"], (2, 4, 6, 5))
  # Padding source positions get no cross-attention, and the decoder is causal.
  np.testing.assert_allclose(inter["decoder/layer_0/cross_attention"][1, :, :, 2:], 0.0)
  self_w = inter["decoder/layer_0/self_attention"]
  np.testing.assert_allclose(jnp.triu(self_w, k=1), 0.0)
  np.testing.assert_allclose(self_w.sum(-1), 1.0, rtol=1e-5)


def test_tied_embeddings_scaled_by_sqrt_d(tiny):
  model, variables = tiny
  params = variables["params"]
  assert set(params) == {"embedding", "encoder", "decoder"}
  assert "logits" not in params["decoder"]
  emb = params["embedding"]["embedding"]  # (V, D)
  # The output layer is the transposed embedding: logits of a decoder output h are h @ E^T.
  _, inter = jax.jit(model.apply)(variables, X, Y)
  untied = EncoderDecoder(vocab_size=11, max_len=8, preset="transformer_tiny", share_embeddings=False)
  p2 = jax.eval_shape(lambda: untied.init(jax.random.key(0), X, Y))["params"]
  assert {"source_embedding", "target_embedding"} <= set(p2) and "logits" in p2["decoder"]
  # The encoder input is E[x] * sqrt(d) + PE: with one encoder layer removed we can't see it
  # directly, so check the embedding statistics instead: E ~ N(0, 1/d).
  np.testing.assert_allclose(np.std(np.asarray(emb)), 64**-0.5, rtol=0.2)
  chex.assert_shape(inter["encoded"], (2, 5, 64))


def test_embedding_scale_enters_the_encoder():
  model = EncoderDecoder(vocab_size=11, max_len=8, preset="transformer_tiny", num_encoder_layers=0,
                         dropout_rate=0.0)
  variables = jax.jit(model.init)(jax.random.key(0), X, Y)
  encoded = jax.jit(lambda v: model.apply(v, X, method="encode"))(variables)
  from aila_jax.nn.transformer import sinusoidal_positions
  emb = variables["params"]["embedding"]["embedding"]
  want = emb[X] * 8.0 + sinusoidal_positions(5, 64)[None]
  np.testing.assert_allclose(encoded, want, rtol=1e-5, atol=1e-5)


def test_source_padding_and_future_targets_do_not_matter(tiny):
  model, variables = tiny
  apply = jax.jit(lambda x, y: model.apply(variables, x, y)[0])
  logits = apply(X, Y)
  more_pad = jnp.pad(X, ((0, 0), (0, 3)))
  np.testing.assert_allclose(apply(more_pad, Y), logits, rtol=1e-5, atol=1e-5)
  # Logits at position t depend on targets < t only (teacher forcing with a right shift).
  y2 = Y.at[:, 3:].set(9)
  np.testing.assert_allclose(apply(X, y2)[:, :4], logits[:, :4], rtol=1e-5, atol=1e-5)
  assert not np.allclose(apply(X, y2)[0, 4:], logits[0, 4:])


@pytest.mark.parametrize("pre_ln,positions", [(True, "learned")])
def test_options_train_mode_and_bfloat16(pre_ln, positions):
  model = EncoderDecoder(vocab_size=11, max_len=8, preset="transformer_tiny", pre_ln=pre_ln,
                         positions=positions, dtype=jnp.bfloat16)
  variables = jax.jit(model.init)(jax.random.key(0), X, Y)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
  assert ("final_norm" in variables["params"]["encoder"]) == pre_ln
  assert ("positions" in variables["params"]["decoder"]) == (positions == "learned")
  logits, _ = jax.jit(lambda v: model.apply(v, X, Y, train=True, rngs={"dropout": jax.random.key(1)}))(
      variables)
  assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())


def _shape(model, *args):
  """Traces ``model.init`` abstractly (errors come at trace time), fast."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), *(args or (X, Y))))


def test_bad_configs_name_the_key():
  with pytest.raises(ConfigError, match=r"config.model.num_heads: d_model \(64\) must be divisible by "
                     r"num_heads \(5\)"):
    _shape(EncoderDecoder(vocab_size=11, preset="transformer_tiny", num_heads=5))
  with pytest.raises(ConfigError, match=r"config.model.num_kv_heads: num_heads \(4\) must be a multiple "
                     r"of num_kv_heads \(3\)"):
    _shape(EncoderDecoder(vocab_size=11, preset="transformer_tiny", num_kv_heads=3))
  with pytest.raises(ConfigError, match=r"config.model.preset: unknown preset 'huge'"):
    _shape(EncoderDecoder(vocab_size=11, preset="huge"))
  with pytest.raises(ConfigError, match=r"config.model.dropout_rate"):
    _shape(EncoderDecoder(vocab_size=11, preset="transformer_tiny", dropout_rate=1.5))
  with pytest.raises(ConfigError, match=r"takes no argument\(s\) \['heads'\]"):
    models.get_model("transformer", vocab_size=11, heads=4)


def test_bad_inputs_are_clear_errors(tiny):
  model, variables = tiny
  with pytest.raises(ValueError, match=r"sequence length 9 exceeds the position table of max_len=8"):
    jax.eval_shape(lambda: model.apply(variables, jnp.ones((2, 9), jnp.int32), Y))
  with pytest.raises(ValueError, match=r"inputs has an empty batch: shape \(0, 5\)"):
    jax.eval_shape(lambda: model.apply(variables, X[:0], Y[:0]))
  with pytest.raises(ValueError, match=r"targets must hold integer token ids"):
    jax.eval_shape(lambda: model.apply(variables, X, Y.astype(jnp.float32)))
  with pytest.raises(ValueError, match=r"same batch size"):
    jax.eval_shape(lambda: model.apply(variables, X, Y[:1]))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_classifier_pools_over_real_tokens(pooling):
  model = models.get_model("transformer_classifier", vocab_size=11, num_classes=3, max_len=6,
                           preset="transformer_tiny", pooling=pooling, return_attention=True)
  tokens = jnp.array([[4, 5, 6, 0], [7, 0, 0, 0]], jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(0), tokens)
  apply = jax.jit(lambda t: model.apply(variables, t))
  logits, inter = apply(tokens)
  chex.assert_shape(logits, (2, 3))
  extra = int(pooling == "cls")
  chex.assert_shape(inter["encoder/layer_0/self_attention"], (2, 4, 4 + extra, 4 + extra))
  np.testing.assert_allclose(apply(jnp.pad(tokens, ((0, 0), (0, 2))))[0], logits, rtol=1e-5, atol=1e-5)
  assert ("cls" in variables["params"]["encoder"]) == (pooling == "cls")
  with pytest.raises(ValueError, match="exceeds the position table"):
    jax.eval_shape(lambda: model.apply(variables, jnp.ones((1, 7), jnp.int32)))


def test_classifier_bad_pooling():
  with pytest.raises(ConfigError, match=r"config.model.pooling: expected one of \('mean', 'cls'\)"):
    _shape(TransformerClassifier(vocab_size=11, num_classes=2, pooling="max"), jnp.ones((1, 3), jnp.int32))
