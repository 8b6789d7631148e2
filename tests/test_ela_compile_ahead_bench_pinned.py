"""bench/ela_compile_ahead.py pinned: which final_metrics.json key lands in which field of a run's record, and
what main runs (one run per --ahead value with its ela.compile_ahead, the no-ELA baseline only with --baseline,
a failed run not summarised). Fake runs (no subprocess); everything under tmp_path."""
import json
import pathlib
import types

from bench import ela_compile_ahead

FINAL = {"step": 300, "eval/accuracy": 0.81, "train_seconds": 120.0, "first_step_seconds": 15.0,
         "ela/skip_set": ["stage_0/block_2"], "ela/recompiles": 1, "ela/compile_wait_seconds": 3.5}


def _write_run(workdir, final, rows):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "final_metrics.json").write_text(json.dumps(final))
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_summarise_run_takes_each_figure_from_its_own_key(tmp_path):
  rows = [{"step": 100, "ela/skip_set": "stage_0/block_2", "ela/switch_step": 150.0},
          {"step": 151, "ela/compile_wait_seconds": 1.0}, {"step": 200, "ela/compile_wait_seconds": 0.5}]
  _write_run(tmp_path, FINAL, rows)
  s = ela_compile_ahead.summarise_run(tmp_path)
  assert {k: v for k, v in s.items() if k not in ("waits", "switches")} == {
      "step": 300, "test_accuracy": 0.81, "train_seconds": 120.0, "first_step_seconds": 15.0,
      "skip_set": ["stage_0/block_2"], "recompiles": 1, "compile_wait_seconds": 3.5}
  assert s["waits"] == [1.0, 0.5]
  assert s["switches"] == [{"decided_at": 100, "skip_set": "stage_0/block_2", "effective_after": 150.0}]


def test_main_runs_each_ahead_value_and_the_baseline_only_when_asked(tmp_path, monkeypatch):
  calls = []

  def fake_run(cmd, **kw):
    workdir = pathlib.Path(next(a for a in cmd if a.startswith("--workdir="))[len("--workdir="):])
    calls.append((workdir.name, [a for a in cmd if a.startswith("--config.") and "data_dir" not in a]))
    if workdir.name == "ela_ahead7":  # this one fails after writing its final metrics
      _write_run(workdir, FINAL, [])
      return types.SimpleNamespace(returncode=2)
    _write_run(workdir, {**FINAL, "train_seconds": 100.0 + len(calls)}, [])
    return types.SimpleNamespace(returncode=0)

  root = tmp_path / "root"
  monkeypatch.setattr(ela_compile_ahead, "subprocess", types.SimpleNamespace(run=fake_run, STDOUT=-2))
  monkeypatch.setattr(ela_compile_ahead, "tempfile", types.SimpleNamespace(
      mkdtemp=lambda prefix: (root.mkdir(), str(root))[1]))
  monkeypatch.setattr(ela_compile_ahead, "device_name", lambda: "fake dev")
  out = tmp_path / "out"
  argv = ["--data_dir", str(tmp_path), "--out", str(out), "--mixer", "aila2", "--epochs", "3", "--ahead", "0,5",
          "--set", "a=1", "--tag", "t"]
  assert ela_compile_ahead.main(argv) == 0
  assert calls == [("ela_ahead0", ["--config.seed=0", "--config.progress=False", "--config.a=1",
                                   "--config.ela.compile_ahead=0"]),
                   ("ela_ahead5", ["--config.seed=0", "--config.progress=False", "--config.a=1",
                                   "--config.ela.compile_ahead=5"])]
  saved = json.loads((out / "ela_compile_ahead_fake-dev_aila2_e3_t.json").read_text())
  assert [(r["arm"], r["compile_ahead"], r["train_seconds"]) for r in saved["runs"]] == [
      ("ela", 0, 101.0), ("ela", 5, 102.0)]
  calls.clear()
  root.rename(tmp_path / "root_1")
  assert ela_compile_ahead.main(argv[:-6] + ["--ahead", "7", "--baseline", "--tag", "b"]) == 1
  assert [c[0] for c in calls] == ["ela_ahead7", "noela"]
  assert not any("compile_ahead" in a for a in calls[1][1])  # the baseline has no compile_ahead to set
  saved = json.loads((out / "ela_compile_ahead_fake-dev_aila2_e3_b.json").read_text())
  failed, base = saved["runs"]
  assert failed["returncode"] == 2 and "train_seconds" not in failed and "log_tail" in failed
  assert base["arm"] == "noela" and base["compile_ahead"] is None and base["returncode"] == 0
