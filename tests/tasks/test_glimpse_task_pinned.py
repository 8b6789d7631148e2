"""Glimpse task values the gradient tests leave loose, against numpy: RAM's hybrid loss with lambda_r != lambda_b,
the importance-weighted accuracy, the Gram matrix of the optimal control variate, both sleep losses (true labels:
prior draws reweighted by p(y | a, x); dreamed labels: sampled, not the argmax), the sampled eval's mask, and the
glimpse-fits check on non-square images. The model is a stand-in apply_fn with fixed outputs: these are the
task's maths alone (the gradient tests of test_glimpse_task.py run the real model)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aila_jax import stochastic
from aila_jax.errors import ConfigError
from aila_jax.tasks.glimpse import GlimpseTask

K, B, T, C = 3, 5, 2, 4


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _softmax0(a):
  e = np.exp(a - a.max(0))
  return e / e.sum(0)


class _FakeModel:
  """apply_fn stand-in: returns ``outputs[sample]`` (``(logits, intermediates)``, numpy) and records each call."""

  def __init__(self, **outputs):
    self.outputs, self.calls = outputs, []

  def __call__(self, variables, images, labels=None, *, train, sample, num_samples=None, rngs=None):
    del variables
    self.calls.append(dict(images=images, labels=labels, train=train, sample=sample, num_samples=num_samples,
                           rngs=rngs))
    out = self.outputs[sample]
    out = out(images, labels) if callable(out) else out
    return jax.tree.map(jnp.asarray, out)


def _trajectories(rng, k=K, b=B):
  """logits (K, B, C) and per-step intermediates of K trajectories, q moved off the prior."""
  samples, prior_mean = rng.normal(size=(k, b, T, 2)), 0.3 * rng.normal(size=(k, b, T, 2))
  return (rng.normal(size=(k, b, C)),
          {"log_prior": rng.normal(size=(k, b, T)), "log_proposal": rng.normal(size=(k, b, T)),
           "samples": samples, "prior_mean": prior_mean, "proposal_mean": prior_mean + 0.5})


def _log_lik(logits, y):
  return np.take_along_axis(_log_softmax(logits), np.asarray(y)[None, :, None], -1)[..., 0]  # (K, B)


def test_ram_hybrid_loss_values_with_distinct_weights():
  # L = -mean_b log p(y | a, x) - lambda_r mean_b sum_t (r - b_t) log p(a_t) + lambda_b mean_bt (b_t - r)^2 with
  # lambda_r = 0.3, lambda_b = 2 (the gradient tests use lambda_r = lambda_b = 1: swapped weights went unseen)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(B, C))
  y = np.where(np.arange(B) % 2 == 0, logits.argmax(-1), (logits.argmax(-1) + 1) % C)  # rewards 1, 0, 1, 0, 1
  lp, b = rng.normal(size=(B, T)), rng.normal(size=(B, T))
  model = _FakeModel(prior=(logits, {"log_prior": lp, "baseline": b, "samples": rng.normal(size=(B, T, 2))}))
  task = GlimpseTask(num_classes=C, estimator="reinforce", reinforce_weight=0.3, baseline_weight=2.0)
  _, metrics, _ = task.train_loss(model, {}, {"image": np.zeros((B, 4, 4, 1)), "label": y},
                                  rngs={"glimpse": jax.random.PRNGKey(0)})
  r = (np.arange(B) % 2 == 0).astype(np.float64)
  nll = -_log_softmax(logits)[np.arange(B), y].mean()
  reinforce = -((r[:, None] - b) * lp).sum(1).mean()
  mse = ((b - r[:, None]) ** 2).mean()
  np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-5)
  np.testing.assert_allclose(metrics["reinforce"], reinforce, rtol=1e-5)
  np.testing.assert_allclose(metrics["baseline_mse"], mse, rtol=1e-5)
  np.testing.assert_allclose(metrics["accuracy"], 0.6)
  np.testing.assert_allclose(metrics["loss"], nll + 0.3 * reinforce + 2.0 * mse, rtol=1e-5)


def test_wake_accuracy_and_true_label_sleep_loss():
  # wake: accuracy = mean_b sum_k w_k 1[argmax_c p(c | a_k, x) = y], w = softmax_k(log p + log p(y|a) - log q);
  # sleep (true labels): a second pass, from the *prior* (sample='prior', its own RNG stream, the true labels):
  # -mean_b sum_k u_k log q(a_k | y, x), u = softmax_k log p(y | a_k, x).
  rng = np.random.default_rng(1)
  logits, inter = _trajectories(rng)
  y = logits[0].argmax(-1)  # trajectory 0 is right, the others may not be
  s_logits, s_inter = _trajectories(rng)
  model = _FakeModel(proposal=(logits, inter), prior=(s_logits, s_inter))
  task = GlimpseTask(num_classes=C, estimator="wake_sleep", num_samples=K, sleep_weight=0.5)
  key = jax.random.PRNGKey(4)
  loss, metrics, _ = task.train_loss(model, {}, {"image": np.zeros((B, 4, 4, 1)), "label": y}, rngs={"glimpse": key})
  log_w = inter["log_prior"].sum(-1) + _log_lik(logits, y) - inter["log_proposal"].sum(-1)
  w = _softmax0(log_w)
  correct = (logits.argmax(-1) == y).astype(np.float64)
  assert abs((w * correct).sum(0).mean() - correct.mean()) > 1e-2  # the weighting matters here
  np.testing.assert_allclose(metrics["accuracy"], (w * correct).sum(0).mean(), rtol=1e-5)
  wake, sleep = model.calls
  assert (sleep["sample"], sleep["num_samples"]) == ("prior", K)
  np.testing.assert_array_equal(sleep["labels"], y)
  assert not np.array_equal(sleep["rngs"]["glimpse"], wake["rngs"]["glimpse"])  # draws apart from the wake pass's
  u = _softmax0(_log_lik(s_logits, y))
  log_q = s_inter["log_proposal"].sum(-1)
  want = -(u * log_q).sum(0).mean()
  assert abs(want + log_q.mean()) > 1e-2  # u is not uniform where it matters
  np.testing.assert_allclose(metrics["sleep_loss"], want, rtol=1e-5)
  np.testing.assert_allclose(loss, metrics["nll"] + metrics["prior_loss"] + metrics["proposal_loss"] + 0.5 * want,
                             rtol=1e-5)


def test_dreamed_labels_are_sampled_not_the_argmax():
  # Classical sleep: y~ ~ p(y | a, x) for each of the K x B prior trajectories (the images tiled K times), then
  # -mean log q(a | y~, x) from a second pass with the same RNG (same draws). p(y | a, x) has its argmax at class 0
  # but gives it only e^0.1 / (e^0.1 + 9) = 11%: sampled labels are mostly other classes, the argmax always 0
  # (P(8 or more zeros in 15 draws) < 1e-4).
  rng = np.random.default_rng(2)
  dream_logits = np.zeros((K * B, 10))
  dream_logits[:, 0] = 0.1

  def prior_pass(images, labels):
    if labels is None:  # first pass: no labels, so no q
      return dream_logits, {"log_prior": np.zeros((K * B, T))}
    return dream_logits, {"log_proposal": np.where(np.asarray(labels)[:, None] == 0, -10.0, -1.0) * np.ones(T)}

  model = _FakeModel(proposal=_trajectories(rng), prior=prior_pass)
  task = GlimpseTask(num_classes=C, estimator="wake_sleep", num_samples=K, sleep_weight=1.0, sleep_labels="dreamed")
  images = rng.normal(size=(B, 2, 2, 1)).astype(np.float32)
  _, metrics, _ = task.train_loss(model, {}, {"image": images, "label": np.zeros(B, np.int64)},
                                  rngs={"glimpse": jax.random.PRNGKey(5)})
  _, first, second = model.calls
  for call in (first, second):
    np.testing.assert_array_equal(call["images"], np.tile(images, (K, 1, 1, 1)))
  assert first["labels"] is None
  np.testing.assert_array_equal(first["rngs"]["glimpse"], second["rngs"]["glimpse"])
  dreamed = np.asarray(second["labels"])
  assert dreamed.shape == (K * B,) and (dreamed == 0).mean() < 0.5 and len(set(dreamed)) >= 3
  np.testing.assert_allclose(metrics["sleep_loss"], T * np.where(dreamed == 0, 10.0, 1.0).mean(), rtol=1e-5)


def test_optimal_control_variate_gram_uses_prior_means(monkeypatch):
  # G_kk = sum_t ||a_kt - mu_kt||^2 with mu the *prior's* means (the score of log p), not q's
  rng = np.random.default_rng(3)
  logits, inter = _trajectories(rng)
  seen = {}
  original = stochastic.rws_wake_losses

  def spy(*args, **kwargs):
    seen.update(kwargs)
    return original(*args, **kwargs)
  monkeypatch.setattr(stochastic, "rws_wake_losses", spy)
  task = GlimpseTask(num_classes=C, estimator="wake_sleep", num_samples=K, prior_control_variate="optimal")
  batch = {"image": np.zeros((B, 4, 4, 1)), "label": np.zeros(B, np.int64)}
  task.train_loss(_FakeModel(proposal=(logits, inter)), {}, batch, rngs={"glimpse": jax.random.PRNGKey(0)})
  assert seen["prior_control_variate"] == "optimal"
  np.testing.assert_allclose(seen["prior_score_gram"], ((inter["samples"] - inter["prior_mean"]) ** 2).sum((-2, -1)),
                             rtol=1e-5)


def test_sampled_eval_respects_the_mask():
  # the K-sample prediction log (1/K) sum_k p(y | a_k, x): masked-out examples count in neither sum; the masked
  # example is right under the sampled prediction, so an unmasked sum would show it
  rng = np.random.default_rng(4)
  logits, s_logits = rng.normal(size=(B, C)), rng.normal(size=(K, B, C))
  probs = np.exp(_log_softmax(s_logits)).mean(0)  # (B, C)
  y = probs.argmax(-1)
  mask = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
  model = _FakeModel(mean=(logits, {}), prior=(s_logits, {}))
  task = GlimpseTask(num_classes=C, estimator="wake_sleep", eval_samples=K)
  sums = task.eval_sums(model, {}, {"image": np.zeros((B, 4, 4, 1)), "label": y, "mask": mask},
                        rngs={"glimpse": jax.random.PRNGKey(0)})
  assert model.calls[1]["num_samples"] == K
  np.testing.assert_allclose(sums["accuracy_sampled"], 4.0)
  np.testing.assert_allclose(sums["loss_sampled"], -(np.log(probs[np.arange(B), y]) * mask).sum(), rtol=1e-5)
  correct = (logits.argmax(-1) == y).astype(np.float64)
  np.testing.assert_allclose(sums["accuracy"], (correct * mask).sum())
  np.testing.assert_allclose(sums["loss"], -(_log_softmax(logits)[np.arange(B), y] * mask).sum(), rtol=1e-5)


class _Images:
  model_kwargs = {"num_classes": 10}
  name = "wide"
  example = {"image": np.zeros((1, 20, 40, 1), np.float32), "label": np.zeros((1,), np.int64)}


@pytest.mark.parametrize("model_cfg,ok", [(dict(glimpse_size=12, num_scales=2), False),  # 24 > 20 rows
                                          (dict(glimpse_size=10, num_scales=2), True)])  # 20 fits 20 x 40
def test_glimpse_must_fit_the_shorter_side(model_cfg, ok):
  # the largest patch must fit min(H, W), not max(H, W): a 20 x 40 image takes no 24 x 24 patch
  config = ml_collections.ConfigDict(dict(model_name="wsram", model=model_cfg, task_kwargs={}))
  if ok:
    GlimpseTask.from_config(config, _Images())
  else:
    with pytest.raises(ConfigError, match=r"largest patch is 24x24 pixels .* larger than the 20x40 images"):
      GlimpseTask.from_config(config, _Images())
