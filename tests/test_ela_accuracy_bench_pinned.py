"""bench/ela_accuracy.py pinned against hand calculations: the paired summary (means, not medians; seeds in
order; one mixer's runs only), progress of a stopped run, --keep's recipe check, and what main records per run
(fields from final_metrics.json, preempted / terminated / not started, complete, jobs, exit status).

main runs with fake processes and a fake clock (no subprocess, no sleeping); everything is written under tmp_path.
"""
import json
import os
import pathlib
import types

import pytest

from bench import ela_accuracy


def _run(mixer, arm, seed, acc, sec, status="finished"):
  return {"mixer": mixer, "arm": arm, "seed": seed, "status": status, "test_accuracy": acc, "train_seconds": sec}


def test_summary_means_over_three_seeds_listed_in_order_and_per_mixer():
  # seeds given out of order; a second mixer's runs (same arms and seeds) must not leak into the first's row
  runs = [_run("m", "noela", 2, 0.70, 300.0), _run("m", "ela", 2, 0.60, 200.0),
          _run("m", "noela", 0, 0.50, 100.0), _run("m", "ela", 0, 0.50, 100.0),
          _run("m", "noela", 1, 0.90, 110.0), _run("m", "ela", 1, 0.70, 60.0),
          _run("other", "noela", 9, 0.10, 1.0), _run("other", "ela", 9, 0.10, 1.0),
          _run("other", "noela", 2, 0.30, 1.0), _run("other", "ela", 2, 0.30, 1.0)]
  s = ela_accuracy.summarise(runs, ["m", "other"])
  row = s["m"]
  assert row["paired_seeds"] == [0, 1, 2]
  # no ELA: accuracies 0.5, 0.9, 0.7 -> mean 0.7 (the median, 0.7, too: use the seconds to tell them apart)
  assert row["noela"]["test_accuracy_mean"] == pytest.approx(0.7)
  assert row["ela"]["test_accuracy_mean"] == pytest.approx((0.5 + 0.7 + 0.6) / 3)  # 0.6 (median 0.6)
  assert row["noela"]["train_seconds_mean"] == pytest.approx(510.0 / 3)  # 170, the median would be 110
  assert row["ela"]["train_seconds_mean"] == pytest.approx(120.0)  # median 100
  assert row["train_seconds_ela_over_noela"] == pytest.approx(120.0 / 170.0)
  assert row["accuracy_ela_minus_noela"] == pytest.approx(0.6 - 0.7)
  # sample sd of 0.5, 0.9, 0.7: deviations -0.2, 0.2, 0 -> sqrt(0.08 / 2) = 0.2
  assert row["noela"]["test_accuracy_std"] == pytest.approx(0.2)
  assert s["other"]["paired_seeds"] == [2, 9]  # in order (a set of 9 and 2 iterates 9 first)
  one = ela_accuracy.summarise(runs[:2], ["m"])["m"]
  assert one["paired_seeds"] == [2] and one["noela"]["test_accuracy_std"] is None


def test_summary_accuracy_mean_is_not_a_median():
  runs = [_run("m", arm, s, acc, 10.0) for s, acc in ((0, 0.1), (1, 0.2), (2, 0.9)) for arm in ("noela", "ela")]
  row = ela_accuracy.summarise(runs, ["m"])["m"]
  assert row["ela"]["test_accuracy_mean"] == pytest.approx(0.4)  # the median would be 0.2


@pytest.fixture
def metrics_dir(tmp_path):
  rows = [{"step": 10, "eval/accuracy": 0.3}, {"step": 20, "eval/accuracy": 0.0}, {"step": 25, "train/loss": 9.0}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return tmp_path


def test_progress_reports_the_last_evaluation_even_at_zero_accuracy(metrics_dir):
  assert ela_accuracy.progress(metrics_dir) == {"last_logged_step": 25, "last_eval_step": 20,
                                                "last_eval_accuracy": 0.0}


def test_keep_refuses_an_earlier_result_with_other_set_overrides(tmp_path):
  earlier = tmp_path / "e.json"
  earlier.write_text(json.dumps({"epochs": 3, "sets": ["a=1"], "runs": []}))
  assert ela_accuracy.kept_runs(earlier, 3, ["a=1"]) == []
  with pytest.raises(SystemExit, match="different recipes"):
    ela_accuracy.kept_runs(earlier, 3, ["a=2"])


SNAPSHOTS = []


class _Clock:
  def __init__(self):
    self.t = 0.0

  def perf_counter(self):
    return self.t

  def sleep(self, s):
    self.t += s


def _fake_main(tmp_path, monkeypatch, behaviour, argv):
  """Runs ela_accuracy.main with fake processes: ``behaviour[workdir name]`` says when the run ends (fake
  seconds; None: only when killed), its final_metrics.json (None: none) and, if killed, whether it still
  leaves final metrics (``final_on_kill``); ``metrics`` rows go to metrics.jsonl at the start."""
  clock = _Clock()
  killed = []
  SNAPSHOTS.clear()

  class Proc:
    def __init__(self, cmd, **kw):
      self.workdir = pathlib.Path(cmd[0])
      self.b = behaviour[self.workdir.name]
      self.workdir.mkdir(parents=True)
      (self.workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.b.get("metrics", [])))
      self.pid, self.returncode, self.killed = id(self), None, False
      saved = tmp_path / "out" / "ela_accuracy_fake-dev_e2_t.json"  # the result as this run starts
      SNAPSHOTS.append(json.loads(saved.read_text()) if saved.exists() else None)
      Proc.all[self.pid] = self

    def poll(self):
      if self.returncode is None:
        if self.killed:
          if self.b.get("final_on_kill"):
            (self.workdir / "final_metrics.json").write_text(json.dumps(self.b["final"]))
          self.returncode = -15
        elif self.b["end"] is not None and clock.t >= self.b["end"]:
          if self.b.get("final") is not None:
            (self.workdir / "final_metrics.json").write_text(json.dumps(self.b["final"]))
          self.returncode = self.b.get("rc", 0)
      return self.returncode
  Proc.all = {}

  def killpg(pid, sig):
    killed.append(pid)
    Proc.all[pid].killed = True

  root = tmp_path / "root"
  monkeypatch.setattr(ela_accuracy, "time", types.SimpleNamespace(perf_counter=clock.perf_counter, sleep=clock.sleep))
  monkeypatch.setattr(ela_accuracy, "subprocess", types.SimpleNamespace(Popen=Proc, STDOUT=-2))
  monkeypatch.setattr(ela_accuracy, "os", types.SimpleNamespace(environ=os.environ, killpg=killpg))
  monkeypatch.setattr(ela_accuracy, "tempfile", types.SimpleNamespace(
      mkdtemp=lambda prefix: (root.mkdir(), str(root))[1]))
  monkeypatch.setattr(ela_accuracy, "device_name", lambda: "fake dev")
  monkeypatch.setattr(ela_accuracy, "command", lambda mixer, arm, seed, epochs, data_dir, workdir, sets: [str(workdir)])
  rc = ela_accuracy.main(["--data_dir", str(tmp_path), "--out", str(tmp_path / "out"), "--epochs", "2",
                          "--tag", "t", *argv])
  saved = json.loads((tmp_path / "out" / "ela_accuracy_fake-dev_e2_t.json").read_text())
  return rc, saved, killed


FINAL = {"step": 100, "eval/accuracy": 0.8, "eval/loss": 0.6, "train/loss": 0.1, "train_seconds": 50.0,
         "first_step_seconds": 7.0, "ela/skip_set": ["stage_0/block_1"], "ela/recompiles": 1}


def test_main_records_each_finished_runs_final_metrics_and_a_complete_summary(tmp_path, monkeypatch):
  behaviour = {"m_noela_s0": {"end": 1.0, "final": {**FINAL, "eval/accuracy": 0.75, "train_seconds": 40.0,
                                                      "ela/skip_set": None, "ela/recompiles": None}},
               "m_ela_s0": {"end": 1.0, "final": FINAL}}
  rc, saved, _ = _fake_main(tmp_path, monkeypatch, behaviour, ["--seeds", "0", "--mixers", "m", "--jobs", "3"])
  assert rc == 0 and saved["complete"] is True and saved["jobs"] == 3 and saved["seeds"] == [0]
  ela = next(r for r in saved["runs"] if r["arm"] == "ela")
  assert {k: ela[k] for k in ("status", "step", "test_accuracy", "test_loss", "train_seconds", "first_step_seconds",
                              "skip_set", "recompiles", "returncode")} == {
      "status": "finished", "step": 100, "test_accuracy": 0.8, "test_loss": 0.6, "train_seconds": 50.0,
      "first_step_seconds": 7.0, "skip_set": ["stage_0/block_1"], "recompiles": 1, "returncode": 0}
  row = saved["summary"]["m"]
  assert row["paired_seeds"] == [0] and row["accuracy_ela_minus_noela"] == pytest.approx(0.05)
  assert row["train_seconds_ela_over_noela"] == pytest.approx(50.0 / 40.0)


def test_main_a_run_killed_after_its_final_metrics_is_preempted_not_finished(tmp_path, monkeypatch):
  behaviour = {"m_noela_s0": {"end": 0.0, "final": FINAL},
               "m_ela_s0": {"end": None, "final": FINAL, "final_on_kill": True}}
  rc, saved, killed = _fake_main(tmp_path, monkeypatch, behaviour,
                                 ["--seeds", "0", "--mixers", "m", "--jobs", "2", "--budget_s", "1", "--grace_s", "1"])
  assert len(killed) == 1 and rc == 1
  status = {r["arm"]: r["status"] for r in saved["runs"]}
  assert status == {"noela": "finished", "ela": "preempted"}
  assert saved["summary"]["m"]["paired_seeds"] == [] and "accuracy_ela_minus_noela" not in saved["summary"]["m"]


def test_main_a_killed_run_is_terminated_with_its_progress_and_late_runs_are_not_started(tmp_path, monkeypatch):
  rows = [{"step": 5, "train/loss": 2.0}, {"step": 10, "eval/accuracy": 0.4}, {"step": 12, "train/loss": 1.0}]
  behaviour = {"m_noela_s0": {"end": None, "final": None, "metrics": rows}}
  rc, saved, killed = _fake_main(tmp_path, monkeypatch, behaviour,
                                 ["--seeds", "0", "--mixers", "m", "--jobs", "1", "--budget_s", "1", "--grace_s", "1"])
  assert rc == 1 and len(killed) == 1 and saved["complete"] is True
  by_arm = {r["arm"]: r for r in saved["runs"]}
  assert by_arm["ela"]["status"] == "not started (budget)"
  noela = by_arm["noela"]
  assert noela["status"] == "terminated" and (noela["last_logged_step"], noela["last_eval_step"],
                                              noela["last_eval_accuracy"]) == (12, 10, 0.4)


def test_main_a_failing_run_makes_the_exit_status_1(tmp_path, monkeypatch):
  behaviour = {"m_noela_s0": {"end": 0.0, "final": None, "rc": 1}, "m_ela_s0": {"end": 0.0, "final": FINAL}}
  rc, saved, _ = _fake_main(tmp_path, monkeypatch, behaviour, ["--seeds", "0", "--mixers", "m", "--jobs", "1"])
  first = SNAPSHOTS[1]  # written when the first run ended, before the second started: not complete yet
  assert first["complete"] is False and [r["status"] for r in first["runs"]] == ["failed"]
  assert rc == 1 and saved["complete"] is True and {r["arm"]: r["status"] for r in saved["runs"]} == {"noela": "failed", "ela": "finished"}


def test_main_keep_drops_runs_of_mixers_not_asked_for(tmp_path, monkeypatch):
  earlier = tmp_path / "earlier.json"
  fin = {"status": "finished", "test_accuracy": 0.5, "train_seconds": 1.0, "seed": 0}
  earlier.write_text(json.dumps({"epochs": 2, "sets": [], "runs": [
      {**fin, "mixer": "m", "arm": "noela"}, {**fin, "mixer": "gone", "arm": "noela"}]}))
  behaviour = {"m_ela_s0": {"end": 0.0, "final": FINAL}}
  rc, saved, _ = _fake_main(tmp_path, monkeypatch, behaviour,
                            ["--seeds", "0", "--mixers", "m", "--keep", str(earlier)])
  assert rc == 0 and sorted((r["mixer"], r["arm"]) for r in saved["runs"]) == [("m", "ela"), ("m", "noela")]
