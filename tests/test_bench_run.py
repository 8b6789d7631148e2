"""bench/run.py: the one-command benchmark suite; its CPU smoke run (the real bench/attention.py) and its
failure handling (a failing or overrunning script is reported, the others still run, the exit status says so)."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from bench import run as bench_run
from helpers import REPO

RESULTS = REPO / "bench" / "results"


def test_cpu_quick_suite_runs_attention_writes_json_and_figures(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  # A stored GPU result placed in OUT: the figures must be drawn from OUT (no --results: nothing else).
  shutil.copy(RESULTS / "transformer_NVIDIA-H100-80GB-HBM3.json", out)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "bench.run", "--suite", "quick", "--out", str(out), "--results", ""],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "CPU smoke" in proc.stdout and "attention: ok" in proc.stdout
  assert "attention: bench/attention.py --out" in proc.stdout and str(REPO) not in proc.stdout  # a portable log
  result = json.loads((out / "attention_cpu.json").read_text())
  assert result["device"].lower() == "cpu" and "--smoke" in result["command"]
  (shape,) = result["shapes"]
  assert shape["shape"] == [1, 16, 2, 8] and shape["ours_dispatch"] == "xla"
  for name in ("ours_core", "ours_core_xla", "ours_module", "flax_module"):
    assert 0 < shape["results"][name]["ms"] < 1e3, name
  assert shape["rel_err_ours_vs_xla"] < 1e-2  # our dispatched output equals our einsum path on the CPU
  index = json.loads((out / "figures" / "figures.json").read_text())
  assert index["peer_ratios.png"]["sources"] == [str(out / "transformer_NVIDIA-H100-80GB-HBM3.json")]
  assert (out / "figures" / "peer_ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "missing" in index["bleu_vs_time.png"] and not (out / "figures" / "bleu_vs_time.png").exists()
  assert "attention          ok" in proc.stdout  # the summary table
  assert (out / "logs" / "attention.log").read_text().count("wrote") == 1


def test_failing_and_overrunning_scripts_are_reported_and_the_others_run(tmp_path, monkeypatch, capsys):
  benches = [bench_run.Bench("boom", "x", [], 30), bench_run.Bench("slow", "x", [], 1.5),
             bench_run.Bench("fine", "x", [], 30), bench_run.Bench("needs_data", "x", [], 30, data=("nope.npz",)),
             bench_run.Bench("quiet", "x", [], 30)]
  scripts = {
      "boom": "import sys; print('about to fail'); sys.exit(3)",
      "slow": "import time; print('started', flush=True); time.sleep(60)",
      "fine": "import json, sys; open(sys.argv[1] + '/fine_cpu.json', 'w').write(json.dumps({'device': 'cpu'}))",
      "needs_data": "raise SystemExit('must not run')",
      "quiet": "print('exits 0 and writes nothing')",
  }
  monkeypatch.setattr(bench_run, "plan", lambda suite, gpu, only=None: benches)
  monkeypatch.setattr(bench_run, "command", lambda b, out, data, ram_peer: [sys.executable, "-c", scripts[b.name],
                                                                           str(out)])
  code = bench_run.main(["--suite", "quick", "--out", str(tmp_path), "--results", "", "--data_dir", str(tmp_path)])
  text = capsys.readouterr().out
  assert code == 1
  assert "boom: failed (exit 3)" in text and "slow: timeout (> 2 s)" in text and "fine: ok" in text
  assert "needs_data: skipped: nope.npz not in --data_dir" in text and "must not run" not in text
  assert "quiet: failed (no JSON written)" in text and "FAILED: boom, slow, quiet" in text
  assert (tmp_path / "fine_cpu.json").exists() and "about to fail" in (tmp_path / "logs" / "boom.log").read_text()
  table = text[text.index("benchmark "):]
  assert "fine               ok" in table and "fine_cpu.json" in table
  record = json.loads((tmp_path / "bench_run.json").read_text())  # the run's own summary, kept beside the JSONs
  assert record["failed"] == ["boom", "slow", "quiet"] and record["suite"] == "quick"
  status = {r["name"]: r["status"] for r in record["rows"]}
  assert status == {"boom": "failed (exit 3)", "slow": "timeout (> 2 s)", "fine": "ok", "needs_data": "skipped",
                    "quiet": "failed (no JSON written)", "figures": "ok"}
  fine = next(r for r in record["rows"] if r["name"] == "fine")
  assert fine["json"] == ["fine_cpu.json"] and fine["log"] == "logs/fine.log" and 0 < fine["seconds"] < 30
  assert 1.5 < record["total_seconds"] < 120


def test_plans():
  quick = bench_run.plan("quick", gpu=True)
  assert [b.name for b in quick] == ["attention", "transformer", "depth", "ela_time", "dla", "ram"]
  assert sum(b.budget_s for b in quick) <= 560  # one device call of 10 minutes, with start-up and figures
  assert [b.name for b in bench_run.plan("quick", gpu=False)] == ["attention"]
  assert [b.name for b in bench_run.plan("quick", gpu=False, only=["depth", "ram"])] == ["depth", "ram"]
  with pytest.raises(ValueError, match="needs a GPU"):
    bench_run.plan("full", gpu=False)
  with pytest.raises(ValueError, match=r"--only: \['nope'\]"):
    bench_run.plan("quick", gpu=True, only=["nope"])
  for b in bench_run.QUICK + bench_run.FULL + bench_run.CPU:  # every script exists and takes --out
    assert (REPO / "bench" / f"{b.script}.py").exists(), b.script
    assert any(a.startswith("--out") for a in b.args), b.name
