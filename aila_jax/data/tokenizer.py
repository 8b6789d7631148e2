r"""Subword tokenizers (sentencepiece BPE / unigram) trained from a training split only.

The Transformer paper encodes its sentences "using byte-pair encoding
(Sennrich et al., 2016), which has a shared source-target vocabulary";
:func:`get_or_train` trains such a vocabulary with sentencepiece (Kudo &
Richardson, 2018) on the training texts only, saves it in a cache folder
(never in the data folder, which may be read-only) and reuses it when the same
options and the same training texts come again.

Special ids are fixed for every text dataset of the library:

=====  =======  ================================================
id     piece    meaning
=====  =======  ================================================
0      <pad>    padding (every batch pads with 0)
1      <s>      BOS: the decoder's first input (the model shifts)
2      </s>     EOS: every target sequence ends with it
3      <unk>    unknown
=====  =======  ================================================

Training is deterministic: the training texts are sub-sampled with a numpy
generator of a fixed seed (not sentencepiece's own shuffling) and trained with
one thread, so the same texts and options give a byte-identical model file,
whose sha256 identifies the vocabulary (``Tokenizer.sha256``). A cached file
is checked against the sha256 and size recorded beside it when it is reused;
a vocabulary given by path can be pinned by its sha256; a workdir's
checkpoints are tied to their vocabulary by :func:`check_workdir_vocab`.

Lower-casing, when asked, is done by sentencepiece's normaliser
(``nmt_nfkc_cf``), so it travels inside the model file and cannot be forgotten
at decoding time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import tempfile
from typing import Iterable, Mapping, Sequence

import numpy as np

from aila_jax.errors import ConfigError, DataError

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_PIECES = ("<pad>", "<s>", "</s>", "<unk>")
MODEL_TYPES = ("bpe", "unigram")
CACHE_ENV = "AILA_CACHE_DIR"
_MAX_SENTENCE_BYTES = 1 << 16  # IMDB reviews reach 14 kB; sentencepiece's default (4192) drops them


def _spm():
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  return spm


def sha256_bytes(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def texts_digest(texts: Iterable[str]) -> str:
  """sha256 of a sequence of texts (order and boundaries included)."""
  h = hashlib.sha256()
  for t in texts:
    b = t.encode("utf-8")
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)
  return h.hexdigest()


def default_cache_dir() -> pathlib.Path:
  """``$AILA_CACHE_DIR``, else ``~/.cache/aila_jax``."""
  env = os.environ.get(CACHE_ENV)
  return pathlib.Path(env).expanduser() if env else pathlib.Path("~/.cache/aila_jax").expanduser()


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  """Writes ``data`` to a temporary file beside ``path`` and renames it (safe under concurrency)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


class Tokenizer:
  """A sentencepiece model with the library's special ids; batch encode to padded int32 arrays.

  >>> tok = Tokenizer(train_model(["a b c", "a b", "c a b"] * 20, vocab_size=10))
  >>> ids, truncated = tok.encode_padded(["a b c"], max_len=8)
  >>> ids.dtype, ids.shape, int(ids[0, (ids[0] != 0).sum() - 1]) == EOS_ID, truncated
  (dtype('int32'), (1, 8), True, 0)
  >>> tok.decode(ids)
  ['a b c']
  """

  def __init__(self, model_proto: bytes, *, path: str | os.PathLike | None = None):
    spm = _spm()
    self.model_proto = bytes(model_proto)
    self.path = None if path is None else pathlib.Path(path)
    where = f"vocabulary file {str(self.path)!r}" if self.path else "vocabulary"
    try:
      self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f"{where} is not a sentencepiece model: {e}") from e
    got = tuple(self._sp.id_to_piece(i) for i in range(min(4, self._sp.get_piece_size())))
    ids = (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id())
    if got != SPECIAL_PIECES or ids != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
      raise DataError(f"{where} has special ids (pad, bos, eos, unk) = {ids} with pieces {got}; "
                      f"expected (0, 1, 2, 3) with pieces {SPECIAL_PIECES}: train it with "
                      "aila_jax.data.tokenizer.train_model")
    self.sha256 = sha256_bytes(self.model_proto)
    self._splits_on_spaces = _splits_on_spaces(self.model_proto)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Tokenizer":
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
      raise DataError(f"vocabulary file {str(path)!r} does not exist")
    return cls(path.read_bytes(), path=path)

  @property
  def vocab_size(self) -> int:
    return int(self._sp.get_piece_size())

  def encode(self, texts: Sequence[str], *, num_threads: int = -1) -> list[list[int]]:
    """Ids of each text, no BOS/EOS (sentencepiece's multi-threaded batch encoder)."""
    return self._sp.encode(list(texts), num_threads=num_threads)

  def encode_padded(self, texts: Sequence[str], max_len: int, *, add_eos: bool = True,
                    num_threads: int = -1) -> tuple[np.ndarray, int]:
    """Texts -> int32 ``[N, max_len]`` (0-padded, truncated), and how many were truncated.

    With ``add_eos`` every row ends with EOS (id 2), kept even when the text is
    truncated: a truncated row holds its first ``max_len - 1`` pieces and EOS.
    """
    if max_len < 1 + add_eos:
      raise ConfigError(f"config.dataset_kwargs.max_len: expected >= {1 + add_eos}, got {max_len}")
    room = max_len - int(add_eos)
    texts = list(texts)
    cut = [_prefix(t, room + 1) for t in texts] if self._splits_on_spaces else texts
    pieces = self.encode(cut, num_threads=num_threads)
    redo = [i for i, (t, c, p) in enumerate(zip(texts, cut, pieces)) if c is not t and len(p) <= room]
    if redo:  # the prefix was too short to decide: encode those texts whole
      for i, p in zip(redo, self.encode([texts[i] for i in redo], num_threads=num_threads)):
        pieces[i] = p
    lengths = np.fromiter((len(p) for p in pieces), np.int64, len(pieces))
    kept = np.minimum(lengths, room)
    out = np.zeros((len(pieces), max_len), np.int32)  # (N, L)
    flat = np.fromiter((i for p, k in zip(pieces, kept) for i in p[:k]), np.int32, int(kept.sum()))
    rows = np.repeat(np.arange(len(pieces)), kept)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(kept) - kept, kept)
    out[rows, cols] = flat
    if add_eos:
      out[np.arange(len(pieces)), kept] = EOS_ID
    return out, int((lengths > room).sum())

  def decode(self, ids) -> list[str]:
    """Rows of ids -> strings: each row is cut at its first EOS; pad and BOS are dropped."""
    out = []
    for row in ids:
      row = [int(i) for i in np.asarray(row).reshape(-1)]
      if EOS_ID in row:
        row = row[:row.index(EOS_ID)]
      out.append(self._sp.decode([i for i in row if i not in (PAD_ID, BOS_ID)]))
    return out

  def id_to_piece(self, ids) -> list[str]:
    return [self._sp.id_to_piece(int(i)) for i in ids]

  def record(self) -> dict:
    """What identifies this vocabulary (stored in ``Dataset.info['vocab']`` and in workdirs)."""
    return {"sha256": self.sha256, "vocab_size": self.vocab_size,
            "path": None if self.path is None else str(self.path)}


def _splits_on_spaces(model_proto: bytes) -> bool:
  """Whether pieces never cross an ASCII space (sentencepiece's defaults), so prefixes encode exactly."""
  try:
    from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
    m = sentencepiece_model_pb2.ModelProto()
    m.ParseFromString(model_proto)
  except Exception:  # pylint: disable=broad-except
    return False
  return (m.trainer_spec.split_by_whitespace and m.normalizer_spec.remove_extra_whitespaces
          and m.normalizer_spec.escape_whitespaces and not m.trainer_spec.treat_whitespace_as_suffix)


def _prefix(text: str, words: int) -> str:
  """``text`` cut at an ASCII space before its ``words + 1``-th word (``text`` itself if shorter).

  With a model whose pieces never cross an ASCII space, the prefix's pieces
  are exactly the first pieces of the whole text: only the texts longer than
  ``max_len`` pieces pay for encoding more than their first ``max_len`` words.
  """
  parts = text.split(None, words)
  if len(parts) <= words:
    return text
  q = text.rfind(" ", 0, len(text) - len(parts[-1]))
  return text[:q] if q > 0 else text


def train_model(texts: Sequence[str], *, vocab_size: int, model_type: str = "bpe",
                lowercase: bool = False, max_sentences: int | None = None, seed: int = 0,
                character_coverage: float = 1.0) -> bytes:
  """Trains a sentencepiece model on ``texts`` and returns its serialized bytes.

  Deterministic: at most ``max_sentences`` texts are drawn without replacement
  by ``numpy.random.default_rng(seed)`` (kept in their original order), and
  sentencepiece trains with one thread and no shuffling of its own.
  """
  if model_type not in MODEL_TYPES:
    raise ConfigError(f"config.dataset_kwargs.model_type: expected one of {MODEL_TYPES}, got {model_type!r}")
  if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= len(SPECIAL_PIECES):
    raise ConfigError(f"config.dataset_kwargs.vocab_size: expected an int > 4, got {vocab_size!r}")
  texts = [t for t in texts if t.strip()]
  if not texts:
    raise DataError("no non-empty training text to train the vocabulary on")
  if max_sentences is not None and len(texts) > max_sentences:
    pick = np.sort(np.random.default_rng(seed).choice(len(texts), max_sentences, replace=False))
    texts = [texts[i] for i in pick]
  spm = _spm()
  buf = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        pad_piece="<pad>", bos_piece="<s>", eos_piece="</s>", unk_piece="<unk>",
        character_coverage=character_coverage, num_threads=1, shuffle_input_sentence=False,
        input_sentence_size=0, max_sentence_length=_MAX_SENTENCE_BYTES,
        normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc", minloglevel=2)
  except RuntimeError as e:
    raise ConfigError(f"config.dataset_kwargs.vocab_size: sentencepiece could not train a {model_type} "
                      f"vocabulary of {vocab_size} pieces on {len(texts)} texts ({e}); lower it") from e
  return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class VocabOptions:
  """Everything that determines a trained vocabulary besides its training texts."""
  vocab_size: int
  model_type: str = "bpe"
  lowercase: bool = False
  max_sentences: int | None = None
  seed: int = 0

  def key(self, texts_sha256: str) -> str:
    blob = json.dumps({**dataclasses.asdict(self), "texts": texts_sha256}, sort_keys=True)
    return sha256_bytes(blob.encode())[:16]


def get_or_train(texts: Sequence[str], options: VocabOptions, *, cache_dir: str | os.PathLike,
                 name: str) -> Tokenizer:
  """The cached vocabulary of ``(texts, options)`` in ``cache_dir/name/``, trained if absent.

  The model is stored as ``spm-<key>.model`` with a ``.json`` beside it that
  records the options, the texts' sha256, the vocabulary size and the model's
  sha256; a cached file whose bytes or size do not match that record raises
  :class:`DataError` (delete it to retrain).
  """
  digest = texts_digest(texts)
  folder = pathlib.Path(cache_dir).expanduser() / name
  model_path = folder / f"spm-{options.key(digest)}.model"
  meta_path = model_path.with_suffix(".json")
  if model_path.exists() and meta_path.exists():
    meta = json.loads(meta_path.read_text())
    tok = Tokenizer.load(model_path)
    if tok.sha256 != meta.get("sha256") or tok.vocab_size != meta.get("vocab_size"):
      raise DataError(
          f"vocabulary file {str(model_path)!r} does not match its record {str(meta_path)!r}: sha256 "
          f"{tok.sha256[:12]}... size {tok.vocab_size} on disk, recorded {str(meta.get('sha256'))[:12]}... "
          f"size {meta.get('vocab_size')}. It was modified; delete both files to retrain it.")
    return tok
  proto = train_model(texts, **dataclasses.asdict(options))
  tok = Tokenizer(proto, path=model_path)
  if tok.vocab_size != options.vocab_size:
    raise ConfigError(f"config.dataset_kwargs.vocab_size: asked for {options.vocab_size} pieces, "
                      f"sentencepiece made {tok.vocab_size}")
  atomic_write_bytes(model_path, proto)
  meta = {**dataclasses.asdict(options), "texts_sha256": digest, "num_texts": len(texts),
          "sha256": tok.sha256, "vocab_size": tok.vocab_size}
  atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())
  return tok


def check_vocab(tok: Tokenizer, *, vocab_size: int | None = None, sha256: str | None = None,
                what: str = "the vocabulary") -> None:
  """Raises DataError when ``tok`` is not the expected vocabulary (size and/or sha256)."""
  where = f"{what} ({str(tok.path) if tok.path else 'in memory'})"
  if vocab_size is not None and tok.vocab_size != vocab_size:
    raise DataError(f"{where} has {tok.vocab_size} pieces; expected {vocab_size} "
                    "(config.dataset_kwargs.vocab_size and the checkpoint's embedding size)")
  if sha256 is not None and tok.sha256 != sha256:
    raise DataError(f"{where} has sha256 {tok.sha256}; expected {sha256} "
                    "(config.dataset_kwargs.vocab_sha256 / the checkpoint's vocab.json): it is a "
                    "different vocabulary, and token ids would mean other pieces")


WORKDIR_VOCAB_MODEL = "vocab.model"
WORKDIR_VOCAB_RECORD = "vocab.json"


def check_workdir_vocab(workdir: str | os.PathLike, info: Mapping) -> None:
  """Ties a workdir's checkpoints to their vocabulary.

  On the first call for ``workdir`` it copies the dataset's vocabulary to
  ``workdir/vocab.model`` and records ``{sha256, vocab_size}`` in
  ``workdir/vocab.json``; later calls (resuming, evaluating, translating)
  raise :class:`DataError` if ``info['vocab']`` names another vocabulary.
  ``info`` is ``Dataset.info`` of a text dataset (it holds ``'tokenizer'`` and
  ``'vocab'``).
  """
  workdir = pathlib.Path(workdir)
  record_path = workdir / WORKDIR_VOCAB_RECORD
  tok: Tokenizer = info["tokenizer"]
  if not record_path.exists():
    atomic_write_bytes(workdir / WORKDIR_VOCAB_MODEL, tok.model_proto)
    atomic_write_bytes(record_path, json.dumps(
        {"sha256": tok.sha256, "vocab_size": tok.vocab_size}, indent=2).encode())
    return
  try:
    record = json.loads(record_path.read_text())
  except json.JSONDecodeError as e:
    raise DataError(f"{str(record_path)!r} is not valid JSON: {e}") from e
  if record.get("vocab_size") != tok.vocab_size or record.get("sha256") != tok.sha256:
    raise DataError(
        f"the checkpoints in {str(workdir)!r} were trained with vocabulary sha256 "
        f"{record.get('sha256')} of {record.get('vocab_size')} pieces, but this config's vocabulary "
        f"is {tok.sha256} of {tok.vocab_size} pieces: set config.dataset_kwargs.vocab_file="
        f"{str(workdir / WORKDIR_VOCAB_MODEL)!r} (and vocab_size={record.get('vocab_size')}), "
        "or use another workdir")
