"""Text datasets pinned on tiny synthetic files: line ends, IMDB subsets and labels, the encoding cache."""
import gzip
import json

import ml_collections
import numpy as np
import pytest

from aila_jax.data import datasets, text, tokenizer
from aila_jax.errors import DataError


def _imdb_config(data_dir, cache_dir, **kwargs):
  return ml_collections.ConfigDict(dict(
      dataset="imdb", data_dir=str(data_dir), data_source="local", tfds_download=False,
      dataset_kwargs=dict(dict(vocab_dir=str(cache_dir), vocab_size=24, max_len=8), **kwargs)))


def _review(i):
  """A distinct review per i (its 5 bits as words), every one holding all the characters of the others."""
  return "movie " + " ".join("good" if (i >> k) & 1 else "bad" for k in range(5)) + " end"


_LABELS = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1]


def _records(n=20):
  return [{"split": s, "label": _LABELS[i], "text": _review(i + 1 + 10 * (s == "test"))}
          for s in ("train", "test") for i in range(n)]


def _write(path, lines):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))


def _write_imdb(path, records):
  _write(path, [r if isinstance(r, str) else json.dumps(r) for r in records])


def _decoded(ds, split):
  src = ds.train if split == "train" else ds.eval["test"]
  return ds.info["tokenizer"].decode(src.arrays["tokens"]), src.arrays["label"].tolist()


def test_read_lines_drops_crlf_line_ends(tmp_path):
  # Windows line ends must not leave '\r' at the end of every sentence
  (tmp_path / "a.en").write_bytes(b"one dog\r\ntwo cats\r\n")
  assert text.read_lines(tmp_path / "a.en") == ["one dog", "two cats"]
  (tmp_path / "b.en.gz").write_bytes(gzip.compress(b"x\r\ny\n\r\n"))
  assert text.read_lines(tmp_path / "b.en.gz") == ["x", "y", ""]


def test_imdb_subsets_are_seeded_per_split(tmp_path):
  # train picks sort(default_rng(0).choice(n, k)), test sort(default_rng(1).choice(n, k)); labels follow
  records = _records()
  _write_imdb(tmp_path / "imdb.jsonl.gz", records)
  ds = datasets.build_dataset(_imdb_config(tmp_path, tmp_path / "c", max_train_examples=6,
                                           max_eval_examples=5, max_len=32))
  for split, seed, k in (("train", 0, 6), ("test", 1, 5)):
    rows = [r for r in records if r["split"] == split]
    pick = np.sort(np.random.default_rng(seed).choice(20, k, replace=False))
    texts, labels = _decoded(ds, split)
    assert texts == [rows[i]["text"] for i in pick]
    assert labels == [rows[i]["label"] for i in pick]


def test_imdb_skip_empty_keeps_labels_aligned(tmp_path):
  # dropping an empty review must drop its label, not the last one
  records = _records()
  records[2] = dict(records[2], text="<br /><br />")
  _write_imdb(tmp_path / "imdb.jsonl.gz", records)
  ds = datasets.build_dataset(_imdb_config(tmp_path, tmp_path / "c", skip_empty=True, max_len=32))
  texts, labels = _decoded(ds, "train")
  kept = [r for r in records[:20] if r["text"] != "<br /><br />"]
  assert len(texts) == 19
  assert texts == [r["text"] for r in kept] and labels == [r["label"] for r in kept]


@pytest.mark.parametrize("label,match", [
    (-1, r"labels must lie in \[0, 1\], found \[-1, 1\]"),
    (0.5, r"labels have dtype float64"),
])
def test_imdb_rejects_negative_and_float_labels(tmp_path, label, match):
  # a label outside {0, 1} or a non-integer one is a data error, not a silent class
  records = _records()
  records[0] = dict(records[0], label=label)
  _write_imdb(tmp_path / "imdb.jsonl.gz", records)
  with pytest.raises(DataError, match=match):
    datasets.build_dataset(_imdb_config(tmp_path, tmp_path / "c"))


def test_imdb_blank_lines_are_skipped(tmp_path):
  # blank lines in the JSONL file are not records (and not JSON errors)
  records = _records()
  _write_imdb(tmp_path / "imdb.jsonl.gz", records[:5] + ["", "   "] + records[5:])
  ds = datasets.build_dataset(_imdb_config(tmp_path, tmp_path / "c", max_len=32))
  assert len(ds.train) == 20 and len(ds.eval["test"]) == 20
  assert _decoded(ds, "train")[0][5] == records[5]["text"]


def test_encode_cache_is_keyed_by_add_eos(tmp_path):
  # the same texts encoded with and without EOS are two cache entries
  rng = np.random.default_rng(0)
  train = [" ".join(rng.choice(list("abcde"), rng.integers(1, 6))) for _ in range(100)]
  tok = tokenizer.Tokenizer(tokenizer.train_model(train, vocab_size=15))
  a, b = (tok.encode(["a"])[0][0], tok.encode(["b"])[0][0])
  with_eos, n = text.encode_cached(tok, ["a b"], max_len=4, add_eos=True, folder=tmp_path)
  np.testing.assert_array_equal(with_eos, [[a, b, tokenizer.EOS_ID, 0]])
  without, n = text.encode_cached(tok, ["a b"], max_len=4, add_eos=False, folder=tmp_path)
  np.testing.assert_array_equal(without, [[a, b, 0, 0]])
  assert n == 0 and len(list(tmp_path.glob("enc-*.npy"))) == 2
