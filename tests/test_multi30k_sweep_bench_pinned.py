"""bench/multi30k_sweep.py's bookkeeping pinned: each variant's command (memory share, eval cadence, overrides),
and the merged row taken from the last checkpoint (multi30k_bleu.py writes it first), the greedy curve in step
order, and a failed variant's log. The variants' processes are stand-ins: nothing is trained or started."""
import sys
import types

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import multi30k_sweep as sweep  # noqa: E402
from bench.results_io import load_result, save_result  # noqa: E402


def _ckpt(step, secs, greedy, last=False):
  row = {"step": step, "train_seconds_at_save": secs, "greedy_bleu": greedy, "greedy_bleu_lowercase": greedy + 0.5}
  if last:
    row.update(beam4_bleu=greedy + 1, beam4_bleu_lowercase=greedy + 1.5, val_beam4_bleu=greedy + 2,
               examples=[["a", "b", "c"]])
  return row


def test_sweep_rows_come_from_the_last_checkpoint(monkeypatch, tmp_path):
  started = {}

  class Proc:
    def __init__(self, cmd, stdout, stderr, cwd, env):
      args = dict(a[2:].split("=", 1) for a in cmd[2:])
      name = args["out"].split("/")[-2]
      started[name] = (args, env["XLA_PYTHON_CLIENT_MEM_FRACTION"])
      stdout.write(f"log of {name}\n")
      if name == "tiny":  # as multi30k_bleu.py writes it: the last checkpoint first
        res = {"device": "NVIDIA H100", "final_step": 3100, "train_wall_seconds": 35.0,
               "checkpoints": [_ckpt(3000, 30.0, 20.0, last=True), _ckpt(2000, 20.0, 15.0), _ckpt(1000, 10.0, 10.0)],
               "averaged": {"average_last": 3, "beam4_bleu": 22.5}, "eval_rows": [], "config": {"x": 1}}
        save_result(pathlib_join(args["out"], "multi30k_bleu.json"), res)

    def wait(self):
      return 0

  monkeypatch.setattr(sweep, "subprocess", types.SimpleNamespace(Popen=Proc, STDOUT=-2))
  monkeypatch.setattr(sys, "argv", ["sweep", f"--out={tmp_path / 'out'}", f"--workdir={tmp_path / 'w'}",
                                    "--variants=tiny,small", "--checkpoint_every=500", "--set=a.b=1"])
  sweep.main()
  assert started["tiny"][1] == started["small"][1] == "0.450"  # 0.9 / 2 variants
  args = started["tiny"][0]
  assert args["eval_every"] == "2000" and args["checkpoint_every"] == "500"
  assert args["set"].split(",") == sweep.VARIANTS["tiny"] + ["a.b=1"]
  report = load_result(tmp_path / "out" / "multi30k_sweep_NVIDIA-H100.json")
  row = report["variants"]["tiny"]
  assert (row["final_step"], row["train_wall_seconds"], row["returncode"]) == (3100, 35.0, 0)
  assert (row["greedy_bleu"], row["greedy_bleu_lowercase"]) == (20.0, 20.5)
  assert (row["beam4_bleu"], row["beam4_bleu_lowercase"], row["val_beam4_bleu"]) == (21.0, 21.5, 22.0)
  assert row["averaged"]["beam4_bleu"] == 22.5
  assert [list(c) for c in row["greedy_curve"]] == [[1000, 10.0, 10.0], [2000, 20.0, 15.0], [3000, 30.0, 20.0]]
  assert "final_step" not in report["variants"]["small"]
  assert report["variants"]["small"]["log_tail"] == "log of small\n"
  assert report["device"] == "NVIDIA H100" and report["wall_seconds"] >= 0


def pathlib_join(folder, name):
  import pathlib  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(folder)
  path.mkdir(parents=True, exist_ok=True)
  return path / name
