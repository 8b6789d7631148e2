"""Glimpse task: the REINFORCE and wake-sleep surrogates give the estimators they claim; config errors."""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from aila_jax import models, stochastic
from aila_jax.errors import ConfigError
from aila_jax.tasks.glimpse import GlimpseTask

TINY = dict(glimpse_size=4, num_scales=1, num_glimpses=2, glimpse_hidden=8, location_hidden=8,
            glimpse_features=8, hidden=8, inference_hidden=8, std=0.3)


def _setup(name):
  model = models.get_model(name, num_classes=10, **TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1))
  y = jnp.array([1, 2, 3, 4])
  v = model.init({"params": jax.random.PRNGKey(1), "glimpse": jax.random.PRNGKey(2)}, x, y)
  return model, v, {"image": x, "label": y}


def test_reinforce_gradient_of_location_net_equals_estimator():
  model, v, batch = _setup("ram")
  task = GlimpseTask(num_classes=10, estimator="reinforce", reinforce_weight=1.0)
  rngs = {"glimpse": jax.random.PRNGKey(7)}
  grads = jax.grad(lambda p: task.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0])(v["params"])
  # Manual REINFORCE: -1/B sum_b sum_t (r_b - b_bt) d/dtheta log p(a_bt), samples and rewards fixed.
  logits, inter = model.apply(v, batch["image"], batch["label"], sample="prior", rngs=rngs)
  r = (logits.argmax(-1) == batch["label"]).astype(jnp.float32)
  adv = r[:, None] - inter["baseline"]  # (B, T)
  samples = inter["samples"]

  def log_prior(params):  # log p(a | x) at the fixed samples: recompute with the same draws
    _, i = model.apply({"params": params}, batch["image"], batch["label"], sample="prior", rngs=rngs)
    return i["log_prior"]
  jac = jax.jacrev(log_prior)(v["params"])["trajectory"]["location"]  # leaves (B, T, ...)
  manual = jax.tree.map(lambda j: -jnp.einsum("bt,bt...->...", adv, j) / adv.shape[0], jac)
  chex.assert_trees_all_close(grads["trajectory"]["location"], manual, rtol=1e-4, atol=1e-6)
  del samples


def test_wake_sleep_surrogate_equals_rws_wake_losses_gradient():
  model, v, batch = _setup("wsram")
  task = GlimpseTask(num_classes=10, estimator="wake_sleep", num_samples=3,
                     prior_control_variate="none", proposal_control_variate="none")
  rngs = {"glimpse": jax.random.PRNGKey(3)}
  loss, metrics, _ = task.train_loss(model.apply, v, batch, rngs=rngs)
  logits, inter = model.apply(v, batch["image"], batch["label"], sample="proposal", num_samples=3, rngs=rngs)
  log_lik = jnp.take_along_axis(jax.nn.log_softmax(logits), batch["label"][None, :, None], -1)[..., 0]
  log_w = inter["log_prior"].sum(-1) + log_lik - inter["log_proposal"].sum(-1)  # (K, B)
  w = jax.nn.softmax(log_w, axis=0)
  # the predictor's loss is -mean_b sum_k w_k log p(y | a_k, x)
  np.testing.assert_allclose(metrics["nll"], -(w * log_lik).sum(0).mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["log_marginal"], (jax.nn.logsumexp(log_w, 0) - jnp.log(3.0)).mean(),
                             rtol=1e-5)
  # without control variates, predictor + prior gradient = grad of log p_hat(y|x) with samples fixed
  grads = jax.grad(lambda p: task.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0])(v["params"])

  def neg_log_marginal(params):
    lg, i = model.apply({"params": params}, batch["image"], batch["label"], sample="proposal",
                        num_samples=3, rngs=rngs)
    ll = jnp.take_along_axis(jax.nn.log_softmax(lg), batch["label"][None, :, None], -1)[..., 0]
    lw = i["log_prior"].sum(-1) + ll - jax.lax.stop_gradient(i["log_proposal"].sum(-1))
    return -(jax.nn.logsumexp(lw, 0)).mean()
  ref = jax.grad(neg_log_marginal)(v["params"])
  for part in ("classifier", "core", "glimpse", "location"):
    chex.assert_trees_all_close(grads["trajectory"][part], ref["trajectory"][part], rtol=1e-4, atol=1e-6)
  assert np.isfinite(loss)


@pytest.mark.parametrize("sleep_labels", ["true", "dreamed"])
def test_sleep_update_trains_only_the_inference_network(sleep_labels):
  model, v, batch = _setup("wsram")
  wake = GlimpseTask(num_classes=10, estimator="wake_sleep", num_samples=3)
  both = GlimpseTask(num_classes=10, estimator="wake_sleep", num_samples=3, sleep_weight=1.0,
                     sleep_labels=sleep_labels)
  rngs = {"glimpse": jax.random.PRNGKey(5)}
  g_wake = jax.grad(lambda p: wake.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0])(v["params"])
  g_both, metrics = jax.grad(lambda p: both.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[:2],
                             has_aux=True)(v["params"])
  assert np.isfinite(metrics["sleep_loss"])
  diff = jax.tree.map(lambda a, b: a - b, g_both["trajectory"], g_wake["trajectory"])
  for part in ("classifier", "core", "glimpse", "location"):  # the sleep term reaches q alone
    chex.assert_trees_all_close(diff[part], jax.tree.map(jnp.zeros_like, diff[part]), atol=1e-7)
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(diff["inference"])) > 1e-6


def test_dreamed_sleep_reuses_the_prior_draws_with_other_labels():
  # the dreamed-label pass relies on this: the prior's draws do not depend on the labels given
  model, v, batch = _setup("wsram")
  params = jax.tree.map(lambda x: x, v["params"])
  q_mean = params["trajectory"]["inference"]["mean"]
  q_mean["kernel"] = jax.random.normal(jax.random.PRNGKey(4), q_mean["kernel"].shape)  # q now reads the label
  rngs = {"glimpse": jax.random.PRNGKey(9)}
  _, a = model.apply({"params": params}, batch["image"], batch["label"], sample="prior", rngs=rngs)
  _, b = model.apply({"params": params}, batch["image"], (batch["label"] + 3) % 10, sample="prior", rngs=rngs)
  chex.assert_trees_all_close(a["samples"], b["samples"])
  assert float(jnp.abs(a["log_proposal"] - b["log_proposal"]).max()) > 1e-3  # q evaluated at each label
  _, unlabelled = model.apply({"params": params}, batch["image"], None, sample="prior", rngs=rngs)
  chex.assert_trees_all_close(unlabelled["samples"], a["samples"])  # the first pass runs without labels


def test_eval_sums_deterministic_and_sampled():
  model, v, batch = _setup("wsram")
  task = GlimpseTask(num_classes=10, estimator="wake_sleep", eval_samples=4)
  batch = dict(batch, mask=jnp.array([1.0, 1.0, 1.0, 0.0]))
  sums = task.eval_sums(model.apply, v, batch, rngs={"glimpse": jax.random.PRNGKey(0)})
  assert float(sums["count"]) == 3.0
  np.testing.assert_allclose(sums["accuracy"] + sums["error"], 3.0)
  logits, _ = model.apply(v, batch["image"], batch["label"])
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])[:3].sum()
  np.testing.assert_allclose(sums["loss"], nll, rtol=1e-5)
  # the sampled prediction averages the class probabilities of K = 4 prior trajectories (numpy reference)
  rngs = {"glimpse": jax.random.PRNGKey(0)}
  s_logits, _ = model.apply(v, batch["image"], batch["label"], train=False, sample="prior", num_samples=4,
                            rngs=rngs)
  s_logits = np.asarray(s_logits, np.float64)  # (K, B, C)
  assert s_logits.shape[0] == 4 and np.abs(s_logits[0] - s_logits[1]).max() > 1e-3  # different trajectories
  probs = np.exp(s_logits - s_logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).mean(0)  # (B, C): (1/K) sum_k p(y | a_k, x)
  labels = np.asarray(batch["label"])
  np.testing.assert_allclose(sums["loss_sampled"], -np.log(probs[np.arange(4), labels])[:3].sum(), rtol=1e-5)
  np.testing.assert_allclose(sums["accuracy_sampled"], (probs.argmax(-1) == labels)[:3].sum())
  one = np.exp(s_logits[0] - s_logits[0].max(-1, keepdims=True))
  one = one / one.sum(-1, keepdims=True)
  assert abs(float(sums["loss_sampled"]) + np.log(one[np.arange(4), labels])[:3].sum()) > 1e-4  # K matters


def _config(**task_kwargs):
  return ml_collections.ConfigDict(dict(model_name="wsram", model={}, task_kwargs=task_kwargs))


class _Data:
  model_kwargs = {"num_classes": 10}


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_samples=0), r"config.task_kwargs.num_samples: expected an int >= 1 \(K\), got 0"),
    (dict(eval_samples=-1), "config.task_kwargs.eval_samples"),
    (dict(estimator="vimco"), "config.task_kwargs.estimator"),
    (dict(prior_control_variate="x"), "config.task_kwargs.prior_control_variate"),
    (dict(sleep_weight=-1.0), "config.task_kwargs.sleep_weight"),
    (dict(sleep_labels="model"), r"config.task_kwargs.sleep_labels: expected one of \('true', 'dreamed'\)"),
    (dict(bogus=1), r"takes no option\(s\) \['bogus'\]"),
])
def test_bad_task_config(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    GlimpseTask.from_config(_config(**kwargs), _Data())


def test_wake_sleep_needs_inference_network():
  config = ml_collections.ConfigDict(dict(model_name="ram", model={}, task_kwargs={"estimator": "wake_sleep"}))
  with pytest.raises(ConfigError, match="needs an inference network"):
    GlimpseTask.from_config(config, _Data())


def test_control_variates_keep_wake_gradient_mean():
  """The control variates change the variance, not the mean (checked on the predictor part)."""
  model, v, batch = _setup("wsram")
  plain = GlimpseTask(num_classes=10, estimator="wake_sleep", num_samples=4,
                      prior_control_variate="none", proposal_control_variate="none")
  cv = GlimpseTask(num_classes=10, estimator="wake_sleep", num_samples=4)
  rngs = {"glimpse": jax.random.PRNGKey(1)}
  g1 = jax.grad(lambda p: plain.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0])(v["params"])
  g2 = jax.grad(lambda p: cv.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0])(v["params"])
  chex.assert_trees_all_close(g1["trajectory"]["classifier"], g2["trajectory"]["classifier"], rtol=1e-5)
  stats = [stochastic.gradient_variance(
      lambda p, k, t=t: jax.grad(lambda q: t.train_loss(model.apply, {"params": q}, batch,
                                                      rngs={"glimpse": k})[0])(p)["trajectory"]["inference"],
      v["params"], jax.random.PRNGKey(2), 8) for t in (plain, cv)]
  # with q = p at initialisation the 'uniform' control variate removes most of q's gradient noise
  assert float(stats[1].total_variance) < float(stats[0].total_variance)
