r"""Multi30k En->De: train configs/multi30k_transformer.py under a time budget, then BLEU vs training time.

One run on one GPU: trains with the library's trainer (a timer sends SIGTERM at
``--train_seconds``; the trainer saves a checkpoint and stops), then decodes
test2016 greedily at every kept checkpoint and with beam 4 (alpha 0.6) at the
last one and on the average of the last checkpoints, and writes
``--out/multi30k_bleu.json`` (device, config, seconds, BLEU per checkpoint).
BLEU: sacrebleu corpus BLEU, cased, 13a tokenization, detokenized output
against the raw test2016 references; the last checkpoint is also scored on
the val split (beam 4), the number to choose recipes by.

  AILA_DATA_DIR=../shared/data python bench/multi30k_bleu.py --out=bench/results \
      --train_seconds=330 --num_train_steps=6000
"""

import json
import os
import pathlib
import signal
import sys
import threading
import time

from absl import app, flags, logging

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench.results_io import save_result  # noqa: E402  (JSON summary + .curves.npz for long tables)

_OUT = flags.DEFINE_string("out", "bench/results", "Folder for the JSON result.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/multi30k_bleu", "Training folder (emptied first).")
_TRAIN_SECONDS = flags.DEFINE_float("train_seconds", 330.0, "Stop training after this many seconds.")
_STEPS = flags.DEFINE_integer("num_train_steps", 6000, "config.num_train_steps.")
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every", 1000, "config.checkpoint_every.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 2000, "config.eval_every.")
_AVERAGE = flags.DEFINE_integer("average_last", 3, "Also beam-decode the average of the last N checkpoints.")
_LIMIT = flags.DEFINE_integer("limit", 0, "Decode only the first N test sentences (0: all; for smoke tests).")
_GREEDY_EVERY = flags.DEFINE_integer("greedy_every", 0, "Greedy BLEU only at checkpoints whose step divides "
                                     "by this, and the last (0: every checkpoint).")
_CACHE = flags.DEFINE_string("cache_dir", None, "AILA_CACHE_DIR for the vocabulary (one per parallel run).")
_OVERRIDES = flags.DEFINE_list("set", [], "key=value config overrides, e.g. model.preset=transformer_tiny.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if _CACHE.value:
    os.environ["AILA_CACHE_DIR"] = _CACHE.value
  import shutil  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top

  from aila_jax import models  # pylint: disable=g-import-not-at-top
  from aila_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from aila_jax.tasks import seq2seq  # pylint: disable=g-import-not-at-top
  from aila_jax.train import averaging, checkpoint, config_check, trainer  # pylint: disable=g-import-not-at-top
  from configs import multi30k_transformer  # pylint: disable=g-import-not-at-top

  config = multi30k_transformer.get_config()
  config.num_train_steps = _STEPS.value
  config.checkpoint_every = _CKPT_EVERY.value
  config.eval_every = _EVAL_EVERY.value
  config.keep_checkpoints = 100
  for item in _OVERRIDES.value:
    config_check.apply_override(config, item)
  workdir = pathlib.Path(_WORKDIR.value)
  shutil.rmtree(workdir, ignore_errors=True)

  saved: dict[int, float] = {}
  start = [None]
  original_save = checkpoint.Checkpointer.save

  def timed_save(self, step, tree, data_state):
    original_save(self, step, tree, data_state)
    saved[int(step)] = time.perf_counter() - start[0]

  checkpoint.Checkpointer.save = timed_save
  timer = threading.Timer(_TRAIN_SECONDS.value, lambda: os.kill(os.getpid(), signal.SIGTERM))
  start[0] = time.perf_counter()
  timer.start()
  try:
    result = trainer.train_and_evaluate(config, workdir)
  finally:
    timer.cancel()
    checkpoint.Checkpointer.save = original_save
  train_wall = time.perf_counter() - start[0]
  print(f"training stopped at step {result['step']} after {train_wall:.1f} s "
        f"(preempted={result.get('preempted', False)})", flush=True)

  dataset = datasets.build_dataset(config)
  model = models.get_model(config.model_name, dtype=trainer.DTYPES[config.dtype],
                           **{**dataset.model_kwargs, **dict(config.model)})
  max_decode_len = int(dataset.model_kwargs["max_len"])
  limit = _LIMIT.value or None
  greedy = seq2seq.make_decode_fn(model, max_decode_len=max_decode_len, beam_size=1)
  beam4 = seq2seq.make_decode_fn(model, max_decode_len=max_decode_len, beam_size=4, alpha=0.6)
  metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  report = {
      "device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
      "jax": jax.__version__, "config": json.loads(config.to_json_best_effort()),
      "train_wall_seconds": train_wall, "final_step": result["step"],
      "preempted": bool(result.get("preempted", False)),
      "bleu": "sacrebleu corpus BLEU, cased, 13a, detokenized, test2016 (1,000 sentences); "
              "*_lowercase: the same outputs scored case-insensitively",
      "checkpoints": [], "averaged": None,
      "eval_rows": [m for m in metrics if any(k.startswith("eval") for k in m)],
      "last_train_row": [m for m in metrics if "train/loss" in m][-1:],
  }
  out_dir = pathlib.Path(_OUT.value)
  out_dir.mkdir(parents=True, exist_ok=True)

  def dump():  # after every result, so that a run cut short keeps what it measured
    save_result(out_dir / "multi30k_bleu.json", report, indent=2, ensure_ascii=False)

  steps = averaging.checkpoint_steps(workdir)
  for step in reversed(steps):  # the last checkpoint first
    _, state, _ = checkpoint.load_checkpoint(workdir, step)
    variables = {"params": state["params"]}
    row = {"step": step, "train_seconds_at_save": saved.get(step)}
    if step != steps[-1] and _GREEDY_EVERY.value and step % _GREEDY_EVERY.value:
      continue
    out = seq2seq.evaluate_bleu(greedy, variables, dataset, split="test2016", batch_size=500, limit=limit)
    row["greedy_bleu"], row["greedy_decode_seconds"] = out["bleu"], out["seconds"]
    row["greedy_bleu_lowercase"] = out["bleu_lowercase"]
    if step == steps[-1]:
      out = seq2seq.evaluate_bleu(beam4, variables, dataset, split="test2016", batch_size=250, limit=limit)
      row["beam4_bleu"], row["beam4_decode_seconds"] = out["bleu"], out["seconds"]
      row["beam4_bleu_lowercase"] = out["bleu_lowercase"]
      row["examples"] = list(zip(dataset.info["sources"]["test2016"][:5], out["predictions"][:5],
                                 dataset.info["references"]["test2016"][:5]))
      out = seq2seq.evaluate_bleu(beam4, variables, dataset, split="val", batch_size=250, limit=limit)
      row["val_beam4_bleu"] = out["bleu"]  # for choosing among recipes without looking at test2016
    print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
    report["checkpoints"].append(row)
    dump()
    n = min(_AVERAGE.value, len(steps))
    if step == steps[-1] and n > 1:
      variables = {"params": averaging.average_checkpoints(workdir, n)}
      out = seq2seq.evaluate_bleu(beam4, variables, dataset, split="test2016", batch_size=250, limit=limit)
      report["averaged"] = {"average_last": n, "steps": steps[-n:], "beam4_bleu": out["bleu"],
                            "beam4_bleu_lowercase": out["bleu_lowercase"]}
      print(json.dumps(report["averaged"]), flush=True)
      dump()
  print(f"wrote {out_dir / 'multi30k_bleu.json'}", flush=True)


if __name__ == "__main__":
  app.run(main)
