"""Tests for aila_jax.stochastic.reinforce: unbiased, by exact enumeration."""

import itertools

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax.stochastic import reinforce

NUM_ACTIONS = 3
# All action sequences (a1, a2) of a two-step episode.
SEQUENCES = jnp.array(list(itertools.product(range(NUM_ACTIONS), repeat=2)))
R1 = jnp.array([0.5, -1.0, 2.0])  # r1(a1)
R2 = jnp.array([[1.0, 0.0, -2.0], [3.0, 0.5, 0.0], [-1.0, 2.0, 1.5]])  # r2


def init_params():
  return {
      "first": jnp.array([0.2, -0.4, 0.1]),  # logits of a1
      "second": jnp.array([[0.3, 0.0, -0.5], [1.0, -1.0, 0.2],
                           [-0.3, 0.4, 0.0]]),  # logits of a2 given a1
      "base": jnp.array([0.7, -0.2]),  # baseline parameters
  }


def log_probs_of(params, seq):  # (2,) -> (2,)
  lp1 = jax.nn.log_softmax(params["first"])[seq[0]]
  lp2 = jax.nn.log_softmax(params["second"][seq[0]])[seq[1]]
  return jnp.stack([lp1, lp2])


def step_rewards(seq):  # (2,)
  return jnp.stack([R1[seq[0]], R2[seq[0], seq[1]]])


def baseline_of(params, seq):  # (2,): depends on parameters and on the past.
  b1 = params["base"][0] * jnp.sum(params["first"])
  b2 = params["base"][1] + params["second"][seq[0]].sum()
  return jnp.stack([b1, b2])


def exact_objective(params, discount, terminal):
  """E[sum of rewards] by enumeration, differentiable in the logits."""
  def one(seq):
    p = jnp.exp(jnp.sum(log_probs_of(params, seq)))
    r = step_rewards(seq)
    total = r.sum() if terminal else r[0] + discount * r[1]
    return p * total
  return jnp.sum(jax.vmap(one)(SEQUENCES))


def expected_estimate(params, discount, terminal, use_baseline):
  """E[gradient of the surrogate], exactly: sum_s P(s) grad L(s)."""
  def loss(p, seq):
    r = step_rewards(seq)
    rewards = r.sum()[None] if terminal else r[None]
    baseline = baseline_of(p, seq)[None] if use_baseline else None
    return reinforce.reinforce_loss(log_probs_of(p, seq)[None], rewards,
                                    baseline, discount=discount)

  grads = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, SEQUENCES)
  probs = jax.vmap(lambda s: jnp.exp(log_probs_of(params, s).sum()))(SEQUENCES)
  return jax.tree.map(lambda g: jnp.tensordot(probs, g, axes=1), grads)


class ReinforceUnbiasedTest(parameterized.TestCase):

  @parameterized.product(use_baseline=[False, True],
                         setting=[("terminal", 1.0), ("per_step", 1.0)])
  def test_expected_gradient_equals_exact_gradient(self, use_baseline,
                                                   setting):
    kind, discount = setting
    terminal = kind == "terminal"
    params = init_params()
    estimate = expected_estimate(params, discount, terminal, use_baseline)
    exact = jax.grad(exact_objective)(params, discount, terminal)
    for name in ("first", "second"):
      np.testing.assert_allclose(estimate[name], -exact[name], atol=1e-5,
                                 err_msg=name)
    # The baseline gets no gradient from the REINFORCE term.
    np.testing.assert_allclose(estimate["base"], 0.0, atol=1e-7)

  def test_gaussian_location_policy_monte_carlo(self):
    # a ~ N(mu, 0.5^2), reward -(a - c)^2: d/dmu E[R] = -2 (mu - c).
    mu, c, sigma, n = 0.4, -0.3, 0.5, 40000

    def loss(mu_, key):
      eps = jax.random.normal(key, (n, 1))
      a = jax.lax.stop_gradient(mu_ + sigma * eps)
      log_prob = -0.5 * jnp.square((a - mu_) / sigma)
      reward = -jnp.square(a[:, 0] - c)
      baseline = jnp.full((n, 1), -((mu - c)**2 + sigma**2))
      return reinforce.reinforce_loss(log_prob, reward, baseline)

    grad = jax.jit(jax.grad(loss))(mu, jax.random.key(0))
    np.testing.assert_allclose(-grad, -2 * (mu - c), rtol=0.03)


class ReturnsAndLossesTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_returns_to_go(self):
    rewards = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]], np.float32)
    out = self.variant(reinforce.returns_to_go, static_argnums=1)(rewards, 0.5)
    expected = np.zeros_like(rewards)
    for b in range(2):
      for t in range(3):
        expected[b, t] = sum(0.5**(s - t) * rewards[b, s] for s in range(t, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-6)

  def test_terminal_reward_is_discounted_back(self):
    log_probs = jnp.zeros((1, 3))
    grad = jax.grad(lambda lp: reinforce.reinforce_loss(
        lp, jnp.array([2.0]), discount=0.5))(log_probs)
    np.testing.assert_allclose(grad, [[-0.5, -1.0, -2.0]])

  def test_baseline_loss_gradient_reaches_only_the_baseline(self):
    baseline = jnp.array([[0.5, 1.0]])
    rewards = jnp.array([2.0])
    g_b, g_r = jax.grad(reinforce.reinforce_baseline_loss, argnums=(0, 1))(
        baseline, rewards)
    np.testing.assert_allclose(g_b, [[-1.5, -1.0]])  # 2 (b - R) / (B T)
    np.testing.assert_allclose(g_r, [0.0])

  def test_ram_hybrid_loss_parts(self):
    log_lik = jnp.log(jnp.array([0.5, 0.25]))
    log_probs = jnp.array([[-1.0, -2.0], [-0.5, -0.5]])
    rewards = jnp.array([1.0, 0.0])
    baseline = jnp.array([[0.5, 0.5], [0.25, 0.25]])
    out = reinforce.ram_hybrid_loss(log_lik, log_probs, rewards, baseline,
                                    reinforce_weight=2.0, baseline_weight=0.5)
    classification = -np.mean(np.log([0.5, 0.25]))
    reinf = -np.mean([0.5 * -1.0 + 0.5 * -2.0, -0.25 * -0.5 + -0.25 * -0.5])
    base = np.mean([0.25, 0.25, 0.0625, 0.0625])
    np.testing.assert_allclose(out.classification, classification, rtol=1e-6)
    np.testing.assert_allclose(out.reinforce, reinf, rtol=1e-6)
    np.testing.assert_allclose(out.baseline, base, rtol=1e-6)
    np.testing.assert_allclose(out.total,
                               classification + 2 * reinf + 0.5 * base,
                               rtol=1e-6)
    np.testing.assert_allclose(out.mean_return, 0.5)


class ReinforceErrorTest(parameterized.TestCase):

  @parameterized.parameters(
      dict(log_probs=(4,), rewards=(4,), baseline=None,
           match=r"log_probs must have shape \[batch, T\]"),
      dict(log_probs=(4, 3), rewards=(3,), baseline=None,
           match=r"rewards must have shape \[batch\] = \(4,\)"),
      dict(log_probs=(4, 3), rewards=(4, 2), baseline=None,
           match="rewards must have shape"),
      dict(log_probs=(4, 3), rewards=(4,), baseline=(4,),
           match=r"baseline must have shape \[batch, T\] = \(4, 3\)"),
  )
  def test_bad_shapes(self, log_probs, rewards, baseline, match):
    with pytest.raises(ValueError, match=match):
      reinforce.reinforce_loss(
          jnp.zeros(log_probs), jnp.zeros(rewards),
          None if baseline is None else jnp.zeros(baseline))

  def test_bad_discount(self):
    with pytest.raises(ValueError, match=r"discount must lie in \[0, 1\]"):
      reinforce.reinforce_loss(jnp.zeros((2, 2)), jnp.zeros(2), discount=1.5)

  def test_bad_hybrid_log_likelihood(self):
    with pytest.raises(ValueError, match="log_likelihood must have shape"):
      reinforce.ram_hybrid_loss(jnp.zeros((2, 1)), jnp.zeros((2, 3)),
                                jnp.zeros(2), jnp.zeros((2, 3)))
