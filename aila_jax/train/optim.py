"""optax optimizers and learning-rate schedules built from ``config.optimizer`` / ``config.schedule``."""

from __future__ import annotations

import optax

from aila_jax.errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "lamb")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "piecewise", "warmup_rsqrt", "linear", "epoch_cosine")


def make_schedule(cfg, *, num_train_steps: int, base_lr: float) -> optax.Schedule:
  r"""Learning-rate schedule by name.

  * ``constant``: ``base_lr``.
  * ``cosine``: cosine decay from ``base_lr`` to ``base_lr * end_factor`` over the run.
  * ``warmup_cosine``: linear warm-up over ``warmup_steps``, then cosine.
  * ``piecewise``: ``base_lr`` times ``factor`` at each step in ``boundaries`` (the MRLA/ResNet
    recipe: ``boundaries=(steps_at_epoch_100, steps_at_epoch_150)``, ``factor=0.1``).
  * ``warmup_rsqrt``: the Transformer's
    ``base_lr * min(step / warmup^1.5, 1 / sqrt(step))`` up to a constant, peaking at ``base_lr``
    at ``warmup_steps``: ``base_lr * min(step / warmup, sqrt(warmup / step))``.
  * ``linear``: linear warm-up then linear decay to 0.
  * ``epoch_cosine``: cosine decay stepped once per epoch, PyTorch's
    ``CosineAnnealingLR(T_max=E)`` with ``scheduler.step()`` after each epoch
    (the kuangliu/pytorch-cifar recipe): constant within an epoch,

    .. math:: \eta(s) = \eta_\text{end} + (\eta_0 - \eta_\text{end})\,
       \tfrac12\big(1 + \cos(\pi \lfloor s / S \rfloor / E)\big)

    with :math:`S` = ``steps_per_epoch``, :math:`E = \lceil` ``num_train_steps`` :math:`/ S \rceil`
    and :math:`\eta_\text{end}` = ``base_lr * end_factor``.
  """
  name = cfg.name
  warmup = int(cfg.get("warmup_steps", 0))
  if name == "constant":
    return optax.constant_schedule(base_lr)
  if name == "cosine":
    return optax.cosine_decay_schedule(base_lr, num_train_steps, alpha=cfg.get("end_factor", 0.0))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, base_lr, warmup, max(num_train_steps, warmup + 1), end_value=base_lr * cfg.get("end_factor", 0.0))
  if name == "piecewise":
    factor = float(cfg.get("factor", 0.1))
    return optax.piecewise_constant_schedule(base_lr, {int(b): factor for b in cfg.get("boundaries", ())})
  if name == "warmup_rsqrt":
    if warmup < 1:
      raise ConfigError(f"config.schedule.warmup_steps: expected >= 1 for warmup_rsqrt, got {warmup}")
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

    def rsqrt(step):
      s = jnp.maximum(step, 1).astype(jnp.float32)
      return base_lr * jnp.minimum(s / warmup, jnp.sqrt(warmup / s))
    return rsqrt
  if name == "linear":
    return optax.join_schedules([optax.linear_schedule(0.0, base_lr, max(warmup, 1)),
                                 optax.linear_schedule(base_lr, 0.0, max(num_train_steps - warmup, 1))],
                                [max(warmup, 1)])
  if name == "epoch_cosine":
    per = cfg.get("steps_per_epoch", None)
    if not isinstance(per, int) or isinstance(per, bool) or per < 1:
      raise ConfigError(f"config.schedule.steps_per_epoch: epoch_cosine needs the steps of one epoch "
                        f"(an int >= 1), got {per!r}")
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    epochs = -(-num_train_steps // per)
    end = base_lr * float(cfg.get("end_factor", 0.0))

    def epoch_cosine(step):
      epoch = jnp.floor_divide(jnp.asarray(step), per).astype(jnp.float32)
      return end + (base_lr - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * epoch / epochs))
    return epoch_cosine
  raise ConfigError(f"config.schedule.name: unknown schedule {name!r}; expected one of {SCHEDULES}")


def make_optimizer(cfg, schedule: optax.Schedule) -> optax.GradientTransformation:
  """Optimizer by ``cfg.name`` with optional global-norm clipping (``cfg.grad_clip_norm``)."""
  name = cfg.name
  wd = float(cfg.get("weight_decay", 0.0))
  if name in ("sgd", "momentum", "nesterov"):
    momentum = None if name == "sgd" else float(cfg.get("momentum", 0.9))
    tx = optax.sgd(schedule, momentum=momentum, nesterov=name == "nesterov")
    if wd:  # coupled L2 decay, as in the ResNet/MRLA recipes: g <- g + wd * w
      tx = optax.chain(optax.add_decayed_weights(wd), tx)
  elif name == "adam":
    tx = optax.adam(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8))
    if wd:
      tx = optax.chain(optax.add_decayed_weights(wd), tx)
  elif name == "adamw":
    tx = optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8),
                     weight_decay=wd)
  elif name == "lamb":
    tx = optax.lamb(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-6),
                    weight_decay=wd)
  else:
    raise ConfigError(f"config.optimizer.name: unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
  clip = cfg.get("grad_clip_norm", None)
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(float(clip)), tx)
  return tx
