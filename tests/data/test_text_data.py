"""Text data: the subword tokenizer, Multi30k and IMDB on the real files, and their error cases."""
import gzip
import json
import pathlib
import shutil

import hypothesis
from hypothesis import strategies as st
import ml_collections
import numpy as np
import pytest

from aila_jax.data import datasets, pipeline, text, tokenizer
from aila_jax.errors import ConfigError, DataError

SMALL_MT = dict(max_train_examples=2000, max_eval_examples=64, vocab_size=1000)
SMALL_IMDB = dict(max_train_examples=1500, max_eval_examples=300, vocab_size=1500, max_len=128)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp("vocab_cache")


def _config(name, data_dir, cache_dir, **kwargs):
  return ml_collections.ConfigDict(dict(
      dataset=name, data_dir=str(data_dir), data_source="auto", tfds_download=False,
      dataset_kwargs=dict(dict(vocab_dir=str(cache_dir)), **kwargs)))


@pytest.fixture(scope="module")
def small_mt(data_dir, cache):
  return datasets.build_dataset(_config("multi30k_en_de", data_dir, cache, **SMALL_MT))


@pytest.fixture(scope="module")
def small_imdb(data_dir, cache):
  return datasets.build_dataset(_config("imdb", data_dir, cache, **SMALL_IMDB))


@pytest.fixture(scope="module")
def toy_tok():
  words = "the cat sat on a mat dog ran far away Hund Katze lief weit über".split()
  rng = np.random.default_rng(0)
  texts = [" ".join(rng.choice(words, rng.integers(1, 9))) for _ in range(300)]
  return tokenizer.Tokenizer(tokenizer.train_model(texts, vocab_size=60))


# --- tokenizer ---

def test_special_ids_and_roundtrip(toy_tok):
  assert toy_tok.id_to_piece([0, 1, 2, 3]) == ["<pad>", "<s>", "</s>", "<unk>"]
  ids, n = toy_tok.encode_padded(["the cat sat", "Hund lief weit"], max_len=12)
  assert ids.dtype == np.int32 and ids.shape == (2, 12) and n == 0
  lengths = (ids != 0).sum(1)
  np.testing.assert_array_equal(ids[np.arange(2), lengths - 1], [2, 2])  # EOS last
  assert (ids[:, 0] != 1).all()  # no BOS
  assert toy_tok.decode(ids) == ["the cat sat", "Hund lief weit"]


def test_truncation_keeps_eos(toy_tok):
  ids, n = toy_tok.encode_padded(["the cat sat on a mat " * 5, "the"], max_len=6)
  assert n == 1 and (ids[1] != 0).sum() < 6
  assert ids[0, -1] == tokenizer.EOS_ID and (ids[0] != 0).all()
  no_eos, _ = toy_tok.encode_padded(["the cat sat on a mat " * 5], max_len=6, add_eos=False)
  np.testing.assert_array_equal(no_eos[0, :5], ids[0, :5])
  assert no_eos[0, 5] != tokenizer.EOS_ID
  with pytest.raises(ConfigError, match=r"dataset_kwargs.max_len: expected >= 2"):
    toy_tok.encode_padded(["x"], max_len=1)


_WORDS = st.sampled_from(["the", "cat", "Hund", "über", "x", "", "mat!", "ﬁ"])
_SPACES = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u3000", "\x1c", " \x1f "])


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(words=st.lists(st.tuples(_WORDS, _SPACES), min_size=0, max_size=30),
                  max_len=st.integers(2, 12), add_eos=st.booleans())
def test_prefix_encoding_equals_whole_encoding(toy_tok, words, max_len, add_eos):
  """The fast path (encode a prefix of max_len + 1 words) gives the whole text's ids, odd spaces included."""
  text_ = "".join(w + s for w, s in words)
  fast = toy_tok.encode_padded([text_], max_len, add_eos=add_eos)
  toy_tok._splits_on_spaces = False  # pylint: disable=protected-access
  try:
    slow = toy_tok.encode_padded([text_], max_len, add_eos=add_eos)
  finally:
    toy_tok._splits_on_spaces = True  # pylint: disable=protected-access
  np.testing.assert_array_equal(fast[0], slow[0])
  assert fast[1] == slow[1]


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
  texts = ["ein Hund läuft", "a dog runs", "zwei Katzen", "two cats"] * 30
  a = tokenizer.train_model(texts, vocab_size=40, max_sentences=50, seed=3)
  b = tokenizer.train_model(texts, vocab_size=40, max_sentences=50, seed=3)
  assert a == b
  opts = tokenizer.VocabOptions(vocab_size=40)
  first = tokenizer.get_or_train(texts, opts, cache_dir=tmp_path, name="toy")
  assert first.path.exists() and first.path.with_suffix(".json").exists()
  assert not str(first.path).startswith(str(pathlib.Path(texts[0])))
  monkeypatch.setattr(tokenizer, "train_model", lambda *a, **k: pytest.fail("retrained a cached vocabulary"))
  again = tokenizer.get_or_train(texts, opts, cache_dir=tmp_path, name="toy")
  assert again.sha256 == first.sha256
  # other texts or other options -> another file
  monkeypatch.undo()
  other = tokenizer.get_or_train(texts[:-4], opts, cache_dir=tmp_path, name="toy")
  assert other.path != first.path


def test_tampered_cache_is_refused(tmp_path):
  texts = ["a b c d", "e f g"] * 20
  tok = tokenizer.get_or_train(texts, tokenizer.VocabOptions(vocab_size=12), cache_dir=tmp_path, name="t")
  other = tokenizer.train_model(["x y z w v"] * 20, vocab_size=12)
  tok.path.write_bytes(other)
  with pytest.raises(DataError, match=r"does not match its record .* delete both files"):
    tokenizer.get_or_train(texts, tokenizer.VocabOptions(vocab_size=12), cache_dir=tmp_path, name="t")


def test_vocab_too_large_is_a_config_error():
  with pytest.raises(ConfigError, match=r"config.dataset_kwargs.vocab_size: .* lower it"):
    tokenizer.train_model(["a b"] * 10, vocab_size=500)


def test_foreign_special_ids_are_refused(tmp_path):
  import io  # pylint: disable=g-import-not-at-top
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c d e"] * 20), model_writer=buf,
                                 vocab_size=10, minloglevel=2)  # sentencepiece's ids: unk=0, bos=1, eos=2
  path = tmp_path / "foreign.model"
  path.write_bytes(buf.getvalue())
  with pytest.raises(DataError, match=r"special ids .* expected \(0, 1, 2, 3\)"):
    tokenizer.Tokenizer.load(path)
  path.write_bytes(b"not a model")
  with pytest.raises(DataError, match=r"is not a sentencepiece model"):
    tokenizer.Tokenizer.load(path)
  with pytest.raises(DataError, match=r"does not exist"):
    tokenizer.Tokenizer.load(tmp_path / "nope.model")


def test_workdir_vocab_check(tmp_path, toy_tok):
  info = {"tokenizer": toy_tok, "vocab": toy_tok.record()}
  tokenizer.check_workdir_vocab(tmp_path, info)
  assert (tmp_path / "vocab.model").read_bytes() == toy_tok.model_proto
  tokenizer.check_workdir_vocab(tmp_path, info)  # same vocabulary: fine
  other = tokenizer.Tokenizer(tokenizer.train_model(["q r s t u v"] * 30, vocab_size=12))
  with pytest.raises(DataError, match=r"were trained with vocabulary sha256 .* of 60 pieces.*vocab_file="):
    tokenizer.check_workdir_vocab(tmp_path, {"tokenizer": other})


# --- Multi30k ---

def test_multi30k_full_real_data(data_dir, cache):
  ds = datasets.build_dataset(_config("multi30k_en_de", data_dir, cache))
  assert set(ds.eval) == {"test", "val"} and ds.info["split_aliases"] == {"test2016": "test", "val": "val"}
  assert (len(ds.train), len(ds.eval["val"]), len(ds.eval["test"])) == (29000, 1014, 1000)
  assert ds.model_kwargs == {"vocab_size": 8000, "max_len": 64}
  assert ds.info["truncated"]["train"] == {"inputs": 0, "targets": 0}  # 64 tokens hold every sentence
  tok = ds.info["tokenizer"]
  first = ds.train[0]
  assert tok.decode(first["inputs"][None]) == ["Two young, White males are outside near many bushes."]
  assert tok.decode(first["targets"][None]) == ["Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."]
  refs = ds.info["references"]["test2016"]
  assert len(refs) == 1000 and refs[0] == text.read_lines(data_dir / "multi30k" / "test2016.de.gz")[0]
  assert ds.info["vocab"]["sha256"] == tok.sha256 and ds.info["vocab"]["vocab_size"] == 8000


def test_multi30k_subset_batches(small_mt):
  ds = small_mt
  assert len(ds.train) == 2000 and len(ds.eval["test"]) == 64
  assert {k: (v.shape, v.dtype) for k, v in ds.example.items()} == {
      "inputs": ((1, 64), np.int32), "targets": ((1, 64), np.int32)}
  batch = next(pipeline.make_iterator(pipeline.train_dataset(
      ds.train, preprocess=ds.preprocess, batch_size=16, seed=0)))
  for key in ("inputs", "targets"):
    ids = batch[key]
    assert ids.shape == (16, 64) and ids.dtype == np.int32
    lengths = (ids != 0).sum(1)
    np.testing.assert_array_equal(ids[np.arange(16), lengths - 1], 2)  # EOS ends every row
    assert (ids[:, 0] != 1).all() and ((ids != 0).cumprod(1) == (ids != 0)).all()  # no BOS; pads trail
  tok = ds.info["tokenizer"]
  assert ds.info["references"]["val"][:3] == tok.decode(ds.eval["val"].arrays["targets"][:3])
  assert ds.info["sources"]["val"][:3] == tok.decode(ds.eval["val"].arrays["inputs"][:3])


def test_multi30k_subset_vocab_from_train_only(data_dir, cache, small_mt):
  raw_train = [" ".join(line.split()) for line in text.read_lines(data_dir / "multi30k" / "train.de.gz")[:2000]]
  targets = small_mt.train.arrays["targets"]
  whole = (targets != 0).sum(1) < targets.shape[1]  # rows not truncated to max_len
  assert whole.mean() > 0.99 and 0 < small_mt.info["truncated"]["train"]["targets"] <= (~whole).sum()
  decoded = small_mt.info["tokenizer"].decode(targets)
  assert [d for d, w in zip(decoded, whole) if w] == [r for r, w in zip(raw_train, whole) if w]
  meta = json.loads(small_mt.info["tokenizer"].path.with_suffix(".json").read_text())
  assert meta["num_texts"] == 4000  # 2000 English + 2000 German training lines, nothing else


def test_multi30k_direction_de_en(data_dir, cache, small_mt):
  ds = datasets.build_dataset(_config("multi30k_en_de", data_dir, cache, direction="de-en", **SMALL_MT))
  np.testing.assert_array_equal(ds.train.arrays["inputs"], small_mt.train.arrays["targets"])
  assert ds.info["references"]["test2016"][0].startswith("A man in an orange hat")


def _write_mt(folder, lines_by_file, *, gz=True):
  folder.mkdir(parents=True, exist_ok=True)
  for name, lines in lines_by_file.items():
    data = "".join(line + "\n" for line in lines).encode()
    if gz:
      (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    else:
      (folder / name).write_bytes(data)


def _toy_mt_files(folder, **overrides):
  en = [f"a small dog number {i} runs" for i in range(40)]
  de = [f"ein kleiner Hund nummer {i} läuft" for i in range(40)]
  files = {f"{s}.{l}": (en if l == "en" else de)[:n] for s, n in (("train", 40), ("val", 5), ("test2016", 5))
           for l in ("en", "de")}
  files.update(overrides)
  _write_mt(folder, files)


def test_multi30k_from_original_file_names_uncompressed(tmp_path):
  folder = tmp_path / "data"
  en = [f"a dog {i}" for i in range(30)]
  de = [f"ein Hund {i}" for i in range(30)]
  _write_mt(folder, {"train.en": en, "train.de": de, "val.en": en[:4], "val.de": de[:4],
                     "test_2016_flickr.en": en[:3], "test_2016_flickr.de": de[:3]}, gz=False)
  ds = datasets.build_dataset(_config("multi30k_en_de", folder, tmp_path / "c", vocab_size=40, max_len=8))
  assert len(ds.eval["test"]) == 3 and ds.info["references"]["test2016"] == de[:3]


@pytest.mark.parametrize("overrides,err,match", [
    ({"val.de": ["x"] * 4}, DataError, r"val: .*val.en.gz' has 5 lines but .*val.de.gz' has 4"),
    ({"train.en": ["a"] * 10 + [""] + ["b"] * 29}, DataError, r"1 empty line\(s\) .* line\(s\) \[11\].*skip_empty"),
])
def test_multi30k_bad_files(tmp_path, overrides, err, match):
  _toy_mt_files(tmp_path / "d", **overrides)
  with pytest.raises(err, match=match):
    datasets.build_dataset(_config("multi30k_en_de", tmp_path / "d", tmp_path / "c", vocab_size=40))


def test_multi30k_skip_empty(tmp_path):
  _toy_mt_files(tmp_path / "d", **{"train.en": ["a"] * 10 + [""] + ["a b"] * 29})
  ds = datasets.build_dataset(_config("multi30k_en_de", tmp_path / "d", tmp_path / "c", vocab_size=30,
                                      skip_empty=True))
  assert len(ds.train) == 39


def test_multi30k_missing_and_malformed_files(tmp_path):
  _toy_mt_files(tmp_path / "d")
  (tmp_path / "d" / "test2016.de.gz").unlink()
  with pytest.raises(DataError, match=r"no 'test2016' file for language 'de' .*test_2016_flickr.de.gz"):
    datasets.build_dataset(_config("multi30k_en_de", tmp_path / "d", tmp_path / "c", vocab_size=40))
  (tmp_path / "d" / "test2016.de.gz").write_bytes(b"plain text, not gzip\n")
  with pytest.raises(DataError, match=r"test2016.de.gz' could not be read as gzip"):
    datasets.build_dataset(_config("multi30k_en_de", tmp_path / "d", tmp_path / "c", vocab_size=40))
  (tmp_path / "d" / "test2016.de.gz").write_bytes(gzip.compress(b"\xff\xfe bad\n" * 5))
  with pytest.raises(DataError, match=r"is not UTF-8 text"):
    datasets.build_dataset(_config("multi30k_en_de", tmp_path / "d", tmp_path / "c", vocab_size=40))


def test_multi30k_config_errors(tmp_path, data_dir):
  c = _config("multi30k_en_de", data_dir, tmp_path)
  c.data_source = "tfds"
  with pytest.raises(ConfigError, match=r"config.data_source: TFDS has no Multi30k"):
    datasets.build_dataset(c)
  with pytest.raises(ConfigError, match=r"config.data_dir: .* is not a directory"):
    datasets.build_dataset(_config("multi30k_en_de", tmp_path / "nope", tmp_path))
  for kwargs, match in [
      (dict(max_lenght=3), r"config.dataset_kwargs: dataset 'multi30k_en_de' takes no option\(s\) \['max_lenght'\]"),
      (dict(max_len="64"), r"config.dataset_kwargs.max_len: expected an int >= 2, got '64'"),
      (dict(vocab_size=3), r"config.dataset_kwargs.vocab_size: expected an int >= 5"),
      (dict(direction="en-fr"), r"config.dataset_kwargs.direction: expected 'en-de' or 'de-en'"),
      (dict(model_type="wordpiece"), r"config.dataset_kwargs.model_type: expected one of"),
      (dict(lowercase="yes"), r"config.dataset_kwargs.lowercase: expected a bool"),
      (dict(vocab_sha256="abc"), r"config.dataset_kwargs.vocab_sha256: expected 64 lowercase hex"),
      (dict(vocab_file=str(tmp_path / "missing.model")), r"config.dataset_kwargs.vocab_file: .* does not exist"),
  ]:
    with pytest.raises(ConfigError, match=match):
      datasets.build_dataset(_config("multi30k_en_de", data_dir, tmp_path, **kwargs))


def test_multi30k_vocab_file_must_match(data_dir, cache, small_mt, tmp_path):
  vocab = tmp_path / "vocab.model"
  shutil.copy(small_mt.info["tokenizer"].path, vocab)
  same = datasets.build_dataset(_config("multi30k_en_de", data_dir, cache, vocab_file=str(vocab),
                                        vocab_sha256=small_mt.info["vocab"]["sha256"], **SMALL_MT))
  np.testing.assert_array_equal(same.train.arrays["targets"], small_mt.train.arrays["targets"])
  with pytest.raises(DataError, match=r"vocab_file .* has 1000 pieces; expected 8000"):
    datasets.build_dataset(_config("multi30k_en_de", data_dir, cache, vocab_file=str(vocab),
                                   **dict(SMALL_MT, vocab_size=8000)))
  with pytest.raises(DataError, match=r"has sha256 .*; expected 0{64}.*different vocabulary"):
    datasets.build_dataset(_config("multi30k_en_de", data_dir, cache, vocab_sha256="0" * 64, **SMALL_MT))


# --- IMDB ---

def test_imdb_real_subset(small_imdb):
  ds = small_imdb
  assert len(ds.train) == 1500 and len(ds.eval["test"]) == 300
  assert ds.model_kwargs == {"vocab_size": 1500, "num_classes": 2, "max_len": 128}
  assert {k: (v.shape, v.dtype) for k, v in ds.example.items()} == {
      "tokens": ((1, 128), np.int32), "label": ((1,), np.int32)}
  for src in (ds.train, ds.eval["test"]):
    labels = src.arrays["label"]
    assert set(np.unique(labels)) == {0, 1} and 0.35 < labels.mean() < 0.65  # a random subset, both classes
    toks = src.arrays["tokens"]
    assert (toks[:, 0] != 0).all() and not np.isin(toks, [1, 2]).any()  # no empty rows, no BOS/EOS
  decoded = ds.info["tokenizer"].decode(ds.train.arrays["tokens"][:50])
  assert not any("<br" in s for s in decoded) and all(s == s.lower() for s in decoded)
  assert 0 < ds.info["truncated"]["train"] < 1500


def test_imdb_encoded_arrays_are_cached(data_dir, cache, small_imdb, monkeypatch):
  monkeypatch.setattr(tokenizer.Tokenizer, "encode_padded",
                      lambda *a, **k: pytest.fail("re-encoded despite the .npy cache"))
  again = datasets.build_dataset(_config("imdb", data_dir, cache, **SMALL_IMDB))
  np.testing.assert_array_equal(again.train.arrays["tokens"], small_imdb.train.arrays["tokens"])
  assert list((cache / "imdb").glob("enc-*.npy"))


def test_imdb_tfds_route_gives_the_same_format(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    c = _config("imdb", tmp_path, tmp_path / "c", vocab_size=20, max_len=16)
    c.data_source = "tfds"
    ds = datasets.build_dataset(c)
  assert ds.info["source"] == "tfds" and len(ds.train) == 40
  assert {k: (v.shape, v.dtype) for k, v in ds.example.items()} == {
      "tokens": ((1, 16), np.int32), "label": ((1,), np.int32)}


def _write_imdb(path, records):
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
  path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def _toy_imdb():
  return [{"split": s, "label": i % 2, "text": f"review {i} was {'good' if i % 2 else 'bad'}<br />ok"}
          for s in ("train", "test") for i in range(20)]


@pytest.mark.parametrize("mutate,err,match", [
    (lambda r: r[:3] + ["{not json"] + r[3:], DataError, r"line 4 is not JSON"),
    (lambda r: [{"split": "train", "text": "x"}] + r, DataError, r"line 1: record lacks field\(s\) \['label'\]"),
    (lambda r: [dict(r[0], split="dev")] + r, DataError, r"split 'dev'; expected 'train' or 'test'"),
    (lambda r: [dict(r[0], label=2)] + r, DataError, r"imdb:train: labels must lie in \[0, 1\], found \[0, 2\]"),
    (lambda r: [dict(r[0], text="<br /> ")] + r, DataError, r"imdb:train: 1 empty review\(s\).*skip_empty"),
    (lambda r: [x for x in r if x["split"] == "train"], DataError, r"imdb:test has no records"),
])
def test_imdb_bad_files(tmp_path, mutate, err, match):
  _write_imdb(tmp_path / "imdb.jsonl.gz", mutate(_toy_imdb()))
  with pytest.raises(err, match=match):
    datasets.build_dataset(_config("imdb", tmp_path, tmp_path / "c", vocab_size=30, max_len=8))


def test_imdb_missing_file(tmp_path):
  c = _config("imdb", tmp_path, tmp_path / "c")
  c.data_source = "local"
  with pytest.raises(ConfigError, match=r"config.data_dir: .* holds no imdb.jsonl.gz"):
    datasets.build_dataset(c)


def test_clean_review():
  assert text.clean_review("A<br /><br/>B<BR>C  \n D") == "A B C D"
  assert text.clean_review(b"caf\xc3\xa9<br />") == "café"
