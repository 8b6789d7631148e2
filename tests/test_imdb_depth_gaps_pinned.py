"""bench/imdb_depth.summarize pinned where the boundary tests left a gap: the issue's target must hold against
both baselines, so a row that meets it against the transformer but not against the LSTM (on accuracy, or on
time) does not meet it."""
from bench import imdb_depth


def _row(name, acc, secs):
  return {"name": name, "test_accuracy": acc, "train_seconds_excl_compile": secs}


def test_target_must_hold_against_the_lstm_too():
  rows = [_row("transformer", 0.75, 8.0), _row("lstm", 0.875, 2.0),
          _row("below_lstm", 0.8125, 1.0),   # +0.0625 vs transformer at 0.125x; -0.0625 vs lstm at 0.5x
          _row("slow_for_lstm", 0.9375, 2.0),  # accurate enough; 0.25x transformer's time but 1x lstm's
          _row("both", 0.875, 1.0)]            # = lstm's accuracy at exactly half its time, 0.125x transformer's
  s = imdb_depth.summarize(rows)
  assert s["below_lstm"] == {"test_accuracy": 0.8125, "accuracy_minus_transformer": 0.0625,
                             "time_ratio_to_transformer": 0.125, "accuracy_minus_lstm": -0.0625,
                             "time_ratio_to_lstm": 0.5, "target_met": False}
  assert s["slow_for_lstm"] == {"test_accuracy": 0.9375, "accuracy_minus_transformer": 0.1875,
                                "time_ratio_to_transformer": 0.25, "accuracy_minus_lstm": 0.0625,
                                "time_ratio_to_lstm": 1.0, "target_met": False}
  assert s["both"]["target_met"] is True and s["both"]["accuracy_minus_lstm"] == 0.0
