"""bench/sgd_step.py: the timed update pinned against a hand calculation (PyTorch's SGD: coupled weight decay,
momentum 0.9, learning rate 0.1, mean cross-entropy; BatchNorm statistics carried), with a stand-in linear model."""
import jax.numpy as jnp
import numpy as np
import pytest

from bench.sgd_step import sgd_bn_step

X = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], np.float32)  # 2 examples, 3 features
Y = np.array([1, 0])
W0 = np.array([[0.5, -0.5], [0.25, 0.0], [-1.0, 1.0]], np.float32)  # 3 features -> 2 classes
WD = 0.05


class _Linear:
  """``apply`` as a flax BatchNorm model's: ((logits, aux), {"batch_stats": new}); the statistic counts calls."""

  def apply(self, variables, x, train, mutable, **kw):
    assert train and mutable == ["batch_stats"]
    new = {"count": variables["batch_stats"]["count"] + 1.0}
    return (x @ variables["params"]["w"], None), {"batch_stats": new}


def _grad(w):
  logits = X.astype(np.float64) @ w
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return X.T @ (p - np.eye(2)[Y]) / len(Y)  # d mean CE / dW


def _by_hand(steps):
  w, buf = W0.astype(np.float64), None
  for _ in range(steps):
    g = _grad(w) + WD * w  # coupled weight decay: added to the gradient
    buf = g if buf is None else 0.9 * buf + g  # torch's momentum buffer (first step: the gradient)
    w = w - 0.1 * buf
  return w


@pytest.mark.parametrize("calls,per_call", [(1, 1), (2, 1), (1, 2)])
def test_sgd_momentum_weight_decay_by_hand(calls, per_call):
  variables = {"params": {"w": jnp.asarray(W0)}, "batch_stats": {"count": jnp.zeros(())}}
  step, state, n = sgd_bn_step(_Linear(), variables, jnp.asarray(X), jnp.asarray(Y), weight_decay=WD,
                               donate=False, steps_per_call=per_call)
  assert n == 6
  for _ in range(calls):
    state = step(state)
  params, stats, _ = state
  np.testing.assert_allclose(np.asarray(params["w"]), _by_hand(calls * per_call), rtol=1e-6, atol=1e-6)
  assert float(stats["count"]) == calls * per_call  # the BatchNorm statistics of each update are kept
