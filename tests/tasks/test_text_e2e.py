"""End to end on real text: train a tiny Transformer on Multi30k / IMDB subsets, BLEU from the workdir."""
import json

import pytest

from aila_jax import models
from aila_jax.errors import ConfigError, DataError
from aila_jax.tasks import seq2seq
from aila_jax.train import train_and_evaluate


def _require(name):
  assert name in models.MODELS, f"model {name!r} is not registered in aila_jax.models.MODELS"


def _mt_config(data_dir, cache, **kwargs):
  from configs import multi30k_transformer  # pylint: disable=g-import-not-at-top
  config = multi30k_transformer.get_config()
  config.data_dir = str(data_dir)
  config.progress = False
  config.dataset_kwargs.update(dict(vocab_dir=str(cache), max_train_examples=1000, max_eval_examples=32,
                                    vocab_size=500, max_len=48, **kwargs))
  config.model.preset = "transformer_tiny"
  for key in ("d_model", "num_heads", "d_ff", "num_encoder_layers", "num_decoder_layers"):
    config.model[key] = None  # the preset's sizes
  config.model.dropout_rate = 0.1
  config.dtype = "float32"
  config.batch_size, config.eval_batch_size, config.num_train_steps = 16, 32, 8
  config.schedule.warmup_steps = 4
  config.log_every, config.eval_every, config.checkpoint_every = 4, 0, 4
  return config


def _correct_count(result):
  """eval/accuracy times eval/count: the number of correct predictions, a whole number."""
  return result["eval/accuracy"] * result["eval/count"]


def _whole(x):
  return abs(x - round(x)) < 1e-6


def test_multi30k_train_then_bleu(data_dir, tmp_path):
  _require("transformer")
  config = _mt_config(data_dir, tmp_path / "cache")
  workdir = tmp_path / "run"
  result = train_and_evaluate(config, workdir)
  assert result["step"] == 8 and 0 < result["eval/loss"] < 10
  assert _whole(_correct_count(result))  # accuracy = correct tokens / count
  assert "eval_val/loss" in result and result["eval/count"] > 32  # tokens of the 32 test2016 pairs
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert any("train/nll" in r for r in rows)
  out = seq2seq.bleu_from_workdir(config, workdir, beam_sizes=(1, 2), batch_size=8, limit=8,
                                  max_decode_len=8)
  assert out["step"] == 8 and set(out) >= {"beam1", "beam2"}
  assert out["beam1"]["num_sentences"] == 8 and 0.0 <= out["beam1"]["bleu"] <= 100.0
  assert (workdir / "bleu_test2016.json").exists() and (workdir / "vocab.model").exists()
  # a source sentence given as text translates as the same sentence read from the dataset does
  from aila_jax.data import text  # pylint: disable=g-import-not-at-top
  first_source = text.load_multi30k_pairs(data_dir / "multi30k", "test2016", "en", "de")[0][0]
  got = seq2seq.translate_from_workdir(config, workdir, [first_source, "A man rides a bike."], beam_size=2,
                                       max_decode_len=8)
  assert len(got) == 2 and got[0] == out["beam2"]["examples"][0]
  with pytest.raises(ConfigError, match="beam size: expected an int >= 1"):
    seq2seq.translate_from_workdir(config, workdir, ["A dog."], beam_size=0)
  other = _mt_config(data_dir, tmp_path / "cache")
  other.dataset_kwargs.vocab_size = 400  # another vocabulary than the checkpoint's
  with pytest.raises(DataError, match=r"were trained with vocabulary sha256 .* of 500 pieces"):
    seq2seq.bleu_from_workdir(other, workdir, beam_sizes=(1,), limit=4)


def test_imdb_train(data_dir, tmp_path):
  _require("transformer_classifier")
  from configs import imdb_transformer  # pylint: disable=g-import-not-at-top
  config = imdb_transformer.get_config()
  config.data_dir, config.progress = str(data_dir), False
  config.dataset_kwargs.update(dict(vocab_dir=str(tmp_path), max_train_examples=400, max_eval_examples=64,
                                    vocab_size=800, max_len=32))
  config.model.preset = "transformer_tiny"
  config.batch_size, config.eval_batch_size, config.num_train_steps = 16, 64, 6
  config.schedule.warmup_steps = 2
  config.log_every, config.eval_every, config.checkpoint_every = 3, 0, 6
  result = train_and_evaluate(config, tmp_path / "run")
  assert result["step"] == 6 and result["eval/count"] == 64
  assert _whole(_correct_count(result))  # a whole number of the 64 reviews


def test_configs_build_their_models():
  from configs import imdb_transformer, multi30k_transformer  # pylint: disable=g-import-not-at-top
  from aila_jax.train import config_check  # pylint: disable=g-import-not-at-top
  for module, kwargs in ((multi30k_transformer, dict(vocab_size=8000, max_len=64)),
                         (imdb_transformer, dict(vocab_size=16000, num_classes=2, max_len=256))):
    config = module.get_config()
    config_check.check_config(config)
    _require(config.model_name)
    model = models.get_model(config.model_name, **kwargs, **config.model)
    assert model.vocab_size == kwargs["vocab_size"]
