"""metrics.jsonl rows, truncation on resume, progress line."""
import io

from aila_jax.train import metrics


def test_jsonl_is_append_only_and_resume_markers_supersede_later_rows(tmp_path):
  w = metrics.MetricWriter(tmp_path, tensorboard=False)
  for s in (10, 20, 30):
    w.write(s, {"train/loss": 1.0 / s})
  with (tmp_path / metrics.METRICS_FILE).open("a") as f:
    f.write('{"step": 40, "train/lo')  # half-written line of a killed run
  before = (tmp_path / metrics.METRICS_FILE).read_text()
  w.mark_resume(20)  # a run resumed from the checkpoint at step 20 redoes 30 and 40
  w.write(30, {"train/loss": 0.5})
  text = (tmp_path / metrics.METRICS_FILE).read_text()
  assert text.startswith(before), "earlier rows must never be rewritten"
  rows = metrics.read_metrics(tmp_path)
  assert [(r["step"], r["train/loss"]) for r in rows] == [(10, 0.1), (20, 0.05), (30, 0.5)]
  raw = metrics.read_metrics(tmp_path, raw=True)
  assert [r["step"] for r in raw] == [10, 20, 30, 20, 30]  # the old step 30 and the marker are kept
  assert raw[3] == {"step": 20, metrics.RESUME_KEY: 20}
  w.mark_resume(0)  # a fresh run in the same workdir: nothing earlier is part of its history
  w.write(5, {"train/loss": 2.0})
  assert [r["step"] for r in metrics.read_metrics(tmp_path)] == [5]
  assert len(metrics.read_metrics(tmp_path, raw=True)) == 7


def test_tensorboard_event_file_written(tmp_path):
  w = metrics.MetricWriter(tmp_path)
  w.write(1, {"train/loss": 0.5, "eval/accuracy": 0.9})
  w.close()
  files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert files and files[0].stat().st_size > 0
  assert b"train/loss" in files[0].read_bytes()


def test_progress_line_has_rate_and_eta():
  out = io.StringIO()
  p = metrics.Progress(100, 0, stream=out)
  p.print(50, {"train/loss": 0.25, "train/accuracy": 0.5, "train/grad_norm": 3.0}, 12.5)
  line = out.getvalue().strip()
  assert line.startswith("step 50/100 | loss 0.25 | accuracy 0.5 | 12.50 steps/s | ETA ")
  assert "grad_norm" not in line


def test_wall_clock_column_only_when_asked(tmp_path, monkeypatch):
  clock = iter([100.0, 100.5, 103.0])
  monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
  w = metrics.MetricWriter(tmp_path / "a", tensorboard=False, wall_clock=True)
  (tmp_path / "a").mkdir()
  for s in (1, 2, 3):
    w.write(s, {"train/loss": 1.0})
  assert [r["wall"] for r in metrics.read_metrics(tmp_path / "a")] == [0.0, 0.5, 3.0]
  (tmp_path / "b").mkdir()
  w = metrics.MetricWriter(tmp_path / "b", tensorboard=False)
  w.write(1, {"train/loss": 1.0})
  assert "wall" not in metrics.read_metrics(tmp_path / "b")[0]


def test_read_metrics_skips_rows_without_step_and_keeps_marker_step_row(tmp_path):
  (tmp_path / metrics.METRICS_FILE).write_text(
      '{"step": 1, "a": 1}\n{"note": "no step"}\n[1, 2]\n{"step": 2, "a": 2}\n{"step": 3, "a": 3}\n'
      '{"step": 2, "resumed_from_step": 2}\n{"step": 3, "a": 30}\n')
  assert [(r["step"], r["a"]) for r in metrics.read_metrics(tmp_path)] == [(1, 1), (2, 2), (3, 30)]
  assert [r["step"] for r in metrics.read_metrics(tmp_path, raw=True)] == [1, 2, 3, 2, 3]
