"""bench/imdb_depth.py pinned against hand calculations: seconds per step from the logged rows after the first
(weighted by the steps between rows, each interval at its own closing rate) and the summary against the two
baselines (accuracy differences, time ratios, the issue's target at its boundaries)."""
import json

import pytest

from bench import imdb_depth


def _metrics(tmp_path, rows):
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return tmp_path


def test_timing_weights_each_interval_by_its_steps_at_its_closing_rate(tmp_path):
  rows = [{"step": 10, "train/steps_per_sec": 1.0},   # the first row: compilation, left out
          {"step": 15, "eval/accuracy": 0.5},          # no rate: not a timing row
          {"step": 20, "train/steps_per_sec": 10.0},   # 10 steps at 0.1 s
          {"step": 40, "train/steps_per_sec": 5.0},    # 20 steps at 0.2 s
          {"step": 40, "train/steps_per_sec": 7.0},    # no steps: left out
          {"step": 50, "train/steps_per_sec": 0.0}]    # no rate: left out
  t = imdb_depth.timing(_metrics(tmp_path, rows), steps=300)
  per_step = (10 * 0.1 + 20 * 0.2) / 30  # 1/6 s
  assert t["seconds_per_step"] == pytest.approx(per_step)
  assert t["train_seconds_excl_compile"] == pytest.approx(300 * per_step)


def test_timing_without_two_rate_rows_is_none(tmp_path):
  t = imdb_depth.timing(_metrics(tmp_path, [{"step": 10, "train/steps_per_sec": 1.0}]), steps=10)
  assert t == {"seconds_per_step": None, "train_seconds_excl_compile": None}


def _row(name, acc, secs):
  return {"name": name, "test_accuracy": acc, "train_seconds_excl_compile": secs}


def test_summary_differences_ratios_and_target_at_its_boundaries():
  rows = [_row("transformer", 0.75, 4.0), _row("lstm", 0.5, 8.0),
          _row("at_bounds", 0.75, 2.0),      # = transformer's accuracy at exactly half its time: met
          _row("slower", 0.875, 2.5),       # more accurate, 0.625x transformer's time: not met
          _row("less_accurate", 0.625, 1.0)]  # 0.25x the time but below transformer: not met
  s = imdb_depth.summarize(rows)
  assert set(s) == {"at_bounds", "slower", "less_accurate"}  # the baselines have no row of their own
  assert s["at_bounds"] == {"test_accuracy": 0.75, "accuracy_minus_transformer": 0.0, "time_ratio_to_transformer": 0.5,
                            "accuracy_minus_lstm": 0.25, "time_ratio_to_lstm": 0.25, "target_met": True}
  assert s["slower"]["accuracy_minus_transformer"] == pytest.approx(0.125)
  assert s["slower"]["time_ratio_to_transformer"] == pytest.approx(0.625) and s["slower"]["target_met"] is False
  assert s["less_accurate"]["accuracy_minus_transformer"] == pytest.approx(-0.125)
  assert s["less_accurate"]["target_met"] is False


def test_summary_without_both_baselines_has_no_target():
  s = imdb_depth.summarize([_row("lstm", 0.5, 8.0), _row("a", 0.75, 2.0)])
  assert s == {"a": {"test_accuracy": 0.75, "accuracy_minus_lstm": 0.25, "time_ratio_to_lstm": 0.25}}
  s = imdb_depth.summarize([_row("lstm", 0.5, None), _row("transformer", 0.5, 1.0), _row("a", 0.75, 2.0)])
  assert "target_met" not in s["a"] and s["a"]["time_ratio_to_transformer"] == 2.0
