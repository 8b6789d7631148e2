"""Pins of the ELA controller (aila_jax.train.ela) that test_ela.py leaves open: the first evaluation at
warmup_steps, *consecutive* (not cumulative) hysteresis both ways, a fresh streak after a restore, the cap
counting blocks already skipped, skips being final without probes, and the set in effect while a decided set
waits for compile_ahead. The redundant sets come from scipy (stats.beta.cdf on the moments fit, written from
the ebqm docstring), the expected controller behaviour from the module docstring. Host-only, ~1 s."""
import numpy as np
import pytest
import scipy.stats

from aila_jax.train import ela

NAMES = [f"stage_0/block_{t}" for t in range(2, 8)] + ["stage_1/block_2", "stage_1/block_3"]
KL = dict(zip(NAMES, [0.001, 0.002, 0.003, 0.005, 0.2, 0.3, 0.5, 0.004]))
A, B, C = "stage_0/block_3", "stage_0/block_4", "stage_1/block_3"  # the eligible redundant blocks of KL


def _controller(**overrides):
  return ela.ELAController({**ela.DEFAULTS, "enabled": True, "warmup_steps": 20, "eval_every": 10,
                            "hysteresis": 1, "ema_decay": 0.0, **overrides})


def _metrics(kl):
  return {"loss": 1.0, **{ela.KL_METRIC + n: v for n, v in kl.items()}}


def _redundant(kl, tau=0.2):
  names = sorted(kl)
  s = np.clip(np.array([kl[n] for n in names]) / (1 + np.array([kl[n] for n in names])), 1e-6, 1 - 1e-6)
  m, v = s.mean(), s.var()
  c = m * (1 - m) / v - 1
  q = scipy.stats.beta.cdf(s, m * c, (1 - m) * c)
  return {n for n, qq in zip(names, q) if qq < tau}


def _step(c, step, kl):
  c.observe(step, _metrics(kl))
  return c.decide(step) if c.due(step) else None


# KLs under which A is clearly not redundant (and B, C still are); checked against scipy below
NOT_A = dict(KL, **{A: 0.5})


def test_reference_sets():
  assert {A, B, C} <= _redundant(KL) and "stage_0/block_7" not in _redundant(KL)
  assert A not in _redundant(NOT_A) and {B, C} <= _redundant(NOT_A)


def test_first_evaluation_is_at_warmup_steps_then_every_eval_every():
  c = _controller(warmup_steps=20, eval_every=10)
  due = []
  for t in range(0, 51):
    c.observe(t, _metrics(KL))
    if c.due(t):
      due.append(t)
  assert due == [20, 30, 40, 50]


def test_hysteresis_counts_consecutive_redundant_evaluations():
  c = _controller(hysteresis=2, max_skip_fraction=0.9)  # cap 5: never binding here
  _step(c, 20, KL)         # A, B, C redundant (1)
  _step(c, 30, NOT_A)      # A not: its streak restarts; B, C reach 2 -> skipped
  assert A not in c.skip and {B, C} <= set(c.skip)
  _step(c, 40, KL)         # A redundant once again: 1 of 2, not yet
  assert A not in c.skip
  _step(c, 50, KL)
  assert A in c.skip


def test_cap_counts_the_blocks_already_skipped():
  c = _controller(max_skip_fraction=0.2)  # floor(0.2 * 6 eligible) = 1
  _step(c, 20, KL)
  assert c.skip == (A,)
  for t in (30, 40):  # B and C stay redundant and ready, but the cap is already used by A
    row = _step(c, t, KL)
    assert c.skip == (A,) and row["ela/num_skipped"] == 1.0 <= row["ela/max_skipped"]


def test_without_probes_a_skip_is_final_even_when_its_frozen_ema_stops_being_redundant():
  c = _controller(max_skip_fraction=0.2)  # cap 1: only A is skipped, every other EMA follows `low`
  _step(c, 20, KL)
  assert c.skip == (A,)
  # everyone else's KL drops below A's: A's (frozen) EMA is now the largest of the group, not redundant
  others = [n for n in NAMES if n != A]
  low = dict({n: 0.0002 * (i + 1) for i, n in enumerate(others)}, **{A: 0.0})  # A's reported 0 is ignored
  for t in range(21, 61):
    _step(c, t, low)
  assert c.ema[A] == KL[A] and A not in _redundant(c.ema)
  assert A in c.skip


def test_restore_needs_consecutive_clear_evaluations_and_a_restored_block_starts_a_new_streak():
  c = _controller(hysteresis=2, max_skip_fraction=0.9, probe_every=5)  # cap 5: never binding here
  _step(c, 20, KL)
  _step(c, 30, KL)
  assert A in c.skip
  # probes (every 5th step) measure the skipped A; its EMA follows what they see (ema_decay 0)
  _step(c, 40, NOT_A)      # clear 1
  _step(c, 50, KL)         # redundant again: the clear count restarts
  _step(c, 60, NOT_A)      # clear 1
  assert A in c.skip
  _step(c, 70, NOT_A)      # clear 2 -> restored
  assert A not in c.skip
  _step(c, 80, KL)         # redundant once after the restore: 1 of 2, not yet skipped again
  assert A not in c.skip
  _step(c, 90, KL)
  assert A in c.skip


def test_a_decision_made_while_another_waits_keeps_the_set_in_effect():
  # compile_ahead 15: the set decided at 20 would switch after 35; a new set decided at 30 replaces it and
  # switches after 45; until then the set in effect at 30, the empty one, stays
  only_a = dict({n: 0.5 for n in NAMES}, **{A: 0.001, "stage_0/block_2": 0.3, "stage_1/block_2": 0.4})
  assert _redundant(only_a) & {A, B, C} == {A}
  c = _controller(max_skip_fraction=0.5, compile_ahead=15)
  _step(c, 20, only_a)
  assert c.skip == (A,) and c.switch_step == 35
  for t in range(21, 31):
    _step(c, t, KL)
  assert set(c.skip) == {A, B, C} and c.switch_step == 45
  assert [c.skips_for(t) for t in (31, 35, 36, 45)] == [(), (), (), ()]
  assert c.skips_for(46) == c.skip and c.pending(40) == c.skip
