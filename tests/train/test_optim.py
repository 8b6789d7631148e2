"""Schedules and optimizers from config."""
import ml_collections
import numpy as np
import optax
import pytest

from aila_jax.errors import ConfigError
from aila_jax.train import optim


def _cfg(**kw):
  return ml_collections.ConfigDict(kw)


def test_warmup_rsqrt_is_the_transformer_schedule():
  sched = optim.make_schedule(_cfg(name="warmup_rsqrt", warmup_steps=4000), num_train_steps=10**5,
                              base_lr=1.0)
  d_model = 512  # paper: lr = d^-0.5 min(s^-0.5, s warmup^-1.5); ours is that divided by its peak
  paper = lambda s: d_model**-0.5 * min(s**-0.5, s * 4000**-1.5)
  peak = paper(4000)
  for s in (1, 100, 4000, 10000, 50000):
    np.testing.assert_allclose(float(sched(s)), paper(s) / peak, rtol=1e-5)


def test_piecewise_decays_at_boundaries():
  sched = optim.make_schedule(_cfg(name="piecewise", boundaries=(100, 150), factor=0.1),
                              num_train_steps=200, base_lr=0.1)
  np.testing.assert_allclose([sched(99), sched(100), sched(149), sched(150)], [0.1, 0.01, 0.01, 0.001],
                             rtol=1e-6)


def test_warmup_cosine_endpoints():
  sched = optim.make_schedule(_cfg(name="warmup_cosine", warmup_steps=10, end_factor=0.0),
                              num_train_steps=100, base_lr=2.0)
  np.testing.assert_allclose([sched(0), sched(10), sched(100)], [0.0, 2.0, 0.0], atol=1e-6)


def test_clipping_bounds_the_update():
  tx = optim.make_optimizer(_cfg(name="sgd", grad_clip_norm=1.0), optax.constant_schedule(1.0))
  params = {"w": np.zeros(3, np.float32)}
  updates, _ = tx.update({"w": np.array([30.0, 40.0, 0.0], np.float32)}, tx.init(params), params)
  np.testing.assert_allclose(optax.tree.norm(updates), 1.0, rtol=1e-6)


def test_weight_decay_sgd_is_coupled_l2():
  tx = optim.make_optimizer(_cfg(name="momentum", momentum=0.0, weight_decay=0.5),
                            optax.constant_schedule(0.1))
  params = {"w": np.ones(2, np.float32)}
  updates, _ = tx.update({"w": np.zeros(2, np.float32)}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.05, -0.05], rtol=1e-6)


def test_unknown_names():
  with pytest.raises(ConfigError, match="config.optimizer.name: unknown optimizer 'adamm'"):
    optim.make_optimizer(_cfg(name="adamm"), optax.constant_schedule(1.0))
  with pytest.raises(ConfigError, match="config.schedule.name: unknown schedule 'cosin'"):
    optim.make_schedule(_cfg(name="cosin"), num_train_steps=10, base_lr=1.0)


def test_epoch_cosine_is_torch_cosine_annealing_stepped_per_epoch():
  """PyTorch 2.14's CosineAnnealingLR(T_max=200) after 0, 1, 50, 100, 150, 199 epochs (lr 0.1), printed by
  stepping the scheduler once per epoch; ours is constant within an epoch of 390 steps."""
  sched = optim.make_schedule(_cfg(name="epoch_cosine", steps_per_epoch=390), num_train_steps=200 * 390,
                              base_lr=0.1)
  torch_lrs = {0: 0.1, 1: 0.09999383162408304, 50: 0.0853553390593274, 100: 0.050000000000000024,
               150: 0.014644660940672632, 199: 6.168375916970619e-06}
  for epoch, lr in torch_lrs.items():
    for step in (epoch * 390, epoch * 390 + 389):
      np.testing.assert_allclose(float(sched(step)), lr, rtol=1e-5, atol=1e-9)
  short = optim.make_schedule(_cfg(name="epoch_cosine", steps_per_epoch=10, end_factor=0.1),
                              num_train_steps=35, base_lr=1.0)  # 4 epochs (the last one partial)
  np.testing.assert_allclose([float(short(s)) for s in (0, 9, 10, 25, 34)],
                             [1.0, 1.0, 0.1 + 0.9 * (1 + np.cos(np.pi / 4)) / 2, 0.55,
                              0.1 + 0.9 * (1 + np.cos(3 * np.pi / 4)) / 2], rtol=1e-6)
  for bad in (None, 0, 2.5):
    with pytest.raises(ConfigError, match="config.schedule.steps_per_epoch"):
      optim.make_schedule(_cfg(name="epoch_cosine", steps_per_epoch=bad), num_train_steps=10, base_lr=1.0)
