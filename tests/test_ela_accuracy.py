"""bench/ela_accuracy.py: start order (complete pairs first), the commands, and the paired summary."""
import json

import numpy as np
import pytest

from bench import ela_accuracy


def test_plan_starts_both_arms_of_a_seed_before_the_next_seed():
  order = ela_accuracy.plan(["mrla_base", "aila2"], [0, 1], 15)
  assert order[:4] == [("mrla_base", "noela", 0), ("mrla_base", "ela", 0), ("aila2", "noela", 0), ("aila2", "ela", 0)]
  assert len(order) == 8 and {s for _, _, s in order[4:]} == {1}


def test_command_names_the_config_arm_epochs_seed_and_overrides(tmp_path):
  cmd = ela_accuracy.command("aila2", "ela", 2, 15, "/d", tmp_path / "w", ["model.depth=20"])
  assert cmd[2].endswith("configs/cifar10_resnet56_ela.py:aila2,ela,epochs=15")
  assert f"--workdir={tmp_path / 'w'}" in cmd and "--config.seed=2" in cmd and "--config.data_dir=/d" in cmd
  assert cmd[-1] == "--config.model.depth=20"


def test_summary_uses_only_seeds_finished_in_both_arms():
  def run(arm, seed, acc, sec, status="finished"):
    return {"mixer": "mrla_base", "arm": arm, "seed": seed, "status": status, "test_accuracy": acc,
            "train_seconds": sec}
  runs = [run("noela", 0, 0.90, 100.0), run("ela", 0, 0.91, 80.0), run("noela", 1, 0.92, 110.0),
          run("ela", 1, 0.90, 90.0), run("noela", 2, 0.5, 10.0), run("ela", 2, 0.1, 1.0, status="preempted")]
  row = ela_accuracy.summarise(runs, ["mrla_base"])["mrla_base"]
  assert row["paired_seeds"] == [0, 1]
  assert row["noela"]["test_accuracy_mean"] == pytest.approx(0.91)
  assert row["ela"]["test_accuracy_std"] == pytest.approx(np.std([0.91, 0.90], ddof=1))
  assert row["accuracy_ela_minus_noela"] == pytest.approx(0.905 - 0.91)
  assert row["train_seconds_ela_over_noela"] == pytest.approx(85.0 / 105.0)


def test_result_is_written_after_every_finished_run(tmp_path, monkeypatch):
  """A call killed mid-way keeps the runs it finished: each run's record reaches the JSON as it ends.
  The runs are stand-ins (a Python one-liner writing final_metrics.json); the second reads the JSON the
  first left behind and reports how many runs it held as its 'accuracy'."""
  import sys  # pylint: disable=import-outside-toplevel
  result = tmp_path / "out" / "ela_accuracy_fake-device_e1_t.json"

  def fake_command(mixer, arm, seed, epochs, data_dir, workdir, sets):
    code = ("import json, pathlib, sys; w = pathlib.Path(sys.argv[1]); w.mkdir(parents=True); r = pathlib.Path("
            "sys.argv[2]); n = len(json.loads(r.read_text())['runs']) if r.exists() else 0; "
            "(w / 'final_metrics.json').write_text(json.dumps({'eval/accuracy': n, 'train_seconds': 1.0}))")
    return [sys.executable, "-c", code, str(workdir), str(result)]

  monkeypatch.setattr(ela_accuracy, "command", fake_command)
  monkeypatch.setattr(ela_accuracy, "device_name", lambda: "fake device")
  rc = ela_accuracy.main(["--data_dir", str(tmp_path), "--out", str(tmp_path / "out"), "--epochs", "1",
                          "--seeds", "0", "--mixers", "mrla_base", "--jobs", "1", "--tag", "t"])
  assert rc == 0
  saved = json.loads(result.read_text())
  assert saved["complete"] is True and [r["arm"] for r in saved["runs"]] == ["noela", "ela"]
  assert [r["test_accuracy"] for r in saved["runs"]] == [0, 1]  # the first run's record was on disk before the second


def test_progress_of_a_run_stopped_before_its_final_metrics(tmp_path):
  rows = [{"step": 100, "train/loss": 2.0}, {"step": 390, "eval/accuracy": 0.41}, {"step": 400, "train/loss": 1.5}]
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 5')  # cut by the kill
  assert ela_accuracy.progress(tmp_path) == {
      "last_logged_step": 400, "last_eval_step": 390, "last_eval_accuracy": 0.41}
  assert ela_accuracy.progress(tmp_path / "missing") == {}


def test_keep_reruns_only_what_an_earlier_result_did_not_finish(tmp_path, monkeypatch):
  """--keep: the earlier file's finished runs are copied (marked), its terminated ones run again, and a
  recipe that differs (epochs or --set) is refused."""
  earlier = tmp_path / "earlier.json"
  fin = {"mixer": "aila2", "status": "finished", "test_accuracy": 0.8, "train_seconds": 10.0}
  earlier.write_text(json.dumps({"epochs": 1, "sets": ["a=1"], "runs": [
      {**fin, "arm": "noela", "seed": 0}, {"mixer": "aila2", "arm": "ela", "seed": 0, "status": "terminated"},
      {**fin, "arm": "noela", "seed": 1}, {**fin, "arm": "ela", "seed": 1}]}))
  started = []

  def fake_command(mixer, arm, seed, epochs, data_dir, workdir, sets):
    started.append((mixer, arm, seed))
    code = ("import json, pathlib, sys; w = pathlib.Path(sys.argv[1]); w.mkdir(parents=True); "
            "(w / 'final_metrics.json').write_text(json.dumps({'eval/accuracy': 0.7, 'train_seconds': 5.0}))")
    return [sys.executable, "-c", code, str(workdir)]

  import sys  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(ela_accuracy, "command", fake_command)
  monkeypatch.setattr(ela_accuracy, "device_name", lambda: "fake device")
  args = ["--data_dir", str(tmp_path), "--out", str(tmp_path / "out"), "--epochs", "1", "--seeds", "0,1",
          "--mixers", "aila2", "--jobs", "2", "--set", "a=1", "--tag", "k", "--keep", str(earlier)]
  assert ela_accuracy.main(args) == 0
  assert started == [("aila2", "ela", 0)]
  saved = json.loads((tmp_path / "out" / "ela_accuracy_fake-device_e1_k.json").read_text())
  assert sorted((r["arm"], r["seed"], r.get("kept_from")) for r in saved["runs"]) == [
      ("ela", 0, None), ("ela", 1, "earlier.json"), ("noela", 0, "earlier.json"), ("noela", 1, "earlier.json")]
  row = saved["summary"]["aila2"]
  assert row["paired_seeds"] == [0, 1] and row["ela"]["test_accuracy_mean"] == pytest.approx(0.75)
  with pytest.raises(SystemExit, match="different recipes"):
    ela_accuracy.main(args + ["--epochs", "2"])
