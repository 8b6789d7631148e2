"""Seq2seq task: label-smoothed token loss, masked eval sums, BLEU, translate; text classification task."""
import dataclasses

import chex
import flax.linen as nn
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import sacrebleu

from aila_jax import tasks
from aila_jax.data import datasets, tokenizer
from aila_jax.errors import ConfigError
from aila_jax.tasks import seq2seq
from aila_jax.tasks.text_classification import TextClassificationTask


class _ToySeq2Seq(nn.Module):
  """logits[b, t] = Dense(embed(targets shifted right)[b, t] + mean_s embed(inputs)[b, s])."""
  vocab_size: int = 11

  @nn.compact
  def __call__(self, inputs, targets, *, train=False):
    embed = nn.Embed(self.vocab_size, 8)
    shifted = jnp.pad(targets, ((0, 0), (1, 0)), constant_values=1)[:, :-1]
    h = embed(shifted) + embed(inputs).mean(1, keepdims=True)  # (B, T, 8)
    return nn.Dense(self.vocab_size)(h), {}


def _reference_losses(logits, targets, eps):
  labels = optax.smooth_labels(jax.nn.one_hot(targets, logits.shape[-1]), eps)
  return optax.softmax_cross_entropy(logits, labels), optax.softmax_cross_entropy_with_integer_labels(logits, targets)


class SmoothedLossTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_optax_one_hot(self):
    logits = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 7)) * 3
    targets = jax.random.randint(jax.random.PRNGKey(1), (3, 5), 0, 7)
    fn = self.variant(lambda z, y: seq2seq.smoothed_token_losses(z, y, 0.1))
    smoothed, nll = fn(logits, targets)
    ref_s, ref_n = _reference_losses(logits, targets, 0.1)
    chex.assert_shape([smoothed, nll], (3, 5))
    chex.assert_trees_all_close((smoothed, nll), (ref_s, ref_n), atol=1e-5)
    assert not np.allclose(smoothed, nll)  # smoothing changes the loss


def _numpy_reference(logits, targets, eps):
  logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
  y = np.eye(logits.shape[-1])[targets] * (1 - eps) + eps / logits.shape[-1]
  return -(y * logp).sum(-1), -np.take_along_axis(logp, targets[..., None], -1)[..., 0]


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(b=st.integers(1, 2), t=st.integers(1, 4), v=st.integers(2, 6),
                  eps=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_smoothed_loss_any_shape(b, t, v, eps, seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, t, v)).astype(np.float32) * 3
  targets = rng.integers(0, v, size=(b, t)).astype(np.int32)
  smoothed, nll = seq2seq.smoothed_token_losses(jnp.asarray(logits), jnp.asarray(targets), eps)
  ref_s, ref_n = _numpy_reference(logits.astype(np.float64), targets, eps)
  np.testing.assert_allclose(smoothed, ref_s, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(nll, ref_n, rtol=1e-4, atol=1e-4)


def test_bad_shapes_are_named():
  with pytest.raises(ValueError, match=r"logits must have shape \[batch, length, vocab\] = \(2, 4\) \+ \(V,\) .*; got \(2, 5, 7\)"):
    seq2seq.smoothed_token_losses(jnp.zeros((2, 5, 7)), jnp.zeros((2, 4), jnp.int32))
  with pytest.raises(ValueError, match=r"batch\['targets'\] must be an int array .* dtype float32"):
    seq2seq.smoothed_token_losses(jnp.zeros((2, 4, 7)), jnp.zeros((2, 4), jnp.float32))


def _task_and_vars(eps=0.1):
  model = _ToySeq2Seq()
  inputs = jnp.array([[5, 6, 2, 0], [7, 2, 0, 0]], jnp.int32)
  targets = jnp.array([[4, 9, 2, 0, 0], [8, 3, 5, 6, 2]], jnp.int32)
  variables = model.init(jax.random.PRNGKey(0), inputs, targets)
  task = seq2seq.Seq2SeqTask(vocab_size=11, label_smoothing=eps)
  return model, task, variables, {"inputs": inputs, "targets": targets}


def test_padding_tokens_do_not_count():
  _, task, _, batch = _task_and_vars()
  logits = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 11))
  loss, metrics = task.loss_and_metrics(logits, batch)
  changed = logits.at[0, 3:].set(100.0)  # only padding positions of row 0
  loss2, _ = task.loss_and_metrics(changed, batch)
  np.testing.assert_allclose(loss, loss2, rtol=1e-6)
  assert float(metrics["tokens"]) == 8
  s, _ = seq2seq.smoothed_token_losses(logits, batch["targets"], 0.1)
  w = np.asarray(batch["targets"]) != 0
  np.testing.assert_allclose(loss, np.asarray(s)[w].mean(), rtol=1e-6)


def test_eval_sums_count_tokens_of_real_examples():
  model, task, variables, batch = _task_and_vars()
  sums = task.eval_sums(model.apply, variables, dict(batch, mask=jnp.array([1.0, 0.0])))
  assert float(sums["count"]) == 3  # the 3 target tokens of the real example
  logits, _ = model.apply(variables, batch["inputs"], batch["targets"])
  nll = optax.softmax_cross_entropy_with_integer_labels(logits[0, :3], batch["targets"][0, :3])
  np.testing.assert_allclose(sums["loss"], nll.sum(), rtol=1e-5)
  full = task.eval_sums(model.apply, variables, batch)
  assert float(full["count"]) == 8 and 0 <= float(full["accuracy"]) <= 8


def test_train_loss_has_gradients_and_jits():
  model, task, variables, batch = _task_and_vars()

  @jax.jit
  def loss_fn(params):
    return task.train_loss(model.apply, {"params": params}, batch, rngs={})[0]
  grads = jax.grad(loss_fn)(variables["params"])
  norms = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda g: jnp.abs(g).sum(), grads))
  assert all(float(n) > 0 for n in norms)


def test_from_config_errors():
  ds = datasets.Dataset(name="toy", train=None, eval={}, preprocess=None,
                        example={"inputs": np.zeros((1, 4), np.int32), "targets": np.zeros((1, 4), np.int32)},
                        model_kwargs={"vocab_size": 11})
  cfg = ml_collections.ConfigDict(dict(label_smoothing=0.1, task_kwargs={}))
  task = tasks.get_task("seq2seq", cfg, ds)
  assert task == seq2seq.Seq2SeqTask(vocab_size=11, label_smoothing=0.1)
  cfg.task_kwargs = {"smoothing": 0.1}
  with pytest.raises(ConfigError, match=r"config.task_kwargs: task 'seq2seq' takes no option\(s\) \['smoothing'\]"):
    tasks.get_task("seq2seq", cfg, ds)
  cfg.task_kwargs = {"target_key": "labels"}
  with pytest.raises(ConfigError, match=r"config.task_kwargs.target_key: batches of 'toy' have no 'labels'"):
    tasks.get_task("seq2seq", cfg, ds)
  cfg.task_kwargs = {}
  with pytest.raises(ConfigError, match=r"needs a dataset with a vocabulary"):
    tasks.get_task("seq2seq", cfg, dataclasses.replace(ds, model_kwargs={"num_classes": 10}))


# --- BLEU and translate ---

def test_bleu_matches_sacrebleu():
  hyp = ["Ein Mann fährt Fahrrad .", "Zwei Hunde spielen im Schnee", "eine Frau"]
  ref = ["Ein Mann fährt ein Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau lacht."]
  assert seq2seq.bleu(hyp, ref) == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score)
  assert seq2seq.bleu(hyp, ref, lowercase=True) > seq2seq.bleu(hyp, ref)
  assert seq2seq.bleu(ref, ref) == pytest.approx(100.0)
  with pytest.raises(ValueError, match=r"3 predictions but 2 references"):
    seq2seq.bleu(hyp, ref[:2])
  with pytest.raises(ValueError, match=r"predictions\[1\] is a list; expected str"):
    seq2seq.bleu([hyp[0], [5, 6]], ref[:2])


@pytest.fixture(scope="module")
def toy_tok():
  texts = ["ein Hund läuft", "a dog runs", "zwei Katzen schlafen", "two cats sleep"] * 30
  return tokenizer.Tokenizer(tokenizer.train_model(texts, vocab_size=40))


def test_translate_batches_and_strips(toy_tok):
  sources = ["a dog runs", "two cats sleep", "ein Hund", "zwei Katzen schlafen", "a dog"]
  calls = []

  def copy_decode(params, inputs):  # a "model" that copies its input, BOS first
    calls.append(inputs.shape)
    assert not (inputs == 0).all(axis=1).any()  # the last batch is filled with real rows
    return np.concatenate([np.full((len(inputs), 1), 1, np.int32), inputs + params], axis=1)

  out = seq2seq.translate(copy_decode, 0, sources, tokenizer=toy_tok, batch_size=2, max_len=24)
  assert out == sources and calls == [(2, 24)] * 3
  ids, _ = toy_tok.encode_padded(sources, 24)
  assert seq2seq.translate(copy_decode, 0, ids, tokenizer=toy_tok, batch_size=4) == sources
  # ids without a leading BOS column keep their first token (here the first word's, not the bare word boundary
  # every encoded sentence starts with, whose loss would not show)
  no_bos = lambda params, inputs: inputs[:, 1:] + params
  assert not (no_bos(0, ids)[:, 0] == seq2seq.BOS_ID).any()
  assert seq2seq.translate(no_bos, 0, ids, tokenizer=toy_tok, batch_size=4) == sources
  with pytest.raises(ValueError, match=r"decode_fn must return int ids \[batch, length\] with batch = 4"):
    seq2seq.translate(lambda p, x: x[:1], 0, ids, tokenizer=toy_tok, batch_size=4)
  with pytest.raises(ValueError, match=r"max_len is required"):
    seq2seq.translate(copy_decode, 0, sources, tokenizer=toy_tok)
  with pytest.raises(ValueError, match=r"inputs must be int ids \[num_sentences, length\]"):
    seq2seq.translate(copy_decode, 0, np.zeros((2, 3), np.float32), tokenizer=toy_tok)


def test_evaluate_bleu_with_an_oracle(data_dir, tmp_path):
  cfg = ml_collections.ConfigDict(dict(
      dataset="multi30k_en_de", data_dir=str(data_dir), data_source="auto",
      dataset_kwargs=dict(vocab_dir=str(tmp_path), max_train_examples=500, max_eval_examples=40,
                          vocab_size=600)))
  ds = datasets.build_dataset(cfg)
  src = ds.eval["test"].arrays
  table = {row.tobytes(): tgt for row, tgt in zip(src["inputs"], src["targets"])}

  def oracle(params, inputs):
    return np.stack([table[row.tobytes()] for row in np.asarray(inputs)])
  result = seq2seq.evaluate_bleu(oracle, None, ds, split="test2016", batch_size=16)
  assert result["num_sentences"] == 40 and result["references"] == ds.info["references"]["test2016"]
  assert result["bleu"] > 90  # only pieces unseen by the 500-pair vocabulary (<unk>) differ
  wrong = seq2seq.evaluate_bleu(lambda p, x: np.roll(oracle(p, x), 1, axis=0), None, ds, batch_size=16)
  assert wrong["bleu"] < 20
  assert seq2seq.evaluate_bleu(oracle, None, ds, split="test", batch_size=16)["bleu"] == result["bleu"]
  with pytest.raises(ValueError, match=r"no references for split 'train'"):
    seq2seq.evaluate_bleu(oracle, None, ds, split="train")


# --- text classification ---

class _BagOfWords(nn.Module):
  num_classes: int = 2

  @nn.compact
  def __call__(self, tokens, *, train=False):
    h = nn.Embed(50, 4)(tokens) * (tokens > 0)[..., None]
    return nn.Dense(self.num_classes)(h.sum(1)), {}


def test_text_classification_task():
  ds = datasets.Dataset(name="toy", train=None, eval={}, preprocess=None,
                        example={"tokens": np.zeros((1, 6), np.int32), "label": np.zeros(1, np.int32)},
                        model_kwargs={"num_classes": 2, "vocab_size": 50, "max_len": 6})
  cfg = ml_collections.ConfigDict(dict(label_smoothing=0.0, task_kwargs={}))
  task = tasks.get_task("text_classification", cfg, ds)
  assert isinstance(task, TextClassificationTask) and task.input_key == "tokens"
  model = _BagOfWords()
  batch = {"tokens": jnp.array([[4, 5, 0, 0, 0, 0], [7, 8, 9, 0, 0, 0]]), "label": jnp.array([0, 1]),
           "mask": jnp.array([1.0, 1.0])}
  variables = model.init(jax.random.PRNGKey(0), batch["tokens"])
  assert task.model_inputs(batch)[0] is batch["tokens"]
  sums = task.eval_sums(model.apply, variables, batch)
  assert float(sums["count"]) == 2
  image_ds = dataclasses.replace(ds, example={"image": np.zeros((1, 28, 28, 1), np.float32)})
  with pytest.raises(ConfigError, match=r"reads int token ids \[batch, length\] from batch\['tokens'\].*missing"):
    tasks.get_task("text_classification", cfg, image_ds)
  cfg.task_kwargs = {"pooling": "mean"}
  with pytest.raises(ConfigError, match=r"task 'text_classification' takes no option\(s\) \['pooling'\]"):
    tasks.get_task("text_classification", cfg, ds)
