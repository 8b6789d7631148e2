"""The ELA controller (aila_jax.train.ela): warm-up, EBQM on EMAs, hysteresis, protected blocks, the skip cap,
probes, its config errors, and a run that resumes from a checkpoint mid-way with the same skip set, exactly."""
import json
import shutil

import chex
import jax
import ml_collections
import numpy as np
import pytest
import scipy.stats

from aila_jax.errors import ConfigError
from aila_jax.train import config_check, ela, train_and_evaluate
from aila_jax.train.checkpoint import load_checkpoint
from aila_jax.train.metrics import read_metrics
from helpers import make_testing_config

NAMES = [f"stage_0/block_{t}" for t in range(2, 8)] + ["stage_1/block_2", "stage_1/block_3"]
KL = dict(zip(NAMES, [0.001, 0.002, 0.003, 0.005, 0.2, 0.3, 0.5, 0.004]))


def _controller(**overrides):
  return ela.ELAController({**ela.DEFAULTS, "enabled": True, "warmup_steps": 20, "eval_every": 10,
                            "hysteresis": 2, "ema_decay": 0.0, **overrides})


def _metrics(kl):
  return {"loss": 1.0, **{ela.KL_METRIC + n: v for n, v in kl.items()}}


def _redundant_by_scipy(kl, tau=0.2):
  s = np.clip(np.array([kl[n] for n in sorted(kl)]) / (1 + np.array([kl[n] for n in sorted(kl)])), 1e-6, 1 - 1e-6)
  m, v = s.mean(), s.var()
  c = m * (1 - m) / v - 1
  q = scipy.stats.beta.cdf(s, m * c, (1 - m) * c)
  return {n for n, qq in zip(sorted(kl), q) if qq < tau}, dict(zip(sorted(kl), q))


def test_warmup_hysteresis_protected_blocks_and_the_cap():
  redundant, quant = _redundant_by_scipy(KL)
  assert {"stage_0/block_2", "stage_0/block_3", "stage_0/block_4", "stage_1/block_3"} == redundant
  c = _controller(max_skip_fraction=0.4)
  for step in range(1, 41):
    c.observe(step, _metrics(KL))
    if c.due(step):
      row = c.decide(step)
      if step == 20:  # first evaluation: one redundant evaluation is not enough (hysteresis 2)
        assert c.skip == () and row["ela/valid"] == 1.0
        for n in NAMES:
          assert row[f"ela/quantile/{n}"] == pytest.approx(quant[n], rel=1e-3, abs=1e-6)
  assert not c.due(10)  # warm-up
  # eligible: blocks >= 3 (6 of them) -> at most floor(0.4 * 6) = 2 skipped, lowest quantiles first; never block 2
  eligible_redundant = sorted((n for n in redundant if int(n[-1]) >= 3), key=lambda n: quant[n])
  assert len(eligible_redundant) == 3
  assert c.skip == ("stage_0/block_3", "stage_0/block_4") == tuple(eligible_redundant[:2])
  assert row["ela/num_skipped"] == 2.0 and row["ela/skip_set"] == ",".join(c.skip)


def test_skipped_blocks_keep_their_ema_unless_probed_and_probes_restore():
  c = _controller(hysteresis=1, max_skip_fraction=0.2, probe_every=5)
  for step in range(1, 21):
    c.observe(step, _metrics(KL))
  c.decide(20)
  assert c.skip == ("stage_0/block_3",)  # cap floor(0.2 * 6) = 1
  changed = dict(KL, **{"stage_0/block_3": 0.0})  # a skipped block reports KL 0: ignored...
  c.observe(21, _metrics(changed))
  assert c.ema["stage_0/block_3"] == KL["stage_0/block_3"] and not c.is_probe(21)
  assert c.is_probe(25) and c.skips_for(25) == () and c.skips_for(24) == c.skip
  c.observe(25, _metrics(dict(KL, **{"stage_0/block_3": 5.0})))  # ...except on probe steps
  assert c.ema["stage_0/block_3"] == 5.0
  red, quant = _redundant_by_scipy(c.ema)
  assert "stage_0/block_3" not in red
  c.decide(30)  # no longer redundant for `hysteresis` evaluations: restored; the cap's slot goes to the next
  nxt = sorted((n for n in red if int(n[-1]) >= 3), key=lambda n: quant[n])[:1]
  assert "stage_0/block_3" not in c.skip and c.skip == tuple(nxt)


def test_without_probes_a_skip_is_final_and_state_round_trips_through_json():
  c = _controller(hysteresis=1, max_skip_fraction=0.2)
  for step in range(1, 21):
    c.observe(step, _metrics(KL))
  c.decide(20)
  c.observe(21, _metrics(dict(KL, **{"stage_0/block_3": 9.0})))
  c.decide(30)
  assert c.skip == ("stage_0/block_3",) and not c.is_probe(25)
  d = _controller(hysteresis=1, max_skip_fraction=0.2)
  d.load_state_dict(json.loads(json.dumps(c.state_dict())))
  assert d.state_dict() == c.state_dict()


def test_compile_ahead_delays_a_new_skip_set_by_n_steps_and_round_trips():
  c = _controller(hysteresis=1, max_skip_fraction=0.2, compile_ahead=7)
  for step in range(1, 21):
    c.observe(step, _metrics(KL))
  c.decide(20)
  new = ("stage_0/block_3",)
  assert c.skip == new and c.pending(20) == new and c.pending(27) == new and c.pending(28) is None
  assert [c.skips_for(t) for t in (21, 27, 28, 40)] == [(), (), new, new]
  c.observe(21, _metrics(dict(KL, **{"stage_0/block_3": 0.7})))  # not yet skipped: its KL still counts
  assert c.ema["stage_0/block_3"] == 0.7
  c.observe(28, _metrics(dict(KL, **{"stage_0/block_3": 0.0})))  # skipped from step 28 on: ignored
  assert c.ema["stage_0/block_3"] == 0.7
  d = _controller(hysteresis=1, max_skip_fraction=0.2, compile_ahead=7)
  d.load_state_dict(json.loads(json.dumps(c.state_dict())))
  assert [d.skips_for(t) for t in (27, 28)] == [(), new] and d.pending(25) == new
  old = {k: v for k, v in c.state_dict().items() if k not in ("before", "switch_step")}  # an older checkpoint
  d.load_state_dict(old)
  assert d.skips_for(21) == new and d.pending(21) is None


def test_invalid_beta_fit_skips_nothing_and_says_why():
  c = _controller(hysteresis=1)
  c.observe(20, _metrics({n: 0.5 for n in NAMES}))
  row = c.decide(20)
  assert c.skip == () and row["ela/valid"] == 0.0 and "variance 0" in row["ela/invalid_reason"]


def _ela_config(data_dir, **ela_overrides):
  config = make_testing_config(data_dir, model_name="depth_mlp", num_train_steps=40, log_every=5, eval_every=0,
                               checkpoint_every=20, eval_batch_size=5000)
  config.model = ml_collections.ConfigDict(dict(width=8, depth=4, mixer="aila2", mixer_kwargs={"num_heads": 2}))
  config.ela = ela.default_config()
  config.ela.update(dict(enabled=True, warmup_steps=10, eval_every=5, hysteresis=1, tau=0.5, **ela_overrides))
  return config


@pytest.mark.parametrize("key,value,match", [
    ("ela.tau", 1.0, r"config.ela.tau: expected a number in \(0, 1\)"),
    ("ela.tau", 0.0, r"config.ela.tau: expected a number in \(0, 1\)"),
    ("ela.max_skip_fraction", 1.0, "would let ELA skip every eligible block"),
    ("ela.protect_first", 0, "block 1 has no earlier retrieval"),
    ("ela.eval_every", 7, r"config.ela.eval_every: expected a multiple of config.log_every=5"),
    ("ela.compile_ahead", -1, r"config.ela.compile_ahead: expected an int >= 0"),
    ("model.mixer", "mrla_light", r"mixer 'mrla_light'.*has none; the mixers that have one are \['aila1', 'aila2'"),
    ("model.skip_layers", ("stage_0/block_3",), "the ELA controller owns the skip set"),
    ("model_name", "mlp", r"model 'mlp'.*no ELA support; the models that have it are \[.*'cifar_resnet'"),
])
def test_bad_ela_configs_are_clear_errors(tmp_path, key, value, match):
  config = _ela_config(tmp_path)
  node = config
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ConfigError, match=match):
    config_check.check_config(config)
    ela.check_config(config)


def test_resume_mid_run_skips_the_same_blocks_exactly(tmp_path, data_dir):
  ref_dir, resumed_dir = tmp_path / "ref", tmp_path / "resumed"
  result = train_and_evaluate(_ela_config(data_dir), ref_dir)
  _, _, data20 = load_checkpoint(ref_dir, step=20)
  assert data20["ela"]["skip"], "nothing skipped by step 20: the resume would not test the skip set"
  assert result["ela/skip_set"] and result["ela/recompiles"] >= 1
  rows = read_metrics(ref_dir)
  decisions = [r for r in rows if "ela/skip_set" in r]
  assert decisions and decisions[0]["step"] == 10 and "train/ela/kl/stage_0/block_3" in rows[0]
  assert any(f"ela/quantile/stage_0/block_{t}" in decisions[-1] for t in (2, 3, 4))
  # the disk as a run killed after its step-20 checkpoint leaves it, then resumed
  shutil.copytree(ref_dir, resumed_dir)
  shutil.rmtree(resumed_dir / "checkpoints" / "40")
  (resumed_dir / "final_metrics.json").unlink()
  resumed = train_and_evaluate(_ela_config(data_dir), resumed_dir)
  _, ref_state, ref_data = load_checkpoint(ref_dir)
  _, state, data = load_checkpoint(resumed_dir)
  chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(ref_state))
  assert data["ela"] == ref_data["ela"] and resumed["ela/skip_set"] == result["ela/skip_set"]
  strip = lambda rs: [{k: v for k, v in r.items() if k not in ("train/steps_per_sec", "eval/seconds")} for r in rs]
  assert strip(read_metrics(resumed_dir)) == strip(rows)


def test_compile_ahead_switches_n_steps_after_the_decision_and_resumes_exactly(tmp_path, data_dir, capsys):
  # compile_ahead=12: the set decided at step d trains from step d + 13 on (a skipped block's logged KL, the mean
  # over the 5 steps of a log window, reads 0 only once the whole window skips it); the step-20 checkpoint falls
  # between the decision and the switch, so the resumed run must compile ahead again and switch at the same step
  ref_dir, resumed_dir = tmp_path / "ref", tmp_path / "resumed"
  result = train_and_evaluate(_ela_config(data_dir, compile_ahead=12), ref_dir)
  assert "program(s) compiled ahead" in capsys.readouterr().out and result["ela/compile_wait_seconds"] >= 0
  rows = read_metrics(ref_dir)
  first = next(r for r in rows if r.get("ela/skip_set"))
  d, switch, block = first["step"], first["ela/switch_step"], first["ela/skip_set"].split(",")[0]
  assert switch == d + 12 and d < 20 <= switch
  kl = {r["step"]: r[f"train/ela/kl/{block}"] for r in rows if f"train/ela/kl/{block}" in r}
  assert all(v > 0 for t, v in kl.items() if t <= switch) and kl[max(t for t in kl if t <= switch)] > 0
  after = [v for t, v in kl.items() if t - 5 >= switch]
  assert after and all(v == 0 for v in after)
  shutil.copytree(ref_dir, resumed_dir)
  shutil.rmtree(resumed_dir / "checkpoints" / "40")
  (resumed_dir / "final_metrics.json").unlink()
  resumed = train_and_evaluate(_ela_config(data_dir, compile_ahead=12), resumed_dir)
  assert "program(s) compiled ahead" in capsys.readouterr().out
  (_, ref_state, ref_data), (_, state, data) = load_checkpoint(ref_dir), load_checkpoint(resumed_dir)
  chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(ref_state))
  assert data["ela"] == ref_data["ela"] and resumed["ela/skip_set"] == result["ela/skip_set"]
  drop = ("train/steps_per_sec", "eval/seconds", "ela/compile_wait_seconds")
  strip = lambda rs: [{k: v for k, v in r.items() if k not in drop} for r in rs]
  assert strip(read_metrics(resumed_dir)) == strip(rows)


@pytest.mark.parametrize("mixer", ["mrla_base", "aila2"])
def test_paired_resnet56_configs_differ_only_in_ela_enabled(mixer):
  from configs import cifar10_resnet56_ela  # pylint: disable=g-import-not-at-top
  flat = lambda c: config_check._flatten(c)  # pylint: disable=protected-access
  on, off = (flat(cifar10_resnet56_ela.get_config(f"{mixer},{x}")) for x in ("ela", "noela"))
  assert {k for k in on.keys() | off.keys() if on.get(k) != off.get(k)} == {"ela.enabled"}
  config = cifar10_resnet56_ela.get_config(f"{mixer},ela")
  config_check.check_config(config)
  ela.check_config(config)
  assert config.model.depth == 56 and config.model.mixer == mixer and on["ela.enabled"] is True
  with pytest.raises(ConfigError, match="expected 'MIXER,ela|noela"):
    cifar10_resnet56_ela.get_config("residual,ela")


def test_scanned_calls_observe_every_step_like_single_steps(tmp_path, data_dir):
  # steps_per_call=5: each call's 5 steps come back stacked; the controller must see every step's KLs in order,
  # so its EMAs, decisions, recompiles and the trained parameters equal those of one update per call
  # probe_every=10: the probes (steps 20, 30, 40) fall on the last step of a 5-step call, which must then run apart
  runs = {}
  for k in (1, 5):
    config = _ela_config(data_dir, probe_every=10)
    config.steps_per_call = k
    runs[k] = (train_and_evaluate(config, tmp_path / f"k{k}"), read_metrics(tmp_path / f"k{k}"))
  (one, rows1), (five, rows5) = runs[1], runs[5]
  assert one["first_call_steps"] == 1 and five["first_call_steps"] == 5
  assert one["ela/skip_set"] and five["ela/skip_set"] == one["ela/skip_set"]
  assert five["ela/recompiles"] == one["ela/recompiles"] >= 1
  decisions = lambda rows: [r for r in rows if "ela/skip_set" in r]
  d1, d5 = decisions(rows1), decisions(rows5)
  assert [r["step"] for r in d5] == [r["step"] for r in d1] and [r["ela/skip_set"] for r in d5] == [
      r["ela/skip_set"] for r in d1]
  for a, b in zip(d1, d5):
    emas = sorted(key for key in a if key.startswith("ela/kl_ema/"))
    assert emas and emas == sorted(key for key in b if key.startswith("ela/kl_ema/"))
    np.testing.assert_allclose([b[key] for key in emas], [a[key] for key in emas], rtol=1e-4, atol=1e-7)
  (_, s1, _), (_, s5, _) = load_checkpoint(tmp_path / "k1"), load_checkpoint(tmp_path / "k5")
  for a, b in zip(jax.tree.leaves(s1["params"]), jax.tree.leaves(s5["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ahead_step_runs_the_executable_compiled_for_another_steps_batch_shapes():
  from aila_jax.train import trainer  # pylint: disable=g-import-not-at-top
  f = jax.jit(lambda s, b: (s["w"] * b["x"]).sum(axis=-1))
  g = jax.jit(lambda s, b: (s["w"] + b["x"]).sum(axis=-1))
  state, batch = {"w": np.float32(2.0)}, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
  now, ahead = trainer._AheadStep(f), trainer._AheadStep(g)  # pylint: disable=protected-access
  np.testing.assert_allclose(now(state, batch), [6.0, 24.0])
  assert ahead.compile_like(now, jax.tree.map(trainer._aval, state)) == 1  # pylint: disable=protected-access
  ahead.jitted = None  # only the executable compiled ahead can answer now
  np.testing.assert_allclose(ahead(state, batch), [9.0, 18.0])
  with pytest.raises(TypeError):  # a batch shape not compiled ahead goes through jax.jit (here: gone)
    ahead(state, {"x": np.ones((4, 3), np.float32)})

# Pins found by mutation testing (2026-12-07): the first evaluation at warmup_steps, *consecutive* (not cumulative)
# hysteresis both ways, a fresh streak after a restore, the cap counting blocks already skipped, skips final
# without probes, the set in effect while a decided set waits for compile_ahead. Host only, ~1 s.
A, B, C = "stage_0/block_3", "stage_0/block_4", "stage_1/block_3"  # the eligible redundant blocks of KL


def _step(c, step, kl):
  c.observe(step, _metrics(kl))
  return c.decide(step) if c.due(step) else None


# KLs under which A is clearly not redundant (and B, C still are); checked against scipy below
NOT_A = dict(KL, **{A: 0.5})


def test_reference_sets():
  assert {A, B, C} <= _redundant_by_scipy(KL)[0] and "stage_0/block_7" not in _redundant_by_scipy(KL)[0]
  assert A not in _redundant_by_scipy(NOT_A)[0] and {B, C} <= _redundant_by_scipy(NOT_A)[0]


def test_first_evaluation_is_at_warmup_steps_then_every_eval_every():
  c = _controller(hysteresis=1, warmup_steps=20, eval_every=10)
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
  c = _controller(hysteresis=1, max_skip_fraction=0.2)  # floor(0.2 * 6 eligible) = 1
  _step(c, 20, KL)
  assert c.skip == (A,)
  for t in (30, 40):  # B and C stay redundant and ready, but the cap is already used by A
    row = _step(c, t, KL)
    assert c.skip == (A,) and row["ela/num_skipped"] == 1.0 <= row["ela/max_skipped"]


def test_without_probes_a_skip_is_final_even_when_its_frozen_ema_stops_being_redundant():
  c = _controller(hysteresis=1, max_skip_fraction=0.2)  # cap 1: only A is skipped, every other EMA follows `low`
  _step(c, 20, KL)
  assert c.skip == (A,)
  # everyone else's KL drops below A's: A's (frozen) EMA is now the largest of the group, not redundant
  others = [n for n in NAMES if n != A]
  low = dict({n: 0.0002 * (i + 1) for i, n in enumerate(others)}, **{A: 0.0})  # A's reported 0 is ignored
  for t in range(21, 61):
    _step(c, t, low)
  assert c.ema[A] == KL[A] and A not in _redundant_by_scipy(c.ema)[0]
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
  assert _redundant_by_scipy(only_a)[0] & {A, B, C} == {A}
  c = _controller(hysteresis=1, max_skip_fraction=0.5, compile_ahead=15)
  _step(c, 20, only_a)
  assert c.skip == (A,) and c.switch_step == 35
  for t in range(21, 31):
    _step(c, t, KL)
  assert set(c.skip) == {A, B, C} and c.switch_step == 45
  assert [c.skips_for(t) for t in (31, 35, 36, 45)] == [(), (), (), ()]
  assert c.skips_for(46) == c.skip and c.pending(40) == c.skip


# The controller's protect_first / max_skip_fraction / hysteresis edges (pinned by mutation testing)

def test_protect_first_equal_to_the_deepest_block_is_an_error():
  # pins "blocks 1 .. protect_first are never skipped": protect_first=7 leaves no block (deepest is 7) eligible
  with pytest.raises(ConfigError, match="protect_first=7"):
    _controller(protect_first=7, hysteresis=1).observe(1, _metrics(KL))
  _controller(protect_first=6, hysteresis=1).observe(1, _metrics(KL))  # block 7 is eligible: fine


def test_protect_first_boundary_block_is_never_skipped():
  # pins block == protect_first as protected: with protect_first=3 the eligible blocks are 4..7 of stage_0 (4 of
  # them, cap floor(0.5 * 4) = 2); the redundant blocks 3 (both stages) are protected, only block 4 is left
  c = _controller(protect_first=3, max_skip_fraction=0.5, hysteresis=1)
  c.observe(20, _metrics(KL))
  row = c.decide(20)
  assert row["ela/max_skipped"] == 2.0
  assert "stage_0/block_3" not in c.skip and "stage_1/block_3" not in c.skip
  assert c.skip == ("stage_0/block_4",)


def test_cap_is_floor_of_fraction_times_eligible():
  # pins the floor: 6 eligible blocks (protect_first 2); f=0.49 -> 2 (ceil would give 3), f=0.5 -> exactly 3
  for f, cap in ((0.49, 2), (0.5, 3), (0.16, 0)):
    c = _controller(max_skip_fraction=f, hysteresis=1)
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
