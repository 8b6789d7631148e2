"""Tokenizer behaviour pinned against hand-written ids: padding, truncation, EOS, decoding, vocab checks."""
import hashlib
import io

import numpy as np
import pytest

from aila_jax.data import tokenizer
from aila_jax.errors import DataError

PAD, BOS, EOS = tokenizer.PAD_ID, tokenizer.BOS_ID, tokenizer.EOS_ID


def _letters_tok(letters="abcde", vocab_size=15):
  """A BPE vocabulary in which every one-letter word is one piece '▁x' (4 specials + 6 chars + 5 merges)."""
  rng = np.random.default_rng(0)
  texts = [" ".join(rng.choice(list(letters), rng.integers(1, 6))) for _ in range(100)]
  return tokenizer.Tokenizer(tokenizer.train_model(texts, vocab_size=vocab_size))


@pytest.fixture(scope="module")
def tok():
  return _letters_tok()


@pytest.fixture(scope="module")
def w(tok):
  """word -> its id, read from the vocabulary's own piece table."""
  pieces = tok.id_to_piece(range(tok.vocab_size))
  return {p[1:]: i for i, p in enumerate(pieces) if p.startswith("\u2581") and len(p) == 2}


def test_vocabulary_has_one_piece_per_word(tok, w):
  # the premise of the hand-written ids below
  assert tok.vocab_size == 15 and sorted(w) == list("abcde")
  assert tok.encode(["a b c d e"]) == [[w[c] for c in "abcde"]]


def test_encode_padded_exact_ids(tok, w):
  # right-padding with 0, EOS right after the last piece, no BOS
  ids, n = tok.encode_padded(["a b c", "e"], max_len=5)
  np.testing.assert_array_equal(ids, [[w["a"], w["b"], w["c"], EOS, PAD], [w["e"], EOS, PAD, PAD, PAD]])
  assert n == 0


def test_without_eos_truncation_keeps_max_len_pieces(tok, w):
  # add_eos=False: a row holds max_len pieces (no column is kept free for an EOS)
  ids, n = tok.encode_padded(["a b c d e", "a b c", "d"], max_len=3, add_eos=False)
  np.testing.assert_array_equal(ids, [[w["a"], w["b"], w["c"]], [w["a"], w["b"], w["c"]], [w["d"], PAD, PAD]])
  assert n == 1  # only the first text lost pieces


def test_truncated_count_excludes_an_exact_fit(tok, w):
  # a text of exactly max_len - 1 pieces fits whole with its EOS: not counted as truncated
  ids, n = tok.encode_padded(["a b c"], max_len=4)
  np.testing.assert_array_equal(ids, [[w["a"], w["b"], w["c"], EOS]])
  assert n == 0
  ids, n = tok.encode_padded(["a b c d"], max_len=4)
  np.testing.assert_array_equal(ids, [[w["a"], w["b"], w["c"], EOS]])
  assert n == 1


def test_decode_cuts_at_first_eos_and_drops_bos_and_pad(tok, w):
  # ids after the first EOS (e.g. a model's continuation) must not reach the decoded string
  rows = np.array([[w["a"], EOS, w["b"], w["c"]], [BOS, w["d"], w["e"], PAD], [w["c"], PAD, w["a"], EOS]])
  assert tok.decode(rows) == ["a", "d e", "c a"]


def test_texts_digest_includes_boundaries():
  # the digest keys the vocabulary cache: other splits of the same characters are other texts
  assert tokenizer.texts_digest(["ab", "c"]) != tokenizer.texts_digest(["a", "bc"])
  assert tokenizer.texts_digest(["abc"]) != tokenizer.texts_digest(["abc", ""])
  assert tokenizer.texts_digest([]) == hashlib.sha256(b"").hexdigest()


def test_check_vocab_size_must_match_exactly(tok):
  # a larger vocabulary than expected is as wrong as a smaller one (embedding rows would not match)
  tokenizer.check_vocab(tok, vocab_size=15, sha256=tok.sha256)
  for size in (14, 16):
    with pytest.raises(DataError, match=rf"has 15 pieces; expected {size}"):
      tokenizer.check_vocab(tok, vocab_size=size)


def test_workdir_refuses_another_vocab_of_the_same_size(tmp_path, tok):
  # the sha256 check alone must catch a same-sized but different vocabulary
  other = _letters_tok("fghij")
  assert other.vocab_size == tok.vocab_size and other.sha256 != tok.sha256
  tokenizer.check_workdir_vocab(tmp_path, {"tokenizer": tok})
  with pytest.raises(DataError, match=r"were trained with vocabulary sha256"):
    tokenizer.check_workdir_vocab(tmp_path, {"tokenizer": other})


def test_renamed_special_pieces_are_refused():
  # right ids but other piece names (e.g. '[PAD]') is not the library's vocabulary either
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c d e"] * 20), model_writer=buf, vocab_size=10,
                                 pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", minloglevel=2)
  with pytest.raises(DataError, match=r"special ids .* with pieces \('\[PAD\]'"):
    tokenizer.Tokenizer(buf.getvalue())


def test_max_sentences_is_a_seeded_random_sample():
  # the first 30 texts hold only a, b, c: a prefix could not train 15 pieces, a seeded sample can
  texts = ["a b c"] * 30 + ["d e"] * 30
  pick = np.sort(np.random.default_rng(0).choice(60, 10, replace=False))  # the documented draw
  assert pick.min() < 30 <= pick.max()
  got = tokenizer.train_model(texts, vocab_size=15, max_sentences=10, seed=0)
  want = tokenizer.train_model([texts[i] for i in pick], vocab_size=15)
  assert got == want
  assert tokenizer.UNK_ID not in tokenizer.Tokenizer(got).encode(["d e"])[0]
