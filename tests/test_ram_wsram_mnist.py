"""bench/ram_wsram_mnist.cumulative_wall: one clock from step 0 over a run resumed across calls."""
import pytest

from bench.ram_wsram_mnist import cumulative_wall


def test_one_call_credits_the_steps_before_its_first_row():
  rows = [{"step": 10, "wall": 0.0}, {"step": 20, "wall": 1.0},
          {"step": 20, "wall": 1.5, "eval/seconds": 0.5, "eval/accuracy": 0.9}, {"step": 30, "wall": 2.5}]
  out, per_step = cumulative_wall(rows)
  assert per_step == pytest.approx(0.1)  # (2.5 s - 0.5 s of eval) / 20 steps
  assert [r["wall"] for r in out] == pytest.approx([1.0, 2.0, 2.5, 3.5])


def test_resumed_call_continues_the_clock():
  first = [{"step": 10, "wall": 0.0}, {"step": 20, "wall": 1.0},
           {"step": 20, "wall": 1.5, "eval/seconds": 0.5, "eval/accuracy": 0.9}, {"step": 30, "wall": 2.5}]
  second = [{"step": 40, "wall": 0.0}, {"step": 50, "wall": 1.0}]  # resumed from the checkpoint at step 30
  out, per_step = cumulative_wall(first + second)
  assert per_step == pytest.approx(0.1)  # 3.0 s of training over 30 timed steps
  assert [r["wall"] for r in out] == pytest.approx([1.0, 2.0, 2.5, 3.5, 4.5, 5.5])
  assert out[-1]["wall"] - 0.5 == pytest.approx(50 * per_step)  # every step counted once, evals apart
