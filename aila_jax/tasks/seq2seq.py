r"""Sequence-to-sequence (translation): label-smoothed token cross-entropy, token accuracy, BLEU.

Batches are ``{'inputs': int32 [B, Ls], 'targets': int32 [B, Lt]}`` with 0 as
padding and targets that end with EOS (id 2) and do not start with BOS (id 1);
the model is called ``model.apply(variables, inputs, targets, train=...)``,
shifts the targets right itself (teacher forcing) and returns
``(logits [B, Lt, V], intermediates)``.

Training minimises the label-smoothed cross-entropy of every non-pad target
token (Vaswani et al., 2017, sec. 5.4: :math:`\epsilon_{ls} = 0.1`). Eval adds,
over real examples (``batch['mask']``) and non-pad tokens, the unsmoothed
negative log-likelihood and the number of correct argmax tokens; ``count`` is
the number of tokens, so the trainer's ``eval/loss`` is the per-token NLL
(:math:`\log` perplexity) and ``eval/accuracy`` the token accuracy.

BLEU is computed on the host, on detokenized strings, with sacrebleu
(:func:`bleu`), from a decoder plugged in as ``decode_fn(params, inputs) ->
ids`` (:func:`translate`, :func:`evaluate_bleu`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aila_jax.errors import ConfigError
from aila_jax.tasks.base import check_task_kwargs, apply_model

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2

DecodeFn = Callable[[Any, Any], Any]
"""``decode_fn(params, inputs) -> ids``: ``inputs`` int32 ``[B, Ls]`` (0-padded, EOS-terminated) ->
int32 ``[B, T]`` token ids per row, EOS-terminated and/or 0-padded, with or without a leading BOS
(greedy or beam search; the best beam only)."""


def smoothed_token_losses(logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0
                          ) -> tuple[jax.Array, jax.Array]:
  r"""Per-token label-smoothed cross-entropy and plain NLL, without a one-hot ``[B, L, V]`` tensor.

  With :math:`\log p = \mathrm{log\_softmax}(z)` over a vocabulary of :math:`V`
  pieces and smoothed targets :math:`\tilde y = (1 - \epsilon)\,\mathrm{onehot}(y)
  + \epsilon / V` (``optax.smooth_labels``),

  .. math::
     \ell_{\epsilon} = -\sum_k \tilde y_k \log p_k
       = -(1 - \epsilon) \log p_y - \frac{\epsilon}{V} \sum_k \log p_k ,
     \qquad \ell_0 = -\log p_y .

  Args:
    logits: float ``[B, L, V]``.
    targets: int ``[B, L]``.
    label_smoothing: :math:`\epsilon \in [0, 1)`.

  Returns:
    ``(smoothed, nll)``, float32 ``[B, L]`` each.

  >>> z = jnp.array([[[2.0, 0.0, 0.0]]]); y = jnp.array([[0]])
  >>> s, n = smoothed_token_losses(z, y, 0.0)
  >>> bool(jnp.allclose(s, n)) and bool(jnp.allclose(n, -jax.nn.log_softmax(z)[..., 0]))
  True
  """
  check_logits_targets(logits, targets)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # (B, L, V)
  nll = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]  # (B, L)
  if not label_smoothing:
    return nll, nll
  vocab = logits.shape[-1]
  smoothed = (1.0 - label_smoothing) * nll - (label_smoothing / vocab) * logp.sum(-1)
  return smoothed, nll


def check_logits_targets(logits, targets) -> None:
  """Shape/dtype check at trace time: logits ``[B, L, V]`` float, targets ``[B, L]`` int."""
  if targets.ndim != 2 or not jnp.issubdtype(targets.dtype, jnp.integer):
    raise ValueError(f"seq2seq: batch['targets'] must be an int array [batch, length]; got shape "
                     f"{tuple(targets.shape)} and dtype {targets.dtype}")
  if logits.ndim != 3 or logits.shape[:2] != targets.shape:
    raise ValueError(f"seq2seq: the model's logits must have shape [batch, length, vocab] = "
                     f"{tuple(targets.shape)} + (V,) to match batch['targets']; got {tuple(logits.shape)}")


@dataclasses.dataclass(frozen=True)
class Seq2SeqTask:
  r"""Teacher-forced sequence-to-sequence training of an encoder-decoder.

  Train loss: the mean of :math:`\ell_\epsilon` (:func:`smoothed_token_losses`)
  over the non-pad target tokens of the batch (each token weighs the same,
  as the paper's batches "of approximately 25000 target tokens").
  """
  vocab_size: int
  label_smoothing: float = 0.0
  input_key: str = "inputs"
  target_key: str = "targets"

  @classmethod
  def from_config(cls, config, dataset) -> "Seq2SeqTask":
    kwargs = check_task_kwargs(cls, config, task="seq2seq",
                               reserved=("vocab_size", "label_smoothing"))
    if "vocab_size" not in dataset.model_kwargs:
      raise ConfigError(f"config.dataset: task 'seq2seq' needs a dataset with a vocabulary "
                        f"(model_kwargs['vocab_size']); {dataset.name!r} has {sorted(dataset.model_kwargs)}")
    for key in ("input_key", "target_key"):
      k = kwargs.get(key, getattr(cls, key))
      if k not in dataset.example:
        raise ConfigError(f"config.task_kwargs.{key}: batches of {dataset.name!r} have no {k!r}; they have "
                          f"{sorted(dataset.example)}")
    return cls(vocab_size=int(dataset.model_kwargs["vocab_size"]),
               label_smoothing=float(config.get("label_smoothing", 0.0)), **kwargs)

  def model_inputs(self, batch) -> tuple:
    return (batch[self.input_key], batch[self.target_key])

  def _forward(self, apply_fn, variables, batch, *, train, rngs, mutable=()):
    (logits, _), new_state = apply_model(apply_fn, variables, self.model_inputs(batch), train=train,
                                         rngs=rngs, mutable=mutable)
    return logits, new_state

  def loss_and_metrics(self, logits, batch):
    """Per-token means over the batch's non-pad targets: loss (smoothed), nll, accuracy."""
    targets = batch[self.target_key]
    smoothed, nll = smoothed_token_losses(logits, targets, self.label_smoothing)
    weights = (targets != PAD_ID).astype(jnp.float32)  # (B, L)
    tokens = jnp.maximum(weights.sum(), 1.0)
    loss = (smoothed * weights).sum() / tokens
    correct = (logits.argmax(-1) == targets).astype(jnp.float32)
    return loss, {"loss": loss, "nll": (nll * weights).sum() / tokens,
                  "accuracy": (correct * weights).sum() / tokens, "tokens": weights.sum()}

  def train_loss(self, apply_fn, variables, batch, *, rngs, mutable=()):
    logits, new_state = self._forward(apply_fn, variables, batch, train=True, rngs=rngs, mutable=mutable)
    loss, metrics = self.loss_and_metrics(logits, batch)
    return loss, metrics, new_state

  def eval_sums(self, apply_fn, variables, batch, *, rngs=None):
    """Token sums over real examples: ``loss`` (NLL), ``accuracy`` (correct), ``count`` (tokens)."""
    logits, _ = self._forward(apply_fn, variables, batch, train=False, rngs=rngs)
    targets = batch[self.target_key]
    _, nll = smoothed_token_losses(logits, targets, 0.0)
    mask = batch.get("mask", jnp.ones(targets.shape[:1], jnp.float32))
    weights = (targets != PAD_ID).astype(jnp.float32) * mask[:, None]  # (B, L)
    correct = (logits.argmax(-1) == targets).astype(jnp.float32)
    return {"loss": (nll * weights).sum(), "accuracy": (correct * weights).sum(), "count": weights.sum()}


# --- host-side decoding and BLEU ---

def bleu(predictions: Sequence[str], references: Sequence[str], *, lowercase: bool = False,
         tokenize: str = "13a") -> float:
  r"""Corpus BLEU (Papineni et al., 2002) of detokenized strings, with sacrebleu (Post, 2018).

  .. math::
     \mathrm{BLEU} = 100 \cdot \min(1, e^{1 - r/c}) \exp\Big(\tfrac14 \sum_{n=1}^{4} \log p_n\Big)

  with :math:`p_n` the clipped n-gram precisions over the corpus, :math:`c` the
  hypotheses' and :math:`r` the references' length. One reference per
  prediction; sacrebleu's default ``13a`` tokenization, cased unless
  ``lowercase``.

  >>> round(bleu(["a cat sat on the mat ."], ["a cat sat on the mat ."]), 6)
  100.0
  """
  import sacrebleu  # pylint: disable=g-import-not-at-top
  predictions, references = list(predictions), list(references)
  if len(predictions) != len(references):
    raise ValueError(f"bleu: {len(predictions)} predictions but {len(references)} references; "
                     "expected one reference string per prediction")
  bad = [i for i, s in enumerate(predictions + references) if not isinstance(s, str)]
  if bad:
    i = bad[0]
    which = f"predictions[{i}]" if i < len(predictions) else f"references[{i - len(predictions)}]"
    raise ValueError(f"bleu: {which} is a {type((predictions + references)[i]).__name__}; expected str "
                     "(detokenize ids with Tokenizer.decode first)")
  return float(sacrebleu.corpus_bleu(predictions, [references], lowercase=lowercase, tokenize=tokenize).score)


def make_decode_fn(model, *, max_decode_len: int, beam_size: int = 1, alpha: float = 0.6) -> DecodeFn:
  """``decode_fn(variables, inputs) -> ids`` from :mod:`aila_jax.models.decoding`.

  ``beam_size=1``: greedy search; else beam search with the GNMT length
  penalty ``alpha`` (the paper: beam 4, alpha 0.6), keeping the best beam.
  Both are jitted with a KV cache (``model`` must be an ``EncoderDecoder``).
  """
  from aila_jax.models import decoding  # pylint: disable=g-import-not-at-top

  if beam_size == 1:
    def decode_fn(variables, inputs):
      return decoding.greedy_decode(model, variables, inputs, max_decode_len=max_decode_len)[0]
  else:
    def decode_fn(variables, inputs):
      seqs, _ = decoding.beam_search(model, variables, inputs, max_decode_len=max_decode_len,
                                     beam_size=beam_size, alpha=alpha)
      return seqs[:, 0]  # (B, T): the best hypothesis
  return decode_fn


def translate(decode_fn: DecodeFn, params, inputs, *, tokenizer, batch_size: int = 64,
              max_len: int | None = None) -> list[str]:
  """Translates ``inputs`` with ``decode_fn`` in fixed-size batches; returns detokenized strings.

  Args:
    decode_fn: ``decode_fn(params, inputs) -> ids`` (see :data:`DecodeFn`), e.g.
      the greedy or beam search of :mod:`aila_jax.models.decoding` closed over
      the model; jit it once, every call gets the same shape.
    params: what ``decode_fn`` takes first (parameters or variables).
    inputs: int ``[N, Ls]`` source ids as in the dataset (0-padded,
      EOS-terminated), or a list of N source strings (then encoded with
      ``tokenizer`` to ``max_len``).
    tokenizer: the dataset's :class:`aila_jax.data.tokenizer.Tokenizer`
      (``Dataset.info['tokenizer']``).
    batch_size: rows per ``decode_fn`` call; the last batch is filled up with
      copies of its last row (never an all-padding row) and the extra outputs dropped.
    max_len: source length when ``inputs`` are strings.
  """
  if len(inputs) and isinstance(inputs[0], str):
    if max_len is None:
      raise ValueError("translate: max_len is required when inputs are strings "
                       "(Dataset.model_kwargs['max_len'])")
    inputs, _ = tokenizer.encode_padded(list(inputs), max_len)
  inputs = np.asarray(inputs)
  if inputs.ndim != 2 or inputs.dtype.kind not in "iu":
    raise ValueError(f"translate: inputs must be int ids [num_sentences, length] or a list of strings; "
                     f"got shape {inputs.shape} and dtype {inputs.dtype}")
  if batch_size < 1:
    raise ValueError(f"translate: batch_size must be >= 1, got {batch_size}")
  out: list[str] = []
  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size].astype(np.int32)
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
    ids = np.asarray(jax.device_get(decode_fn(params, chunk)))
    if ids.ndim != 2 or ids.shape[0] != batch_size or ids.dtype.kind not in "iu":
      raise ValueError(f"translate: decode_fn must return int ids [batch, length] with batch = "
                       f"{batch_size}; it returned shape {ids.shape} and dtype {ids.dtype}")
    ids = ids[:n]
    if ids.shape[1] and (ids[:, 0] == BOS_ID).all():
      ids = ids[:, 1:]
    out.extend(tokenizer.decode(ids))
  return out


def evaluate_bleu(decode_fn: DecodeFn, params, dataset, *, split: str = "test2016", batch_size: int = 64,
                  limit: int | None = None) -> Mapping[str, Any]:
  """Translates every source of ``dataset.eval[split]`` and scores it against the raw references.

  Returns ``{'bleu', 'bleu_lowercase', 'num_sentences', 'seconds', 'predictions',
  'references'}``: ``bleu`` is cased unless the dataset's vocabulary lower-cases;
  ``bleu_lowercase`` is case-insensitive BLEU of the same outputs (the Multi30k
  literature scores lower-cased text).
  """
  key = dataset.info.get("split_aliases", {}).get(split, split)  # Multi30k: 'test2016' is eval['test']
  if key not in dataset.eval or split not in dataset.info.get("references", {}):
    raise ValueError(f"evaluate_bleu: dataset {dataset.name!r} has no references for split {split!r}; "
                     f"it has {sorted(dataset.info.get('references', {}))}")
  inputs = np.asarray(dataset.eval[key].arrays["inputs"])
  references = list(dataset.info["references"][split])
  if limit is not None:
    inputs, references = inputs[:limit], references[:limit]
  t = time.perf_counter()
  predictions = translate(decode_fn, params, inputs, tokenizer=dataset.info["tokenizer"], batch_size=batch_size)
  seconds = time.perf_counter() - t
  score = bleu(predictions, references, lowercase=bool(dataset.info.get("lowercase", False)))
  return {"bleu": score, "bleu_lowercase": bleu(predictions, references, lowercase=True),
          "num_sentences": len(predictions), "seconds": seconds,
          "predictions": predictions, "references": references}


def load_workdir_model(config, workdir, *, average_last: int = 0):
  """``(model, variables, dataset, step)`` of a trained translation workdir: ``config``'s dataset and
  model, the vocabulary checked against the workdir's (:func:`check_workdir_vocab`), and the latest
  checkpoint's parameters (or the average of the last ``average_last``)."""
  import pathlib  # pylint: disable=g-import-not-at-top

  from aila_jax import models  # pylint: disable=g-import-not-at-top
  from aila_jax.data import datasets, tokenizer as tok_lib  # pylint: disable=g-import-not-at-top
  from aila_jax.train import averaging, checkpoint, trainer  # pylint: disable=g-import-not-at-top

  workdir = pathlib.Path(workdir)
  dataset = datasets.build_dataset(config)
  tok_lib.check_workdir_vocab(workdir, dataset.info)
  model_kwargs = {**dataset.model_kwargs, **dict(config.get("model", {}) or {})}
  model = models.get_model(config.model_name, dtype=trainer.DTYPES[config.get("dtype", "float32")],
                           **model_kwargs)
  if average_last:
    params = averaging.average_checkpoints(workdir, average_last)
    step = averaging.checkpoint_steps(workdir)[-1]
  else:
    step, state, _ = checkpoint.load_checkpoint(workdir)
    params = state["params"]
  variables = {"params": jax.tree_util.tree_map(jnp.asarray, params)}
  return model, variables, dataset, int(step)


def translate_from_workdir(config, workdir, sentences: Sequence[str], *, beam_size: int = 4,
                           alpha: float = 0.6, batch_size: int = 64, average_last: int = 0,
                           max_decode_len: int | None = None) -> list[str]:
  """Translates source ``sentences`` with a trained workdir (greedy for ``beam_size=1``, else beam
  search with the GNMT length penalty ``alpha``)."""
  from aila_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  if beam_size < 1:
    raise ConfigError(f"beam size: expected an int >= 1, got {beam_size}")
  sentences = [s.strip() for s in sentences]
  if not sentences or not all(sentences):
    raise ConfigError("sentences: expected one or more non-empty source sentences")
  model, variables, dataset, _ = load_workdir_model(config, workdir, average_last=average_last)
  max_len = int(dataset.model_kwargs["max_len"])
  decode_fn = make_decode_fn(model, max_decode_len=int(max_decode_len or max_len), beam_size=beam_size,
                             alpha=alpha)
  return translate(decode_fn, variables, sentences, tokenizer=dataset.info["tokenizer"],
                   batch_size=min(batch_size, len(sentences)), max_len=max_len)


def bleu_from_workdir(config, workdir, *, split: str = "test2016", beam_sizes: Sequence[int] = (1, 4),
                      alpha: float = 0.6, batch_size: int = 128, average_last: int = 0,
                      limit: int | None = None, max_decode_len: int | None = None) -> dict[str, Any]:
  """BLEU of a trained workdir's latest checkpoint (or the average of its last checkpoints).

  Builds ``config``'s dataset and model, checks that the dataset's vocabulary
  is the one the workdir was trained with (:func:`check_workdir_vocab`),
  decodes ``split`` greedily (beam 1) and/or with beam search, and writes
  ``workdir/bleu_<split>.json``.

  Args:
    config: the training config of ``workdir``.
    workdir: the training run's folder (``checkpoints/`` inside).
    split: ``'test2016'`` or ``'val'``.
    beam_sizes: one BLEU per beam size (1 = greedy).
    alpha: GNMT length penalty of beam search (0.6 in the paper).
    batch_size: sentences per decoding call.
    average_last: average the parameters of the last N checkpoints (0: the latest only).
    limit: decode only the first N sentences.
    max_decode_len: most generated tokens (default: the dataset's ``max_len``).
  """
  import json  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top

  workdir = pathlib.Path(workdir)
  model, variables, dataset, step = load_workdir_model(config, workdir, average_last=average_last)
  max_decode_len = int(max_decode_len or dataset.model_kwargs["max_len"])
  result: dict[str, Any] = {"step": int(step), "split": split, "average_last": average_last,
                            "alpha": alpha, "max_decode_len": max_decode_len}
  for beam in beam_sizes:
    decode_fn = make_decode_fn(model, max_decode_len=max_decode_len, beam_size=int(beam), alpha=alpha)
    out = evaluate_bleu(decode_fn, variables, dataset, split=split, batch_size=batch_size, limit=limit)
    result[f"beam{beam}"] = {"bleu": out["bleu"], "bleu_lowercase": out["bleu_lowercase"],
                             "seconds": out["seconds"],
                             "num_sentences": out["num_sentences"], "examples": out["predictions"][:5]}
  (workdir / f"bleu_{split}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
  return result
