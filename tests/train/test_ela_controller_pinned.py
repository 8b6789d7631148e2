"""Pins of the ELA controller's protect_first / max_skip_fraction / hysteresis bookkeeping (aila_jax.train.ela),
against hand-picked KLs whose redundant set is known (blocks 2, 3, 4 of stage_0 and block 3 of stage_1, as
tests/train/test_ela.py checks against scipy)."""

import pytest

from aila_jax.errors import ConfigError
from aila_jax.train import ela

NAMES = [f"stage_0/block_{t}" for t in range(2, 8)] + ["stage_1/block_2", "stage_1/block_3"]
KL = dict(zip(NAMES, [0.001, 0.002, 0.003, 0.005, 0.2, 0.3, 0.5, 0.004]))


def _controller(**overrides):
  return ela.ELAController({**ela.DEFAULTS, "enabled": True, "warmup_steps": 20, "eval_every": 10,
                            "hysteresis": 1, "ema_decay": 0.0, **overrides})


def _metrics(kl):
  return {"loss": 1.0, **{ela.KL_METRIC + n: v for n, v in kl.items()}}


def test_protect_first_equal_to_the_deepest_block_is_an_error():
  # pins "blocks 1 .. protect_first are never skipped": protect_first=7 leaves no block (deepest is 7) eligible
  with pytest.raises(ConfigError, match="protect_first=7"):
    _controller(protect_first=7).observe(1, _metrics(KL))
  _controller(protect_first=6).observe(1, _metrics(KL))  # block 7 is eligible: fine


def test_protect_first_boundary_block_is_never_skipped():
  # pins block == protect_first as protected: with protect_first=3 the eligible blocks are 4..7 of stage_0 (4 of
  # them, cap floor(0.5 * 4) = 2); the redundant blocks 3 (both stages) are protected, only block 4 is left
  c = _controller(protect_first=3, max_skip_fraction=0.5)
  c.observe(20, _metrics(KL))
  row = c.decide(20)
  assert row["ela/max_skipped"] == 2.0
  assert "stage_0/block_3" not in c.skip and "stage_1/block_3" not in c.skip
  assert c.skip == ("stage_0/block_4",)


def test_cap_is_floor_of_fraction_times_eligible():
  # pins the floor: 6 eligible blocks (protect_first 2); f=0.49 -> 2 (ceil would give 3), f=0.5 -> exactly 3
  for f, cap in ((0.49, 2), (0.5, 3), (0.16, 0)):
    c = _controller(max_skip_fraction=f)
    c.observe(20, _metrics(KL))
    row = c.decide(20)
    assert row["ela/max_skipped"] == float(cap) and len(c.skip) == cap, f


def test_streak_resets_on_a_non_redundant_evaluation_even_with_a_full_cap():
  # pins the streak reset for a ready block that the cap keeps out: hysteresis 2, cap 1
  c = _controller(hysteresis=2, max_skip_fraction=0.2)
  c.observe(20, _metrics(KL))
  c.decide(20)
  assert c.skip == () and c.streak["stage_0/block_3"] == 1
  c.observe(30, _metrics(dict(KL, **{"stage_0/block_3": 0.5})))  # block 3 no longer redundant
  c.decide(30)
  assert c.streak["stage_0/block_3"] == 0 and len(c.skip) == 1 and "stage_0/block_3" not in c.skip
