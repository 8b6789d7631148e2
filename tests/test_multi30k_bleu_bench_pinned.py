"""bench/multi30k_bleu.py's bookkeeping pinned: the seconds since the start of training at each saved
checkpoint, the training wall-clock, which checkpoints get greedy BLEU (every --greedy_every-th and the last),
beam 4 and val BLEU on the last only, and the average of the last min(N, saved) checkpoints. Training, model,
data and decoding are stand-ins: nothing is compiled or trained."""
import json
import sys
import types

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))


@pytest.mark.parametrize("average_last,averaged_steps", [(5, [1000, 2000, 3000]), (2, [2000, 3000])])
def test_checkpoint_rows_times_and_average(monkeypatch, tmp_path, average_last, averaged_steps):
  from absl import flags  # pylint: disable=import-outside-toplevel
  from bench import multi30k_bleu as mb  # pylint: disable=import-outside-toplevel
  from aila_jax import models  # pylint: disable=import-outside-toplevel
  from aila_jax.data import datasets  # pylint: disable=import-outside-toplevel
  from aila_jax.tasks import seq2seq  # pylint: disable=import-outside-toplevel
  from aila_jax.train import averaging, checkpoint, trainer  # pylint: disable=import-outside-toplevel

  workdir = tmp_path / "work"
  monkeypatch.setattr(checkpoint.Checkpointer, "save", lambda self, step, tree, data_state: None)

  def train(config, wd):
    assert config.num_train_steps == 4000 and config.checkpoint_every == 1000 and config.eval_every == 2000
    wd.mkdir(parents=True)
    (wd / "metrics.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [{"step": 10, "train/loss": 3.0}, {"step": 2000, "eval/loss": 2.0},
                                          {"step": 3000, "train/loss": 1.0}]))
    for step in (1000, 2000, 3000):
      checkpoint.Checkpointer.save(None, step, {}, None)  # the benchmark's timed wrapper
    return {"step": 3000, "preempted": True}
  monkeypatch.setattr(trainer, "train_and_evaluate", train)
  clock = iter([100.0, 110.0, 120.0, 130.0, 135.0])  # start, 3 saves, end of training
  monkeypatch.setattr(mb, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  monkeypatch.setattr(mb, "threading", types.SimpleNamespace(Timer=lambda s, f: types.SimpleNamespace(
      start=lambda: None, cancel=lambda: None)))
  info = {"sources": {"test2016": ["s"] * 6}, "references": {"test2016": ["r"] * 6}}
  monkeypatch.setattr(datasets, "build_dataset",
                      lambda c: types.SimpleNamespace(model_kwargs={"max_len": 7}, info=info))
  monkeypatch.setattr(models, "get_model", lambda *a, **k: "model")
  monkeypatch.setattr(seq2seq, "make_decode_fn",
                      lambda model, max_decode_len, beam_size, alpha=None: ("decode", beam_size, max_decode_len))
  calls = []

  def bleu(fn, variables, dataset, split, batch_size, limit):
    calls.append((fn[1], variables["params"], split, limit))
    p = variables["params"]
    base = 90.0 if "avg" in p else p["step"] / 100
    b = base + {(1, "test2016"): 0.0, (4, "test2016"): 1.0, (4, "val"): 2.0}[(fn[1], split)]
    return {"bleu": b, "bleu_lowercase": b + 0.5, "seconds": 0.1, "predictions": ["p"] * 6}
  monkeypatch.setattr(seq2seq, "evaluate_bleu", bleu)
  monkeypatch.setattr(averaging, "checkpoint_steps", lambda wd: [1000, 2000, 3000])
  monkeypatch.setattr(averaging, "average_checkpoints", lambda wd, n: {"avg": n})
  monkeypatch.setattr(checkpoint, "load_checkpoint", lambda wd, step: (None, {"params": {"step": step}}, None))
  out = tmp_path / "out"
  try:
    flags.FLAGS(["multi30k_bleu", f"--out={out}", f"--workdir={workdir}", "--num_train_steps=4000",
                 "--greedy_every=2000", f"--average_last={average_last}", f"--cache_dir={tmp_path / 'cache'}"])
    mb.main([])
  finally:
    flags.FLAGS.unparse_flags()
  report = json.loads((out / "multi30k_bleu.json").read_text())
  assert report["train_wall_seconds"] == pytest.approx(35.0) and report["final_step"] == 3000
  assert report["preempted"] is True
  rows = report["checkpoints"]
  assert [r["step"] for r in rows] == [3000, 2000]  # 1000 is not a multiple of --greedy_every
  assert [r["train_seconds_at_save"] for r in rows] == pytest.approx([30.0, 20.0])
  assert [r["greedy_bleu"] for r in rows] == [30.0, 20.0] and rows[0]["greedy_bleu_lowercase"] == 30.5
  assert (rows[0]["beam4_bleu"], rows[0]["beam4_bleu_lowercase"], rows[0]["val_beam4_bleu"]) == (31.0, 31.5, 32.0)
  assert "beam4_bleu" not in rows[1] and "val_beam4_bleu" not in rows[1]
  n = len(averaged_steps)  # min(--average_last, checkpoints saved), the last n of them
  assert report["averaged"] == {"average_last": n, "steps": averaged_steps, "beam4_bleu": 90.0 + 1.0,
                                "beam4_bleu_lowercase": 91.5}
  assert [r["step"] for r in report["eval_rows"]] == [2000] and report["last_train_row"][0]["step"] == 3000
  assert all(c[3] is None for c in calls)  # --limit 0: every sentence
