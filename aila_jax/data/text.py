r"""Text datasets: Multi30k En->De translation and IMDB sentiment, through one subword pipeline.

Every text dataset goes the same way: raw strings (from local files or
``tfds.data_source``) -> a sentencepiece vocabulary trained on the training
split only (:mod:`aila_jax.data.tokenizer`, cached) -> batch encoding to
0-padded int32 arrays of a fixed length (cached as ``.npy``, keyed by a hash
of the vocabulary, the texts and the options) -> an :class:`ArraySource` that
the grain pipeline batches like any other.

Batches (the interface the Transformer models and the tasks share):

* translation (``multi30k_en_de``; eval splits ``'test'`` = test2016 and ``'val'``):
  ``{'inputs': int32 [B, L], 'targets':
  int32 [B, L]}``; 0 = padding; both end with EOS (id 2); targets do not start
  with BOS (id 1): the model shifts them right itself. ``model_kwargs =
  {'vocab_size': V, 'max_len': L}`` with one vocabulary shared by source and
  target, as the Transformer paper's shared BPE (Vaswani et al., 2017, sec. 5.1).
* classification (``imdb``): ``{'tokens': int32 [B, L], 'label': int32 [B]}``;
  ``model_kwargs = {'vocab_size': V, 'num_classes': 2, 'max_len': L}``.

``Dataset.info`` carries ``'tokenizer'`` (a :class:`Tokenizer`), ``'vocab'``
(its sha256 and size, see :func:`tokenizer.check_workdir_vocab`),
``'truncated'`` (per split, how many texts were cut to ``max_len``) and, for
translation, ``'references'[split]`` and ``'sources'[split]``: the raw target
and source strings of each eval split, in record order, for BLEU.

Options come from ``config.dataset_kwargs`` (unknown keys are an error):

============================  =================================================================
``max_len``                   tokens per row, EOS included (truncated rows keep their EOS)
``vocab_size``                sentencepiece vocabulary size (shared source/target)
``model_type``                'bpe' (the paper's) or 'unigram'
``lowercase``                 lower-case inside the tokenizer (nmt_nfkc_cf normalisation)
``vocab_dir``                 cache folder (None: ``$AILA_CACHE_DIR``, else ``~/.cache/aila_jax``)
``vocab_file``                use this sentencepiece model (e.g. a workdir's ``vocab.model``)
``vocab_sha256``              pin the vocabulary: any other one raises DataError
``max_vocab_sentences``       train the vocabulary on at most this many texts (seeded sample)
``max_train_examples``        use only this many training examples (tests, quick runs)
``max_eval_examples``         use only this many examples of each eval split
``skip_empty``                drop empty texts / pairs instead of raising DataError
============================  =================================================================

plus ``direction`` ('en-de' or 'de-en') for Multi30k.

Where the data comes from:

* Multi30k: TFDS has no Multi30k. ``config.data_dir`` (or ``$AILA_DATA_DIR``)
  must be a folder holding the original task-1 files of
  https://github.com/multi30k/dataset (``data/task1/raw/{train,val,
  test_2016_flickr}.{en,de}.gz``), either directly or in a ``multi30k/``
  sub-folder; the names ``test2016.{en,de}.gz`` and uncompressed files are
  accepted too.
* IMDB: ``imdb.jsonl.gz`` in the data folder (records ``{'split', 'label',
  'text'}``) or TFDS ``imdb_reviews`` (``tfds.data_source``, records
  ``{'text', 'label'}``), chosen by ``config.data_source`` as for images.
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import re
from typing import Any, Sequence

import numpy as np

from aila_jax.data import sources, tokenizer as tok_lib
from aila_jax.data.datasets import Batch, Dataset, check_kwargs, register_dataset
from aila_jax.errors import ConfigError, DataError

_ENCODING_VERSION = 1  # bump when the encoded arrays change meaning

_COMMON_DEFAULTS: dict[str, Any] = dict(
    model_type="bpe", vocab_dir=None, vocab_file=None, vocab_sha256=None,
    max_vocab_sentences=None, max_train_examples=None, max_eval_examples=None, skip_empty=False)

MULTI30K_DEFAULTS: dict[str, Any] = dict(
    _COMMON_DEFAULTS, max_len=64, vocab_size=8000, lowercase=False, direction="en-de")
IMDB_DEFAULTS: dict[str, Any] = dict(
    _COMMON_DEFAULTS, max_len=256, vocab_size=16000, lowercase=True)

MULTI30K_SPLITS = ("train", "val", "test2016")
MULTI30K_EVAL_SPLITS = {"test2016": "test", "val": "val"}  # split -> key of Dataset.eval
_MULTI30K_NAMES = {"train": ("train",), "val": ("val",), "test2016": ("test2016", "test_2016_flickr")}


# --- options ---

def _int_option(kw, key, *, minimum, optional=False):
  v = kw[key]
  if optional and v is None:
    return None
  if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
    raise ConfigError(f"config.dataset_kwargs.{key}: expected an int >= {minimum}"
                      f"{' or None' if optional else ''}, got {v!r}")
  return int(v)


def _text_options(config, defaults: dict, dataset: str) -> dict:
  kw = check_kwargs(dict(config.get("dataset_kwargs", {}) or {}), defaults, dataset=dataset)
  kw["max_len"] = _int_option(kw, "max_len", minimum=2)
  kw["vocab_size"] = _int_option(kw, "vocab_size", minimum=len(tok_lib.SPECIAL_PIECES) + 1)
  for key in ("max_vocab_sentences", "max_train_examples", "max_eval_examples"):
    kw[key] = _int_option(kw, key, minimum=1, optional=True)
  if kw["model_type"] not in tok_lib.MODEL_TYPES:
    raise ConfigError(f"config.dataset_kwargs.model_type: expected one of {tok_lib.MODEL_TYPES}, "
                      f"got {kw['model_type']!r}")
  for key in ("lowercase", "skip_empty"):
    if not isinstance(kw[key], bool):
      raise ConfigError(f"config.dataset_kwargs.{key}: expected a bool, got {kw[key]!r}")
  for key in ("vocab_dir", "vocab_file", "vocab_sha256"):
    if kw[key] is not None and not isinstance(kw[key], (str, os.PathLike)):
      raise ConfigError(f"config.dataset_kwargs.{key}: expected a string or None, got {kw[key]!r}")
  sha = kw["vocab_sha256"]
  if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
    raise ConfigError(f"config.dataset_kwargs.vocab_sha256: expected 64 lowercase hex digits, got {sha!r}")
  return kw


def cache_dir(kw) -> pathlib.Path:
  return pathlib.Path(kw["vocab_dir"]).expanduser() if kw["vocab_dir"] else tok_lib.default_cache_dir()


def _tokenizer(train_texts: Sequence[str], kw, *, name: str) -> tok_lib.Tokenizer:
  """The vocabulary: ``vocab_file`` if given, else the cached one trained on ``train_texts``."""
  if kw["vocab_file"]:
    path = pathlib.Path(kw["vocab_file"]).expanduser()
    if not path.is_file():
      raise ConfigError(f"config.dataset_kwargs.vocab_file: {str(path)!r} does not exist")
    tok = tok_lib.Tokenizer.load(path)
  else:
    options = tok_lib.VocabOptions(vocab_size=kw["vocab_size"], model_type=kw["model_type"],
                                   lowercase=kw["lowercase"], max_sentences=kw["max_vocab_sentences"])
    tok = tok_lib.get_or_train(train_texts, options, cache_dir=cache_dir(kw), name=name)
  tok_lib.check_vocab(tok, vocab_size=kw["vocab_size"], sha256=kw["vocab_sha256"],
                      what="config.dataset_kwargs.vocab_file" if kw["vocab_file"] else "the vocabulary")
  return tok


def encode_cached(tok: tok_lib.Tokenizer, texts: Sequence[str], *, max_len: int, add_eos: bool,
                  folder: pathlib.Path) -> tuple[np.ndarray, int]:
  """``tok.encode_padded`` with its result cached in ``folder`` as ``enc-<key>.npy`` (+ ``.json``)."""
  key = tok_lib.sha256_bytes(json.dumps(
      [_ENCODING_VERSION, tok.sha256, tok_lib.texts_digest(texts), max_len, add_eos]).encode())[:20]
  npy, meta = folder / f"enc-{key}.npy", folder / f"enc-{key}.json"
  if npy.exists() and meta.exists():
    try:
      ids = np.load(npy, allow_pickle=False)
      info = json.loads(meta.read_text())
      if ids.shape == (len(texts), max_len) and ids.dtype == np.int32:
        return ids, int(info["truncated"])
    except (ValueError, OSError, KeyError, json.JSONDecodeError):
      pass  # a damaged cache entry is rebuilt below
  ids, truncated = tok.encode_padded(texts, max_len, add_eos=add_eos)
  folder.mkdir(parents=True, exist_ok=True)
  buf = _npy_bytes(ids)
  tok_lib.atomic_write_bytes(npy, buf)
  tok_lib.atomic_write_bytes(meta, json.dumps({"truncated": truncated, "shape": list(ids.shape)}).encode())
  return ids, truncated


def _npy_bytes(arr: np.ndarray) -> bytes:
  import io  # pylint: disable=g-import-not-at-top
  f = io.BytesIO()
  np.save(f, arr, allow_pickle=False)
  return f.getvalue()


# --- reading text files ---

def read_lines(path: pathlib.Path) -> list[str]:
  """Lines of a UTF-8 text file (gzip if it ends in .gz), without line ends; clear errors."""
  try:
    if path.suffix == ".gz":
      with gzip.open(path, "rb") as f:
        data = f.read()
    else:
      data = path.read_bytes()
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
    raise DataError(f"{str(path)!r} could not be read{' as gzip' if path.suffix == '.gz' else ''}: {e}") from e
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{str(path)!r} is not UTF-8 text: {e}") from e
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()  # the final newline
  return [line.rstrip("\r") for line in lines]


def _empty_rows(*columns: Sequence[str]) -> np.ndarray:
  return np.flatnonzero([any(not c[i].strip() for c in columns) for i in range(len(columns[0]))])


def _multi30k_folder(config) -> pathlib.Path:
  if config.get("data_source", "auto") == "tfds":
    raise ConfigError(
        "config.data_source: TFDS has no Multi30k; set it to 'auto' or 'local' and point "
        "config.data_dir (or $AILA_DATA_DIR) at a folder with the original files of "
        "https://github.com/multi30k/dataset (data/task1/raw/{train,val,test_2016_flickr}.{en,de}.gz)")
  root = sources.resolve_data_dir(config.get("data_dir"))
  if root is None:
    raise ConfigError(f"config.data_dir: no data directory given for Multi30k; set --config.data_dir=DIR "
                      f"or ${sources.DATA_DIR_ENV} to the folder holding multi30k/")
  if not root.is_dir():
    raise ConfigError(f"config.data_dir: {str(root)!r} is not a directory (expected the folder holding "
                      "multi30k/ or the Multi30k files)")
  return root / "multi30k" if (root / "multi30k").is_dir() else root


def multi30k_file(folder: pathlib.Path, split: str, lang: str) -> pathlib.Path:
  """The file of ``split`` and ``lang`` in ``folder``, under any accepted name."""
  tried = []
  for stem in _MULTI30K_NAMES[split]:
    for suffix in (".gz", ""):
      path = folder / f"{stem}.{lang}{suffix}"
      if path.is_file():
        return path
      tried.append(path.name)
  raise DataError(f"Multi30k: no {split!r} file for language {lang!r} in {str(folder)!r} "
                  f"(looked for {tried}); see aila_jax.data.text for where to get them")


def load_multi30k_pairs(folder: pathlib.Path, split: str, src: str, tgt: str, *,
                        skip_empty: bool = False) -> tuple[list[str], list[str]]:
  """Aligned (source, target) lines of one split; misaligned files and empty lines raise DataError."""
  src_path, tgt_path = multi30k_file(folder, split, src), multi30k_file(folder, split, tgt)
  src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
  if len(src_lines) != len(tgt_lines):
    raise DataError(f"Multi30k {split}: {str(src_path)!r} has {len(src_lines)} lines but "
                    f"{str(tgt_path)!r} has {len(tgt_lines)}; the files must be line-aligned translations")
  if not src_lines:
    raise DataError(f"Multi30k {split}: {str(src_path)!r} and {str(tgt_path)!r} are empty")
  empty = _empty_rows(src_lines, tgt_lines)
  if len(empty):
    if not skip_empty:
      raise DataError(
          f"Multi30k {split}: {len(empty)} empty line(s) in {str(src_path)!r} / {str(tgt_path)!r}, first at "
          f"line(s) {[int(i) + 1 for i in empty[:5]]}; an empty line usually means the files are "
          "misaligned. Fix the files, or set config.dataset_kwargs.skip_empty=True to drop those pairs")
    keep = np.setdiff1d(np.arange(len(src_lines)), empty)
    src_lines, tgt_lines = [src_lines[i] for i in keep], [tgt_lines[i] for i in keep]
  return src_lines, tgt_lines


# --- Multi30k ---

@register_dataset("multi30k_en_de")
def build_multi30k(config) -> Dataset:
  """Multi30k task 1 (Elliott et al., 2016): 29,000 / 1,014 / 1,000 caption pairs.

  Eval splits: ``Dataset.eval['test']`` is test2016 (the trainer reports it as
  ``eval/*``) and ``Dataset.eval['val']`` the validation set (``eval_val/*``);
  ``info['references']`` has ``'val'``, ``'test2016'`` and ``'test'`` (= test2016),
  ``info['split_aliases']`` maps ``'test2016'`` to ``'test'``. The vocabulary is
  trained on the (possibly sub-set) training pairs' source and target sides together.
  """
  name = "multi30k_en_de"
  kw = _text_options(config, MULTI30K_DEFAULTS, name)
  if kw["direction"] not in ("en-de", "de-en"):
    raise ConfigError(f"config.dataset_kwargs.direction: expected 'en-de' or 'de-en', got {kw['direction']!r}")
  src, tgt = kw["direction"].split("-")
  folder = _multi30k_folder(config)
  pairs = {}
  for split in MULTI30K_SPLITS:
    s, t = load_multi30k_pairs(folder, split, src, tgt, skip_empty=kw["skip_empty"])
    limit = kw["max_train_examples"] if split == "train" else kw["max_eval_examples"]
    pairs[split] = (s[:limit], t[:limit]) if limit else (s, t)
  tok = _tokenizer(pairs["train"][0] + pairs["train"][1], kw, name=name)
  enc_folder = cache_dir(kw) / name
  arrays, truncated = {}, {}
  for split, (s, t) in pairs.items():
    inputs, n_in = encode_cached(tok, s, max_len=kw["max_len"], add_eos=True, folder=enc_folder)
    targets, n_out = encode_cached(tok, t, max_len=kw["max_len"], add_eos=True, folder=enc_folder)
    arrays[split] = sources.ArraySource({"inputs": inputs, "targets": targets}, name=f"{name}:{split}")
    truncated[split] = {"inputs": n_in, "targets": n_out}
  example = translation_preprocess(arrays["train"][0:1])
  # The trainer logs the eval split named 'test' as eval/* (the others as eval_<split>/*): test2016
  # is that split; 'test' and 'test2016' name the same references.
  info = {"tokenizer": tok, "vocab": tok.record(), "truncated": truncated,
          "references": {k: pairs[k][1] for k in ("val", "test2016")},
          "sources": {k: pairs[k][0] for k in ("val", "test2016")},
          "split_aliases": dict(MULTI30K_EVAL_SPLITS),
          "direction": kw["direction"], "lowercase": kw["lowercase"]}
  info["references"]["test"], info["sources"]["test"] = info["references"]["test2016"], info["sources"]["test2016"]
  return Dataset(name=name, train=arrays["train"],
                 eval={key: arrays[split] for split, key in MULTI30K_EVAL_SPLITS.items()},
                 preprocess=translation_preprocess, example=example,
                 model_kwargs={"vocab_size": tok.vocab_size, "max_len": kw["max_len"]}, info=info)


def translation_preprocess(batch: Batch) -> Batch:
  """Casts ``inputs``/``targets`` to int32 (they are padded and EOS-terminated already)."""
  out = dict(batch)
  for key in ("inputs", "targets"):
    out[key] = np.asarray(batch[key]).astype(np.int32)
  return out


# --- IMDB ---

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_review(text: str | bytes) -> str:
  """IMDB markup -> plain text: ``<br />`` tags become spaces, runs of whitespace one space.

  >>> clean_review(b"Great film.<br /><br />Really.  ")
  'Great film. Really.'
  """
  if isinstance(text, (bytes, np.bytes_)):
    text = bytes(text).decode("utf-8")
  text = str(text)
  if "<" in text:
    text = _BR.sub(" ", text.replace("<br />", " "))
  return " ".join(text.split())  # str.split is ~10x faster than a \s+ regex here


def _read_imdb_local(path: pathlib.Path) -> dict[str, tuple[list[str], np.ndarray]]:
  """``imdb.jsonl.gz`` -> {split: (texts, labels)}; malformed lines raise DataError naming the line."""
  out: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
  for i, line in enumerate(read_lines(path), start=1):
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{str(path)!r} line {i} is not JSON: {e}") from e
    missing = [k for k in ("split", "label", "text") if not isinstance(rec, dict) or k not in rec]
    if missing:
      raise DataError(f"{str(path)!r} line {i}: record lacks field(s) {missing}; expected "
                      "{'split': 'train'|'test', 'label': 0|1, 'text': str}")
    if rec["split"] not in out:
      raise DataError(f"{str(path)!r} line {i}: split {rec['split']!r}; expected 'train' or 'test'")
    out[rec["split"]][0].append(rec["text"])
    out[rec["split"]][1].append(rec["label"])
  return {k: (texts, labels) for k, (texts, labels) in out.items()}


def _read_imdb_tfds(split: str, root: pathlib.Path | None, download: bool) -> tuple[list, list]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    src = tfds.data_source("imdb_reviews", split=split, data_dir=None if root is None else str(root),
                           download=download)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
        f"TFDS could not open 'imdb_reviews' split {split!r} in "
        f"{str(root) if root else 'the TFDS default directory'} (download={download}): {e}. Offline, "
        f"point config.data_dir or ${sources.DATA_DIR_ENV} at a folder holding imdb.jsonl.gz; online, "
        "set --config.tfds_download=True.") from e
  texts, labels = [], []
  for i in range(len(src)):
    rec = src[i]
    texts.append(rec["text"])
    labels.append(rec["label"])
  return texts, labels


def _check_labels(labels, split: str, num_classes: int) -> np.ndarray:
  try:
    arr = np.asarray(labels)
  except ValueError as e:
    raise DataError(f"imdb:{split}: labels do not form an array: {e}") from e
  if arr.dtype.kind not in "iu" or arr.ndim != 1:
    raise DataError(f"imdb:{split}: labels have dtype {arr.dtype} and shape {arr.shape}; expected ints "
                    f"in [0, {num_classes - 1}]")
  if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
    raise DataError(f"imdb:{split}: labels must lie in [0, {num_classes - 1}], found [{arr.min()}, {arr.max()}]")
  return arr.astype(np.int32)


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
  """A seeded random subset of ``limit`` of ``n`` indices, in ascending order (all if no limit)."""
  if limit is None or limit >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


@register_dataset("imdb")
def build_imdb(config) -> Dataset:
  """IMDB reviews (Maas et al., 2011): 25,000 train / 25,000 test, binary sentiment.

  ``max_train_examples`` / ``max_eval_examples`` pick a seeded random subset
  (the files are sorted by label, so a prefix would hold one class only).
  """
  name, num_classes = "imdb", 2
  kw = _text_options(config, IMDB_DEFAULTS, name)
  kind = config.get("data_source", "auto")
  if kind not in ("auto", "local", "tfds"):
    raise ConfigError(f"config.data_source: expected 'auto', 'local' or 'tfds', got {kind!r}")
  root = sources.resolve_data_dir(config.get("data_dir"))
  local = None if root is None else root / "imdb.jsonl.gz"
  if kind == "auto":
    kind = "local" if local is not None and local.exists() else "tfds"
  if kind == "local":
    if root is None:
      raise ConfigError(f"config.data_dir: no data directory given for the local IMDB file; set "
                        f"--config.data_dir=DIR or ${sources.DATA_DIR_ENV} to the folder holding imdb.jsonl.gz")
    if not local.exists():
      raise ConfigError(f"config.data_dir: {str(root)!r} holds no imdb.jsonl.gz for dataset 'imdb'")
    raw = _read_imdb_local(local)
  else:
    if root is not None and not root.is_dir():
      raise ConfigError(f"config.data_dir: {str(root)!r} is not a directory")
    raw = {s: _read_imdb_tfds(s, root, bool(config.get("tfds_download", False))) for s in ("train", "test")}

  data = {}
  for split, (texts, labels) in raw.items():
    if not texts:
      raise DataError(f"imdb:{split} has no records")
    labels = _check_labels(labels, split, num_classes)
    limit = kw["max_train_examples"] if split == "train" else kw["max_eval_examples"]
    idx = _subset(len(texts), limit, seed=0 if split == "train" else 1)
    texts = [clean_review(texts[i]) for i in idx]
    labels = labels[idx]
    empty = np.flatnonzero([not t for t in texts])
    if len(empty):
      if not kw["skip_empty"]:
        raise DataError(f"imdb:{split}: {len(empty)} empty review(s) (after removing markup), first at "
                        f"record(s) {[int(i) for i in empty[:5]]}; set config.dataset_kwargs.skip_empty=True "
                        "to drop them")
      keep = np.setdiff1d(np.arange(len(texts)), empty)
      texts, labels = [texts[i] for i in keep], labels[keep]
    data[split] = (texts, labels)

  tok = _tokenizer(data["train"][0], kw, name=name)
  arrays, truncated = {}, {}
  for split, (texts, labels) in data.items():
    tokens, truncated[split] = encode_cached(tok, texts, max_len=kw["max_len"], add_eos=False,
                                             folder=cache_dir(kw) / name)
    arrays[split] = sources.ArraySource({"tokens": tokens, "label": labels}, name=f"{name}:{split}")
  example = text_classification_preprocess(arrays["train"][0:1])
  info = {"tokenizer": tok, "vocab": tok.record(), "truncated": truncated, "source": kind,
          "lowercase": kw["lowercase"]}
  return Dataset(name=name, train=arrays["train"], eval={"test": arrays["test"]},
                 preprocess=text_classification_preprocess, example=example,
                 model_kwargs={"vocab_size": tok.vocab_size, "num_classes": num_classes,
                               "max_len": kw["max_len"]}, info=info)


def text_classification_preprocess(batch: Batch) -> Batch:
  """Casts ``tokens`` and ``label`` to int32."""
  out = dict(batch)
  out["tokens"] = np.asarray(batch["tokens"]).astype(np.int32)
  out["label"] = np.asarray(batch["label"]).astype(np.int32)
  return out
