"""Schedules and optimizers of aila_jax.train.optim against numpy references written from the formulas
(PyTorch's SGD/Adam/AdamW update rules), for the options test_optim.py leaves open."""
import math

import ml_collections
import numpy as np
import optax

from aila_jax.train import optim


def _cfg(**kw):
  return ml_collections.ConfigDict(kw)


def _run(tx, grads, w0):
  """Applies ``tx`` to the gradient sequence ``grads`` from ``w0``; returns the parameter after each step."""
  params = {"w": np.asarray(w0, np.float32)}
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = tx.update({"w": np.asarray(g, np.float32)}, state, params)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(params["w"], np.float64))
  return out


_GRADS = [np.array([0.5, -1.0, 2.0]), np.array([-0.3, 0.7, 1.1]), np.array([1.5, 0.2, -0.4]),
          np.array([0.1, -2.0, 0.3])]
_W0 = np.array([1.0, -0.5, 0.25])


def test_cosine_decays_to_end_factor_of_base_lr():
  sched = optim.make_schedule(_cfg(name="cosine", end_factor=0.1), num_train_steps=100, base_lr=2.0)
  for s in (0, 25, 50, 100):
    want = 2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 100)))
    np.testing.assert_allclose(float(sched(s)), want, rtol=1e-6)


def test_warmup_cosine_ends_at_base_lr_times_end_factor():
  sched = optim.make_schedule(_cfg(name="warmup_cosine", warmup_steps=10, end_factor=0.1),
                              num_train_steps=110, base_lr=2.0)
  # linear 0 -> 2 over 10 steps, then cosine from 2 to 0.2 over the remaining 100
  for s, want in ((5, 1.0), (10, 2.0), (60, 0.2 + 1.8 * 0.5), (110, 0.2)):
    np.testing.assert_allclose(float(sched(s)), want, rtol=1e-6)


def test_linear_warms_up_then_decays_to_zero_at_the_last_step():
  sched = optim.make_schedule(_cfg(name="linear", warmup_steps=10), num_train_steps=110, base_lr=1.0)
  for s, want in ((0, 0.0), (5, 0.5), (10, 1.0), (35, 0.75), (60, 0.5), (110, 0.0)):
    np.testing.assert_allclose(float(sched(s)), want, rtol=1e-6, atol=1e-7)


def _torch_sgd(lr, mu, wd, nesterov):
  """torch.optim.SGD: g <- g + wd w; b <- mu b + g (b = g at the first step); step = g + mu b (nesterov) or b."""
  w, b, out = _W0.copy(), None, []
  for g in _GRADS:
    g = g + wd * w
    b = g.copy() if b is None else mu * b + g
    w = w - lr * ((g + mu * b) if nesterov else b)
    out.append(w.copy())
  return out


def test_momentum_and_nesterov_are_torch_sgd_with_default_momentum_0_9():
  for name in ("momentum", "nesterov"):
    for wd in (0.0, 0.05):
      tx = optim.make_optimizer(_cfg(name=name, weight_decay=wd), optax.constant_schedule(0.1))  # default momentum
      got = _run(tx, _GRADS, _W0)
      want = _torch_sgd(0.1, 0.9, wd, nesterov=name == "nesterov")
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} wd={wd}")


def _adam(lr, wd, decoupled, b1=0.9, b2=0.999, eps=1e-8):
  """torch.optim.Adam (coupled: g <- g + wd w) / AdamW (decoupled: w <- w - lr wd w), bias-corrected."""
  w, m, v, out = _W0.copy(), 0.0, 0.0, []
  for t, g in enumerate(_GRADS, start=1):
    if not decoupled:
      g = g + wd * w
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    if decoupled:
      step = step + wd * w
    w = w - lr * step
    out.append(w.copy())
  return out


def test_adam_coupled_and_adamw_decoupled_weight_decay_with_default_betas():
  lr = 0.05
  for name, wd in (("adam", 0.0), ("adam", 0.3), ("adamw", 0.0), ("adamw", 0.3)):
    tx = optim.make_optimizer(_cfg(name=name, weight_decay=wd), optax.constant_schedule(lr))
    got = _run(tx, _GRADS, _W0)
    want = _adam(lr, wd, decoupled=name == "adamw")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} wd={wd}")


def test_clipping_acts_on_the_gradient_before_the_learning_rate():
  # gradient norm 50 clipped to 1, then scaled by lr 0.1: the update has norm 0.1 (not min(5, 1) = 1)
  tx = optim.make_optimizer(_cfg(name="sgd", grad_clip_norm=1.0), optax.constant_schedule(0.1))
  (w,) = _run(tx, [np.array([30.0, 40.0, 0.0])], np.zeros(3))
  np.testing.assert_allclose(w, [-0.06, -0.08, 0.0], rtol=1e-6)
