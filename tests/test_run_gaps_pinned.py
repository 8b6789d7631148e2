"""bench/run.py pinned where the suite tests left gaps: ``--budget_scale`` reaches each script's budget, a
PyTorch-only comparison is skipped without PyTorch, and every data file a script needs is checked (not only the
first). No subprocess: ``run_one`` and the figures are stubbed."""
import json
import sys
import types

import bench
from bench import run as bench_run


def test_why_skip_torch_only_needs_torch_and_nothing_else():
  b = bench_run.Bench("peer", "peer", [], 10, torch_only=True)
  assert bench_run.why_skip(b, data=None, torch_ok=False) == (
      "PyTorch is not installed (this script only compares with a PyTorch original)")
  assert bench_run.why_skip(b, data=None, torch_ok=True) is None
  plain = bench_run.Bench("plain", "plain", [], 10)
  assert bench_run.why_skip(plain, data=None, torch_ok=False) is None


def test_why_skip_checks_every_data_file(tmp_path):
  b = bench_run.Bench("two", "two", [], 10, data=("a.npz", "sub"))
  assert bench_run.why_skip(b, data=None, torch_ok=True) == "no --data_dir (nor $AILA_DATA_DIR) for a.npz, sub"
  assert bench_run.why_skip(b, data=str(tmp_path), torch_ok=True) == f"a.npz, sub not in --data_dir {tmp_path}"
  (tmp_path / "a.npz").write_bytes(b"")
  assert bench_run.why_skip(b, data=str(tmp_path), torch_ok=True) == f"sub not in --data_dir {tmp_path}"
  (tmp_path / "sub").mkdir()
  assert bench_run.why_skip(b, data=str(tmp_path), torch_ok=True) is None
  (tmp_path / "a.npz").unlink()  # only the first one absent
  assert bench_run.why_skip(b, data=str(tmp_path), torch_ok=True) == f"a.npz not in --data_dir {tmp_path}"


def _stub_suite(monkeypatch, benches, budgets):
  monkeypatch.setattr(bench_run, "plan", lambda suite, gpu, only=None: benches)
  monkeypatch.setattr(bench_run, "command", lambda b, out, data, ram_peer: [sys.executable, f"{b.name}.py"])

  def run_one(b, cmd, *, out, budget_s, log, data=None):
    budgets[b.name] = budget_s
    return {"name": b.name, "status": "ok", "seconds": 0.0, "json": []}

  monkeypatch.setattr(bench_run, "run_one", run_one)
  fake = types.ModuleType("bench.figures")
  fake.collect = lambda dirs: []
  fake.Results = lambda x: x
  fake.draw = lambda results, figures: {}
  monkeypatch.setitem(sys.modules, "bench.figures", fake)
  monkeypatch.setattr(bench, "figures", fake, raising=False)


def test_budget_scale_multiplies_each_scripts_budget(tmp_path, monkeypatch, capsys):
  budgets = {}
  _stub_suite(monkeypatch, [bench_run.Bench("a", "a", [], 40), bench_run.Bench("b", "b", [], 100)], budgets)
  code = bench_run.main(["--suite", "quick", "--out", str(tmp_path), "--results", "", "--device", "cpu",
                         "--budget_scale", "0.25"])
  assert code == 0 and budgets == {"a": 10.0, "b": 25.0}
  text = capsys.readouterr().out
  assert "budgets 35 s in total" in text and "(budget 10 s," in text and "(budget 25 s," in text
  assert json.loads((tmp_path / "bench_run.json").read_text())["budget_scale"] == 0.25
  budgets.clear()
  assert bench_run.main(["--suite", "quick", "--out", str(tmp_path), "--results", "", "--device", "cpu"]) == 0
  assert budgets == {"a": 40.0, "b": 100.0}  # the default scale is 1


def test_budget_scale_in_the_listed_commands(tmp_path, monkeypatch, capsys):
  budgets = {}
  _stub_suite(monkeypatch, [bench_run.Bench("a", "a", [], 40)], budgets)
  assert bench_run.main(["--suite", "quick", "--out", str(tmp_path / "o"), "--device", "cpu", "--list",
                         "--budget_scale", "2"]) == 0
  text = capsys.readouterr().out
  assert "budgets 80 s in total" in text and f"{'a':18s} {80:6.0f} s  a.py" in text
  assert budgets == {} and not (tmp_path / "o").exists()  # --list runs nothing and writes nothing
