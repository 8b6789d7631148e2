"""Text classifiers over depth mixers and the LSTM baseline: shapes, pinned sizes, padding, errors, IMDB."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.train.state import param_count

V, C = 50, 3
X = jnp.array([[5, 6, 7, 8, 9, 0], [8, 2, 0, 0, 0, 0], [4, 4, 4, 4, 4, 4]], jnp.int32)
X_PADDED = jnp.pad(X, ((0, 0), (0, 7)))  # the same reviews with 7 more padding tokens


def _model(name, **kw):
  return models.get_model(name, vocab_size=V, num_classes=C, **kw)


def _init_and_apply(model, *inputs):
  """Initialises on ``X`` and applies to each of ``inputs``, in one compiled call."""
  def fn():
    variables = model.init(jax.random.key(0), X, train=False)
    return variables, [model.apply(variables, x, train=False) for x in inputs]
  return jax.jit(fn)()


def _mlp(e, w, d, x=2):
  return (e * w + w) + d * (2 * w + w * x * w + x * w + x * w * w + w) + 2 * w + w * C + C


def _lstm(e, h, directions):
  return directions * 4 * (e * h + h * h + h)


def _encoder_layer(d, f):
  return (4 * d * d + 4 * d) + (d * f + f + f * d + d) + 2 * 2 * d


@pytest.mark.parametrize("name,kw,count", [
    # embedding, DepthMLP on the pooled vector (embed to width, 3 blocks, LN, head)
    ("depth_text_mlp", dict(embed_dim=8, width=16, depth=3, mixer="residual", pooling="mean"),
     V * 8 + _mlp(8, 16, 3)),
    # mean_max doubles the pooled width; aila1 adds one logit per buffer slot per layer
    ("depth_text_mlp", dict(embed_dim=8, width=16, depth=3, mixer="aila1", pooling="mean_max"),
     V * 8 + _mlp(16, 16, 3) + 3 * 4),
    ("depth_text_mlp", dict(embed_dim=8, width=16, depth=2, mixer="residual", bigram_buckets=20),
     V * 8 + 20 * 8 + _mlp(8, 16, 2)),
    # embedding, forward + backward LSTM (4 gates: input kernel, hidden kernel, bias), head
    ("lstm_classifier", dict(embed_dim=8, hidden=4), V * 8 + _lstm(8, 4, 2) + 8 * C + C),
    ("lstm_classifier", dict(embed_dim=8, hidden=4, num_layers=2, bidirectional=False),
     V * 8 + _lstm(8, 4, 1) + _lstm(4, 4, 1) + 4 * C + C),
    # transformer_tiny encoder (d 64, d_ff 128, 2 layers), head; the plain TransformerClassifier's count
    ("depth_transformer_classifier", dict(preset="transformer_tiny", max_len=16, mixer="residual"),
     V * 64 + 2 * _encoder_layer(64, 128) + 64 * C + C),
    ("depth_transformer_classifier", dict(preset="transformer_tiny", max_len=16, mixer="aila1"),
     V * 64 + 2 * _encoder_layer(64, 128) + 64 * C + C + 2 * 3),
])
def test_pinned_param_counts(name, kw, count):
  model = _model(name, **kw)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), X))
  assert param_count(shapes["params"]) == count
  assert name in models.MODELS


@pytest.mark.parametrize("name,kw", [
    ("depth_text_mlp", dict(embed_dim=8, width=16, depth=3, mixer="aila1", pooling="mean_max",
                            bigram_buckets=30)),
    ("depth_text_mlp", dict(embed_dim=8, width=16, depth=3, mixer="aila2", mixer_kwargs={"num_heads": 2},
                            pooling="max", dtype=jnp.bfloat16)),
    ("depth_transformer_classifier", dict(preset="transformer_tiny", max_len=16, mixer="aila2", pooling="cls",
                                          pre_ln=True)),
    # the final states: forward at each review's last real token, backward at its first
    ("lstm_classifier", dict(embed_dim=8, hidden=4, pooling="last", dtype=jnp.bfloat16)),
])
def test_logits_depth_weights_and_padding_invariance(name, kw):
  model = _model(name, **kw)
  changed = X.at[1, 1].set(9)
  variables, [(a, inter), (b, _), (c, _)] = _init_and_apply(model, X, X_PADDED, changed)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables["params"]))
  chex.assert_shape(a, (3, C))
  assert a.dtype == jnp.float32
  chex.assert_tree_all_finite(a)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # 7 more padding tokens change nothing
  assert float(jnp.abs(c[1] - a[1]).max()) > 1e-6  # but the tokens do matter
  np.testing.assert_allclose(c[::2], a[::2], rtol=1e-5, atol=1e-5)  # and only their own example's
  mixer = kw.get("mixer")
  if mixer in ("aila1", "aila2"):
    layers = kw.get("depth", 2)
    w = inter["depth_weights"]["stage_0"]
    chex.assert_shape(w, (layers, layers + 1))
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-2)
    assert float(jnp.triu(w, 1).max()) == 0.0  # layer t reads slots < t only
    if mixer == "aila2":
      chex.assert_shape(inter["depth_heads"]["stage_0"], (layers, 2 if name == "depth_text_mlp" else 4,
                                                         layers + 1))
  else:
    assert "depth_weights" not in inter


def test_residual_mixer_is_the_plain_encoder():
  kw = dict(preset="transformer_tiny", max_len=16)
  plain, depth = _model("transformer_classifier", **kw), _model("depth_transformer_classifier", **kw)
  aila = _model("depth_transformer_classifier", mixer="aila1", **kw)
  mrla = _model("depth_transformer_classifier", mixer="mrla_light", drop_path=0.5, **kw)

  def fn():
    variables = plain.init(jax.random.key(0), X)
    own = depth.init(jax.random.key(0), X)
    aila_vars, mrla_vars = aila.init(jax.random.key(0), X), mrla.init(jax.random.key(0), X)
    return (variables, own, plain.apply(variables, X), depth.apply(variables, X), aila.apply(aila_vars, X),
            aila.apply(aila_vars, X_PADDED),
            mrla.apply(mrla_vars, X, train=True, rngs={"dropout": jax.random.key(1)}))

  variables, own, (want, _), (got, inter), (other, aila_inter), (padded, _), (m, _) = jax.jit(fn)()
  chex.assert_trees_all_equal_shapes(variables, own)  # the same parameters, under the same names
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert "depth_weights" not in inter
  assert float(jnp.abs(other - want).max()) > 1e-4  # a uniform mix over the earlier layers is another network
  np.testing.assert_allclose(padded, other, rtol=1e-5, atol=1e-5)  # AILA-1 on tokens ignores padding
  np.testing.assert_allclose(aila_inter["depth_weights"]["stage_0"], [[1, 0, 0], [0.5, 0.5, 0]], rtol=1e-6)
  chex.assert_shape(m, (3, C))
  chex.assert_tree_all_finite(m)  # MRLA-light over [B, L, D] token states, with drop-path


@pytest.mark.parametrize("name,kw,match", [
    ("depth_text_mlp", dict(mixer="skip"), r"config.model.mixer: unknown depth mixer 'skip'"),
    ("depth_transformer_classifier", dict(preset="transformer_tiny", mixer="skip"),
     r"config.model.mixer: unknown depth mixer 'skip'"),
    ("depth_text_mlp", dict(mixer="residual", mixer_kwargs={"num_heads": 4}),
     r"config.model.mixer_kwargs: mixer 'residual' takes no option"),
    ("depth_transformer_classifier", dict(preset="transformer_tiny", mixer="aila1", mixer_kwargs={"heads": 2}),
     r"config.model.mixer_kwargs: mixer 'aila1' takes no option"),
    ("depth_text_mlp", dict(width=20, mixer="aila2", mixer_kwargs={"num_heads": 3}),
     r"config.model.mixer_kwargs.num_heads: aila2 needs the width 20"),
    ("depth_transformer_classifier", dict(preset="transformer_tiny", d_model=60, num_heads=3, mixer="aila2",
                                          mixer_kwargs={"num_heads": 8}),
     r"config.model.mixer_kwargs.num_heads: aila2 needs the width 60"),
    ("depth_text_mlp", dict(pooling="sum"), r"config.model.pooling: expected one of \('mean', 'max', 'mean_max'\)"),
    ("depth_text_mlp", dict(depth=0), r"config.model.depth: expected an int >= 1, got 0"),
    ("depth_text_mlp", dict(embed_dim=0), r"config.model.embed_dim: expected an int >= 1"),
    ("depth_text_mlp", dict(bigram_buckets=-1), r"config.model.bigram_buckets: expected an int >= 0"),
    ("depth_text_mlp", dict(embed_dropout=1.0), r"config.model.embed_dropout: expected a rate in \[0, 1\)"),
    ("depth_transformer_classifier", dict(preset="transformer_tiny", pooling="max"),
     r"config.model.pooling: expected one of \('mean', 'cls'\)"),
    ("lstm_classifier", dict(pooling="cls"), r"config.model.pooling: expected one of \('mean', 'max', 'last'\)"),
    ("lstm_classifier", dict(hidden=0), r"config.model.hidden: expected an int >= 1, got 0"),
])
def test_bad_configs_raise_config_error(name, kw, match):
  with pytest.raises(ConfigError, match=match):  # from get_model's type checks or from the model's own
    model = models.get_model(name, vocab_size=V, num_classes=C, **kw)
    jax.eval_shape(lambda: model.init(jax.random.key(0), X))


def test_bad_tokens_and_unknown_kwargs():
  model = models.get_model("depth_text_mlp", vocab_size=V, num_classes=C)
  with pytest.raises(ValueError, match=r"tokens must be int32 \[batch, length\] token ids"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 4, 1), jnp.int32)))
  with pytest.raises(ValueError, match="tokens must hold integer token ids"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 4))))
  with pytest.raises(ConfigError, match=r"model 'lstm_classifier' takes no argument\(s\) \['mixer'\]"):
    models.get_model("lstm_classifier", vocab_size=V, num_classes=C, mixer="aila1")


def test_configs_build_their_models():
  from configs import imdb_aila, imdb_depth_transformer, imdb_lstm  # pylint: disable=g-import-not-at-top
  from aila_jax.train import config_check  # pylint: disable=g-import-not-at-top
  for module in (imdb_aila, imdb_lstm, imdb_depth_transformer):
    config = module.get_config()
    config_check.check_config(config)
    assert config.dataset == "imdb" and config.task == "text_classification"
    model = models.get_model(config.model_name, vocab_size=16000, num_classes=2, max_len=256, **config.model)
    shapes = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), jnp.ones((2, 256), jnp.int32)))
    assert param_count(shapes["params"]) > 16000 * 64


def test_imdb_end_to_end(data_dir, tmp_path):
  """configs/imdb_aila.py (AILA-2, drop-path, dropout) trains on an IMDB subset through the trainer."""
  from configs import imdb_aila  # pylint: disable=g-import-not-at-top
  from aila_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  config = imdb_aila.get_config()
  config.data_dir, config.progress = str(data_dir), False
  config.dataset_kwargs.update(dict(vocab_dir=str(tmp_path / "vocab"), max_train_examples=400,
                                    max_eval_examples=64, vocab_size=800, max_len=32))
  config.model.update(dict(mixer="aila2", mixer_kwargs={"num_heads": 2}, embed_dim=16, width=16, depth=2,
                           drop_path=0.1, bigram_buckets=64))
  config.batch_size, config.eval_batch_size, config.num_train_steps = 16, 64, 6
  config.schedule.warmup_steps = 2
  config.log_every, config.eval_every, config.checkpoint_every = 3, 0, 6
  result = train_and_evaluate(config, tmp_path / "run")
  assert result["step"] == 6 and result["eval/count"] == 64
  correct = result["eval/accuracy"] * 64
  assert abs(correct - round(correct)) < 1e-6  # a whole number of the 64 reviews
  assert np.isfinite(result["train/loss"])
