"""metrics.jsonl rows, truncation on resume, progress line."""
import io
import json

from aila_jax.train import metrics


def test_jsonl_rows_and_truncate(tmp_path):
  w = metrics.MetricWriter(tmp_path, tensorboard=False)
  for s in (10, 20, 30):
    w.write(s, {"train/loss": 1.0 / s})
  with (tmp_path / metrics.METRICS_FILE).open("a") as f:
    f.write('{"step": 40, "train/lo')  # half-written line of a killed run
  w.truncate_after(20)
  rows = metrics.read_metrics(tmp_path)
  assert [r["step"] for r in rows] == [10, 20]
  assert rows[1]["train/loss"] == 0.05


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
  json.dumps(line)
