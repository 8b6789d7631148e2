"""bench/ela_compile_ahead.py: what it reads off a finished run (switches, waits, final figures)."""
import json

from bench import ela_compile_ahead


def test_summary_lists_each_change_of_the_decided_set_with_its_switch_step(tmp_path):
  rows = [{"step": 100, "train/loss": 2.0},
          {"step": 500, "ela/skip_set": "", "ela/switch_step": 0.0},
          {"step": 1000, "ela/skip_set": "stage_0/block_4", "ela/switch_step": 6000.0},
          {"step": 1500, "ela/skip_set": "stage_0/block_4", "ela/switch_step": 6000.0},
          {"step": 6001, "ela/compile_wait_seconds": 0.25},
          {"step": 7000, "ela/skip_set": "stage_0/block_4,stage_1/block_5", "ela/switch_step": 12000.0}]
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  (tmp_path / "final_metrics.json").write_text(json.dumps(
      {"step": 15000, "eval/accuracy": 0.9, "train_seconds": 100.0, "first_step_seconds": 20.0,
       "ela/skip_set": ["stage_0/block_4", "stage_1/block_5"], "ela/recompiles": 2,
       "ela/compile_wait_seconds": 0.25}))
  s = ela_compile_ahead.summarise_run(tmp_path)
  assert [(w["decided_at"], w["effective_after"]) for w in s["switches"]] == [(1000, 6000.0), (7000, 12000.0)]
  assert s["waits"] == [0.25] and s["recompiles"] == 2 and s["test_accuracy"] == 0.9
