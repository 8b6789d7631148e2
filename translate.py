r"""Translate with a trained workdir, or score it: BLEU of greedy and beam search on Multi30k test2016.

  python translate.py --config=configs/multi30k_transformer.py --workdir=runs/multi30k_transformer \
      --sentence "A man rides a bike."                       # one translation per line on stdout
  python translate.py --config=... --workdir=... --input sentences.txt --beam_size=4 --alpha=0.6
  python translate.py --config=... --workdir=...           # BLEU (no --sentence / --input)
  python translate.py --config=... --workdir=... --beam_sizes=4 --alpha=0.6 --average_last=5 --split=val

Writes ``<workdir>/bleu_<split>.json``; the logic is
``aila_jax.tasks.seq2seq.bleu_from_workdir``, importable from a notebook.
"""

import json
import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

_CONFIG = config_flags.DEFINE_config_file("config", None, "The workdir's training config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's folder.", required=True)
_SPLIT = flags.DEFINE_string("split", "test2016", "'test2016' or 'val'.")
_BEAMS = flags.DEFINE_list("beam_sizes", ["1", "4"], "Beam sizes (1 = greedy).")
_ALPHA = flags.DEFINE_float("alpha", 0.6, "Length penalty of beam search.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Sentences per decoding call.")
_AVERAGE = flags.DEFINE_integer("average_last", 0, "Average the last N checkpoints (0: latest only).")
_SENTENCE = flags.DEFINE_multi_string("sentence", [], "A source sentence to translate (repeatable).")
_INPUT = flags.DEFINE_string("input", None, "A file of source sentences, one per line, to translate.")
_BEAM = flags.DEFINE_integer("beam_size", 4, "Beam size for --sentence / --input (1 = greedy).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from aila_jax import cli  # pylint: disable=g-import-not-at-top
  from aila_jax.tasks import seq2seq  # pylint: disable=g-import-not-at-top
  cli.quiet_logs()
  sentences = list(_SENTENCE.value)
  if _INPUT.value:
    path = pathlib.Path(_INPUT.value)
    if not path.is_file():
      cli.fail(f"--input: {path} is not a file (expected source sentences, one per line)")
    sentences += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sentences:
      cli.fail(f"--input: {path} holds no non-empty line")
  if sentences:
    for line in cli.run_or_exit(seq2seq.translate_from_workdir, _CONFIG.value, _WORKDIR.value, sentences,
                                beam_size=_BEAM.value, alpha=_ALPHA.value, batch_size=_BATCH.value,
                                average_last=_AVERAGE.value):
      print(line)
    return
  result = cli.run_or_exit(
      seq2seq.bleu_from_workdir, _CONFIG.value, _WORKDIR.value, split=_SPLIT.value, beam_sizes=[int(b) for b in _BEAMS.value],
      alpha=_ALPHA.value, batch_size=_BATCH.value, average_last=_AVERAGE.value)
  print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "examples"} if isinstance(v, dict) else v)
                    for k, v in result.items()}, indent=2))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  from aila_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=_cli.parse_flags_or_exit)
