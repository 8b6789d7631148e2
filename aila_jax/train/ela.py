r"""The ELA controller: which layer-attention retrievals to skip, decided on the host during training.

ELA (Li & Huang et al., "Enhancing Layer Attention Efficiency through Pruning
Redundant Retrievals", arXiv 2503.06473) is known here from its abstract only:
adjacent layers' attention distributions over depth are compared by their KL
divergence, an "Enhanced Beta Quantile Mapping" (EBQM) marks the redundant
ones, and their retrievals are skipped, which saves training time. Everything
else is our reconstruction (``../shared/specs/ela.md``); every choice is a key
of ``config.ela`` with the default below.

**Loop.** The model (built with ``ela_stats=True``) reports per step the mean
adjacent KL of each block, :math:`D_{l}` = ``train/ela/kl/stage_s/block_t``
(:func:`aila_jax.models.depth_backbones.ela_kl`). The controller

1. keeps an EMA per block, :math:`\bar D_l \leftarrow \gamma \bar D_l + (1-\gamma) D_l`
   (``ema_decay``), over the steps where :math:`D_l` was measured: a skipped
   block has no distribution of its own (its KL reads 0), so its EMA is frozen
   except on probe steps;
2. every ``eval_every`` steps from ``warmup_steps`` on, runs
   :func:`aila_jax.attention.redundancy.ebqm` on all blocks' :math:`\bar D_l`
   (``tau``, ``squash``, ``eps``); an invalid Beta fit marks nothing (and is logged);
3. hysteresis: a block joins the skip set after ``hysteresis`` consecutive
   evaluations marked redundant; never blocks ``1 .. protect_first`` of a stage;
   at most :math:`\lfloor f \cdot n_\text{eligible} \rfloor` blocks
   (``max_skip_fraction`` :math:`f < 1`), lowest quantiles first;
4. with ``probe_every > 0`` every ``probe_every``-th step runs the full attention
   (nothing skipped), refreshing every block's EMA; a skipped block whose quantile
   is at or above ``tau`` for ``hysteresis`` consecutive evaluations is then
   restored. Without probes a skip is final.

The skip set is static in the compiled step: the trainer rebuilds the model with
the new ``skip_layers`` and compiles once per distinct set (the parameter tree
does not change), counts and logs the recompiles, and saves the controller's
state (EMAs, streaks, skip set) in each checkpoint, so a resumed run continues
exactly.

**Compiling ahead** (``compile_ahead = N > 0``). With ``N = 0`` a new skip set
decided at step :math:`s` takes effect at step :math:`s + 1`, and training waits
while its step compiles (tens of seconds for a ResNet-56 on a GPU, more than
thousands of steps that skip). With ``N > 0`` it takes effect at step
:math:`s + N + 1`: meanwhile the trainer compiles the new set's steps in a
background thread (XLA compiles without holding Python's lock; the GPU keeps
training on the old set, whose blocks report their own KLs until the switch) and
waits at the switch only for what is left. The switch step depends on the
config only, so runs stay reproducible and a resumed run switches at the same
step (the pending set and its step are in the checkpoint). Pick ``N`` of about
the compile time over the step time (e.g. 50 s / 5 ms = 10,000 steps); the wait
at each switch is logged as ``ela/compile_wait_seconds``.

``config.ela`` (:func:`default_config`):

====================  =========  ==================================================================
key                   default    meaning
====================  =========  ==================================================================
enabled               False      run the controller (the model needs a mixer with a distribution)
tau                   0.2        EBQM quantile threshold, in (0, 1)
squash                'ratio'    KL -> (0, 1): 'ratio' KL/(1+KL), 'exp' 1-exp(-KL), 'minmax'
eps                   1e-6       clip of the squashed KLs to [eps, 1 - eps]
kl_support            'pad'      adjacent_kl support: 'pad' KL(P_{t-1}+0 || P_t), 'renormalize'
ema_decay             0.95       EMA decay per measured step, in [0, 1)
warmup_steps          500        no decision before this step
eval_every            100        steps between EBQM evaluations (a multiple of config.log_every)
hysteresis            3          consecutive redundant evaluations before a skip (and before a restore)
max_skip_fraction     0.5        at most floor(f * eligible blocks) skipped, f in (0, 1)
protect_first         2          blocks 1 .. protect_first of each stage are never skipped (>= 1)
probe_every           0          every probe_every-th step runs the full attention (0: never; skips final)
compile_ahead         0          steps between a decision and its taking effect, compiled meanwhile (0: at once)
====================  =========  ==================================================================
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import numpy as np

from aila_jax.attention import redundancy
from aila_jax.errors import ConfigError, config_error
from aila_jax.train import config_check

KL_METRIC = "ela/kl/"   # the step metrics the classification task reports (aila_jax.tasks.base.ela_metrics)

DEFAULTS: dict[str, Any] = dict(
    enabled=False, tau=0.2, squash="ratio", eps=1e-6, kl_support="pad", ema_decay=0.95, warmup_steps=500,
    eval_every=100, hysteresis=3, max_skip_fraction=0.5, protect_first=2, probe_every=0, compile_ahead=0)

_NUM = (int, float)
config_check.register_config_keys({
    "ela.enabled": (bool, None, "a bool"),
    "ela.tau": (_NUM, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "ela.squash": (str, lambda v: v in redundancy.SQUASHES, f"one of {redundancy.SQUASHES}"),
    "ela.eps": (_NUM, lambda v: 0 < v < 0.5, "a number in (0, 0.5)"),
    "ela.kl_support": (str, lambda v: v in redundancy.SUPPORTS, f"one of {redundancy.SUPPORTS}"),
    "ela.ema_decay": (_NUM, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "ela.warmup_steps": (int, lambda v: v >= 0, "an int >= 0"),
    "ela.eval_every": (int, lambda v: v > 0, "an int > 0"),
    "ela.hysteresis": (int, lambda v: v >= 1, "an int >= 1"),
    "ela.max_skip_fraction": (_NUM, lambda v: 0 < v < 1,
                              "a number in (0, 1) (1 would let ELA skip every eligible block)"),
    "ela.protect_first": (int, lambda v: v >= 1, "an int >= 1 (block 1 has no earlier retrieval to reuse)"),
    "ela.probe_every": (int, lambda v: v >= 0, "an int >= 0 (0: no probe steps)"),
    "ela.compile_ahead": (int, lambda v: v >= 0, "an int >= 0 (steps from a decision to its skip set; 0: at once)"),
})


def default_config():
  """``config.ela`` with every key at its default (see the module docstring)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(dict(DEFAULTS))


def ela_settings(config) -> dict[str, Any]:
  """``config.ela`` merged over :data:`DEFAULTS` (a config without ``ela`` has ELA off)."""
  given = dict(config.get("ela", {}) or {})
  return {**DEFAULTS, **given}


def check_config(config) -> None:
  """Cross-key checks of an ELA-enabled config (the per-key ones are in config_check)."""
  s = ela_settings(config)
  if not s["enabled"]:
    return
  from aila_jax import models  # pylint: disable=g-import-not-at-top
  from aila_jax.nn import depth as depth_nn  # pylint: disable=g-import-not-at-top
  name = config.get("model_name")
  cls = models.MODELS.get(name)
  fields = {f.name for f in dataclasses.fields(cls)} if cls is not None else set()
  supported = sorted(k for k, c in models.MODELS.items() if "ela_stats" in {f.name for f in dataclasses.fields(c)})
  if cls is not None and "ela_stats" not in fields:
    raise ConfigError(f"config.ela.enabled: model {name!r} (config.model_name) has no ELA support; the models "
                      f"that have it are {supported}")
  model = dict(config.get("model", {}) or {})
  defaults = {f.name: f.default for f in dataclasses.fields(cls)} if cls is not None else {}
  mixer = model.get("mixer", defaults.get("mixer"))
  if mixer not in depth_nn.SKIPPABLE:
    raise ConfigError(f"config.ela.enabled: ELA skips retrievals of a distribution over depth, but mixer "
                      f"{mixer!r} (config.model.mixer) has none; the mixers that have one are "
                      f"{list(depth_nn.SKIPPABLE)}")
  if tuple(model.get("skip_layers", ()) or ()):
    raise ConfigError(f"config.model.skip_layers: {tuple(model['skip_layers'])} given with config.ela.enabled=True;"
                      " the ELA controller owns the skip set (leave skip_layers empty, or disable ELA)")
  if s["eval_every"] % config.log_every:
    raise ConfigError(f"config.ela.eval_every: expected a multiple of config.log_every={config.log_every} (the "
                      f"controller reads the step metrics when they are logged), got {s['eval_every']}")


def _block(name: str) -> int:
  return int(name.rsplit("block_", 1)[1])


class ELAController:
  """Host-side state and decisions of ELA (module docstring). Pure Python + :func:`redundancy.ebqm`."""

  def __init__(self, settings: Mapping[str, Any]):
    self.s = dict(settings)
    self.ema: dict[str, float] = {}
    self.streak: dict[str, int] = {}       # consecutive redundant evaluations (blocks not skipped)
    self.clear: dict[str, int] = {}        # consecutive non-redundant evaluations (skipped blocks, probes on)
    self.skip: tuple[str, ...] = ()        # the decided set (in effect after switch_step)
    self.before: tuple[str, ...] = ()      # the set in effect until switch_step (compile_ahead > 0)
    self.switch_step = -1
    self.evaluations = 0

  # --- what the trainer asks ---
  def active(self, step: int) -> tuple[str, ...]:
    """The skip set in effect at step ``step`` (probes aside): the decided one from ``switch_step + 1`` on."""
    return self.skip if step > self.switch_step else self.before

  def pending(self, step: int) -> tuple[str, ...] | None:
    """The decided set if it takes effect after step ``step`` (compile it ahead), else None."""
    return self.skip if step <= self.switch_step and self.skip != self.before else None

  def is_probe(self, step: int) -> bool:
    """Whether step ``step`` runs the full attention (nothing skipped)."""
    p = self.s["probe_every"]
    return bool(p) and bool(self.active(step)) and step % p == 0

  def skips_for(self, step: int) -> tuple[str, ...]:
    """The skip set step ``step`` is compiled with."""
    return () if self.is_probe(step) else self.active(step)

  def observe(self, step: int, metrics: Mapping[str, float]) -> None:
    """Updates the EMAs from one step's host metrics (keys ``ela/kl/<block>``)."""
    kls = {k[len(KL_METRIC):]: float(v) for k, v in metrics.items() if k.startswith(KL_METRIC)}
    if not kls:
      raise ConfigError("config.ela.enabled: the train step reported no ela/kl/* metrics; the task must pass "
                        "the model's intermediates['ela_kl'] on (the classification tasks do)")
    if not self.ema:
      eligible = [n for n in kls if _block(n) > self.s["protect_first"]]
      if not eligible:
        raise ConfigError(f"config.ela.protect_first: with protect_first={self.s['protect_first']} no block of "
                          f"{sorted(kls)} may be skipped (each stage needs more blocks)")
    skipped = self.skips_for(step)
    for name, value in kls.items():
      if name in skipped:
        continue  # no distribution of its own: its KL reads 0
      self.ema[name] = redundancy.ema(self.ema.get(name), value, decay=float(self.s["ema_decay"]))

  def due(self, step: int) -> bool:
    return step >= self.s["warmup_steps"] and step % self.s["eval_every"] == 0 and bool(self.ema)

  def decide(self, step: int) -> dict[str, Any]:
    """One EBQM evaluation; updates the skip set and returns the row to log."""
    names = sorted(self.ema)
    kl = np.asarray([self.ema[n] for n in names], np.float32)
    try:  # a few scalars: on the host's CPU when JAX has that backend (no accelerator sync)
      device = jax.local_devices(backend="cpu")[0]
    except RuntimeError:
      device = jax.local_devices()[0]
    with jax.default_device(device):
      res = jax.device_get(redundancy.ebqm(kl, tau=float(self.s["tau"]), squash=self.s["squash"],
                                           eps=float(self.s["eps"])))
    self.evaluations += 1
    quant = {n: float(q) for n, q in zip(names, res.quantiles)}
    redundant = {n: bool(r) for n, r in zip(names, res.redundant)}
    eligible = [n for n in names if _block(n) > self.s["protect_first"]]
    cap = math.floor(float(self.s["max_skip_fraction"]) * len(eligible))
    hyst = self.s["hysteresis"]
    keep = []
    for n in self.skip:
      if self.s["probe_every"]:  # probes measure skipped blocks: restore a block that stopped being redundant
        self.clear[n] = 0 if redundant[n] else self.clear.get(n, 0) + 1
        if self.clear[n] >= hyst:
          self.clear.pop(n)
          continue
      keep.append(n)
    for n in eligible:
      if n not in self.skip:
        self.streak[n] = self.streak.get(n, 0) + 1 if redundant[n] else 0
    ready = sorted((n for n in eligible if n not in keep and self.streak.get(n, 0) >= hyst),
                   key=lambda n: (quant[n], n))
    new = keep + ready[:max(0, cap - len(keep))]
    for n in new:
      self.streak.pop(n, None)
    new = tuple(sorted(new, key=lambda n: (n.split("/")[0], _block(n))))
    if new != self.skip:  # takes effect after step + compile_ahead; the set in effect until then stays
      self.before, self.switch_step = self.active(step), step + int(self.s["compile_ahead"])
      self.skip = new
    row: dict[str, Any] = {"ela/valid": float(bool(res.valid)), "ela/num_skipped": float(len(self.skip)),
                           "ela/max_skipped": float(cap), "ela/skip_set": ",".join(self.skip)}
    if self.s["compile_ahead"]:
      row["ela/switch_step"] = float(max(self.switch_step, 0))  # where the decided set takes effect (after it)
    if bool(res.valid):
      row.update({"ela/alpha": float(res.alpha), "ela/beta": float(res.beta)})
      row.update({f"ela/quantile/{n}": quant[n] for n in names})
    else:
      row["ela/invalid_reason"] = ("the per-block KLs are all equal after the squash (variance 0)"
                                   if float(np.var(np.clip(np.asarray(redundancy.squash_kl(kl, self.s["squash"])),
                                                           self.s["eps"], 1 - self.s["eps"]))) == 0
                                   else "variance >= m (1 - m): no Beta has these moments")
    row.update({f"ela/kl_ema/{n}": self.ema[n] for n in names})
    row.update({f"ela/skipped/{n}": float(n in self.skip) for n in names})
    return row

  # --- checkpointing (JSON beside the data iterator's state) ---
  def state_dict(self) -> dict[str, Any]:
    return {"ema": dict(self.ema), "streak": dict(self.streak), "clear": dict(self.clear),
            "skip": list(self.skip), "before": list(self.before), "switch_step": self.switch_step,
            "evaluations": self.evaluations}

  def load_state_dict(self, d: Mapping[str, Any]) -> None:
    self.ema = {k: float(v) for k, v in d["ema"].items()}
    self.streak = {k: int(v) for k, v in d["streak"].items()}
    self.clear = {k: int(v) for k, v in d.get("clear", {}).items()}
    self.skip = tuple(d["skip"])
    self.before = tuple(d.get("before", ()))  # checkpoints before compile_ahead: the decided set is in effect
    self.switch_step = int(d.get("switch_step", -1))
    self.evaluations = int(d.get("evaluations", 0))


def make_controller(config) -> ELAController | None:
  """The controller of ``config.ela``, or None when ELA is off."""
  s = ela_settings(config)
  if not s["enabled"]:
    return None
  for key, value in s.items():  # the same checks as config_check, for configs without an ela section
    types, pred, desc = config_check._SPEC[f"ela.{key}"]  # pylint: disable=protected-access
    if not isinstance(value, types) or (isinstance(value, bool) and types is not bool) or (pred and not pred(value)):
      raise config_error(f"ela.{key}", desc, value)
  return ELAController(s)
