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
  grads = jax.jit(jax.grad(lambda p: task.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0]))(v["params"])
  # Manual REINFORCE: -1/B sum_b sum_t (r_b - b_bt) d/dtheta log p(a_bt), samples and rewards fixed.
  logits, inter = model.apply(v, batch["image"], batch["label"], sample="prior", rngs=rngs)
  r = (logits.argmax(-1) == batch["label"]).astype(jnp.float32)
  adv = r[:, None] - inter["baseline"]  # (B, T)
  samples = inter["samples"]

  def log_prior(params):  # log p(a | x) at the fixed samples: recompute with the same draws
    _, i = model.apply({"params": params}, batch["image"], batch["label"], sample="prior", rngs=rngs)
    return i["log_prior"]
  jac = jax.jit(jax.jacrev(log_prior))(v["params"])["trajectory"]["location"]  # leaves (B, T, ...)
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
  grads = jax.jit(jax.grad(lambda p: task.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0]))(v["params"])

  def neg_log_marginal(params):
    lg, i = model.apply({"params": params}, batch["image"], batch["label"], sample="proposal",
                        num_samples=3, rngs=rngs)
    ll = jnp.take_along_axis(jax.nn.log_softmax(lg), batch["label"][None, :, None], -1)[..., 0]
    lw = i["log_prior"].sum(-1) + ll - jax.lax.stop_gradient(i["log_proposal"].sum(-1))
    return -(jax.nn.logsumexp(lw, 0)).mean()
  ref = jax.jit(jax.grad(neg_log_marginal))(v["params"])
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
  g1 = jax.jit(jax.grad(lambda p: plain.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0]))(v["params"])
  g2 = jax.jit(jax.grad(lambda p: cv.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0]))(v["params"])
  chex.assert_trees_all_close(g1["trajectory"]["classifier"], g2["trajectory"]["classifier"], rtol=1e-5)
  stats = [stochastic.gradient_variance(
      lambda p, k, t=t: jax.grad(lambda q: t.train_loss(model.apply, {"params": q}, batch,
                                                      rngs={"glimpse": k})[0])(p)["trajectory"]["inference"],
      v["params"], jax.random.PRNGKey(2), 8) for t in (plain, cv)]
  # with q = p at initialisation the 'uniform' control variate removes most of q's gradient noise
  assert float(stats[1].total_variance) < float(stats[0].total_variance)


# --- issue 18: the estimators of the WS-RAM paper's comparison, and bad input ---


def _location_jacobian(model, v, batch, rngs, **kw):
  """d log p(a | x) / d(location params) at fixed draws: leaves (..., B, T, ...) ."""
  def log_prior(params):
    _, i = model.apply({"params": params}, batch["image"], None, **kw, rngs=rngs)
    return i["log_prior"]
  return jax.jit(jax.jacrev(log_prior))(v["params"])["trajectory"]["location"]


def test_naive_reinforce_is_plain_reinforce_without_baseline():
  """(a): -grad = 1/B sum_b r_b sum_t grad log p(a_bt); the classifier gets the cross-entropy gradient."""
  model = models.get_model("ram", num_classes=10, baseline=False, **TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1))
  v = model.init({"params": jax.random.PRNGKey(1), "glimpse": jax.random.PRNGKey(2)}, x)
  rngs = {"glimpse": jax.random.PRNGKey(7)}
  logits, inter = model.apply(v, x, None, sample="prior", rngs=rngs)
  assert "baseline" not in inter
  pred = np.asarray(logits.argmax(-1))
  y = jnp.asarray(np.where(np.arange(4) < 2, pred, (pred + 1) % 10))  # rewards 1, 1, 0, 0
  reward = np.array([1.0, 1.0, 0.0, 0.0])
  batch = {"image": x, "label": y}
  task = GlimpseTask(num_classes=10, estimator="reinforce", reinforce_baseline="none", reinforce_weight=0.5)
  grads = jax.jit(jax.grad(lambda p: task.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0]))(v["params"])
  jac = _location_jacobian(model, v, batch, rngs, sample="prior")
  manual = jax.tree.map(lambda j: -0.5 * np.einsum("b,bt...->...", reward, np.asarray(j, np.float64)) / 4, jac)
  chex.assert_trees_all_close(grads["trajectory"]["location"], manual, rtol=1e-4, atol=1e-7)
  ce = jax.jit(jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": p}, x, y, sample="prior", rngs=rngs)[0], y).mean()))(v["params"])
  chex.assert_trees_all_close(grads["trajectory"]["classifier"], ce["trajectory"]["classifier"], rtol=1e-5)


def test_prior_as_proposal_weights_by_likelihood():
  """(e): a_k ~ p(a | x), w_k = softmax_k log p(y | a_k, x); the prior gets sum_k (w_k - 1/K) grad log p(a_k)."""
  model = models.get_model("ram", num_classes=10, baseline=False, **TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1))
  y = jnp.array([1, 2, 3, 4])
  v = model.init({"params": jax.random.PRNGKey(1), "glimpse": jax.random.PRNGKey(2)}, x, y)
  batch = {"image": x, "label": y}
  task = GlimpseTask(num_classes=10, estimator="wake_sleep", num_samples=3, proposal="prior")
  rngs = {"glimpse": jax.random.PRNGKey(5)}
  grads, metrics = jax.jit(jax.grad(lambda p: task.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[:2],
                                    has_aux=True))(v["params"])
  logits, _ = model.apply(v, x, None, sample="prior", num_samples=3, rngs=rngs)
  log_lik = np.asarray(jax.nn.log_softmax(logits), np.float64)
  log_lik = np.take_along_axis(log_lik, np.asarray(y)[None, :, None], -1)[..., 0]  # (K, B)
  w = np.exp(log_lik - log_lik.max(0)) / np.exp(log_lik - log_lik.max(0)).sum(0)
  np.testing.assert_allclose(metrics["log_marginal"], (np.log(np.exp(log_lik).sum(0)) - np.log(3.0)).mean(),
                             rtol=1e-5)
  jac = _location_jacobian(model, v, batch, rngs, sample="prior", num_samples=3)  # (K, B, T, ...)
  manual = jax.tree.map(lambda j: -np.einsum("kb,kbt...->...", w - 1.0 / 3, np.asarray(j, np.float64)) / 4, jac)
  chex.assert_trees_all_close(grads["trajectory"]["location"], manual, rtol=1e-4, atol=1e-7)


def test_optimal_prior_control_variate_in_the_task():
  """The signal is w_k - alpha_b r_k / K, alpha_b from the other examples (numpy reference)."""
  model, v, batch = _setup("wsram")
  task = GlimpseTask(num_classes=10, estimator="wake_sleep", num_samples=3, prior_control_variate="optimal",
                     proposal_control_variate="none")
  rngs = {"glimpse": jax.random.PRNGKey(4)}
  grads = jax.jit(jax.grad(lambda p: task.train_loss(model.apply, {"params": p}, batch, rngs=rngs)[0]))(v["params"])
  logits, inter = model.apply(v, batch["image"], batch["label"], sample="proposal", num_samples=3, rngs=rngs)
  f64 = lambda a: np.asarray(a, np.float64)
  log_lik = np.take_along_axis(f64(jax.nn.log_softmax(logits)), np.asarray(batch["label"])[None, :, None],
                               -1)[..., 0]
  lp, lq = f64(inter["log_prior"]).sum(-1), f64(inter["log_proposal"]).sum(-1)  # (K, B)
  log_w = lp + log_lik - lq
  w = np.exp(log_w - log_w.max(0)) / np.exp(log_w - log_w.max(0)).sum(0)
  c = np.exp(lp - lq) / 3
  gram = ((f64(inter["samples"]) - f64(inter["prior_mean"])) ** 2).sum((-2, -1))  # (K, B)
  num, den = (w * gram * c).sum(0), (c * gram * c).sum(0)
  alpha = (num.sum() - num) / (den.sum() - den)  # (B,)
  assert np.ptp(alpha) > 1e-3 and np.abs(alpha - 1).max() > 1e-3  # neither constant nor the a = 1 case
  jac = jax.jit(jax.jacrev(lambda p: model.apply({"params": p}, batch["image"], batch["label"], sample="proposal",
                                         num_samples=3, rngs=rngs)[1]["log_prior"]))(v["params"])
  manual = jax.tree.map(lambda j: -np.einsum("kb,kbt...->...", w - alpha * c, f64(j)) / 4,
                        jac["trajectory"]["location"])
  chex.assert_trees_all_close(grads["trajectory"]["location"], manual, rtol=2e-4, atol=1e-6)


class _Images:
  model_kwargs = {"num_classes": 10}
  name = "mnist"
  example = {"image": np.zeros((1, 28, 28, 1), np.float32), "label": np.zeros((1,), np.int64)}


@pytest.mark.parametrize("kwargs,match", [
    (dict(eval_samples=2.5), r"config.task_kwargs.eval_samples: expected an int >= 1 \(K\) or None "
                              r"\(no sampled evaluation\), got 2.5"),
    (dict(eval_samples=True), "config.task_kwargs.eval_samples"),
    (dict(eval_samples=0), r"config.task_kwargs.eval_samples: expected an int >= 1 \(K\) or None .*, got 0"),
    (dict(eval_samples=-3), r"config.task_kwargs.eval_samples: expected an int >= 1 \(K\) or None .*, got -3"),
    (dict(prior_control_variate="optimall"),
     r"config.task_kwargs.prior_control_variate: expected one of \('none', 'self_normalized', 'unnormalized', "
     r"'optimal'\), got 'optimall'"),
    (dict(proposal_control_variate="optimal"), r"config.task_kwargs.proposal_control_variate: expected one of"),
    (dict(reinforce_baseline="vimco"), r"config.task_kwargs.reinforce_baseline: expected one of \('learned', 'none'\)"),
    (dict(proposal="posterior"), r"config.task_kwargs.proposal: expected one of \('inference', 'prior'\)"),
    (dict(proposal="prior", sleep_weight=1.0), r"config.task_kwargs.sleep_weight: the sleep update"),
])
def test_bad_task_config_issue18(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    GlimpseTask.from_config(_config(**kwargs), _Images())


def test_eval_samples_none_means_off():
  task = GlimpseTask.from_config(_config(eval_samples=None), _Images())
  model, v, batch = _setup("wsram")
  assert "accuracy_sampled" not in task.eval_sums(model.apply, v, batch)


@pytest.mark.parametrize("model_cfg,ok", [
    (dict(glimpse_size=8, num_scales=3), True),     # 32 > 28
    (dict(glimpse_size=29), True),                  # one scale of 29 > 28
    (dict(glimpse_size=7, num_scales=3), False),    # 28 fits
    (dict(num_scales=2), False),                    # default glimpse_size 8: 16 fits
])
def test_glimpse_larger_than_image(model_cfg, ok):
  config = ml_collections.ConfigDict(dict(model_name="wsram", model=model_cfg, task_kwargs={}))
  if ok:
    with pytest.raises(ConfigError, match=r"config.model.glimpse_size=\d+ with config.model.num_scales=\d+: the "
                                          r"largest patch is \d+x\d+ pixels .* larger than the 28x28 images"):
      GlimpseTask.from_config(config, _Images())
  else:
    GlimpseTask.from_config(config, _Images())


def test_prior_proposal_needs_no_inference_network():
  config = ml_collections.ConfigDict(dict(model_name="ram", model={"baseline": False},
                                          task_kwargs={"estimator": "wake_sleep", "proposal": "prior"}))
  assert GlimpseTask.from_config(config, _Images()).proposal == "prior"


def test_cluttered100_config_is_the_papers_setup():
  """configs/ram_cluttered100.py: 8 glimpses of 4 scales of 12x12; the 96-pixel patch fits 100x100, a 5th does not."""
  from configs import ram_cluttered100, wsram_cluttered100  # pylint: disable=g-import-not-at-top

  class _Canvas(_Images):
    name = "cluttered_mnist_100"
    example = {"image": np.zeros((1, 100, 100, 1), np.float32), "label": np.zeros((1,), np.int64)}

  for module in (ram_cluttered100, wsram_cluttered100):
    config = module.get_config()
    assert config.dataset == "cluttered_mnist_100" and config.num_train_steps == 90000
    assert (config.model.num_glimpses, config.model.glimpse_size, config.model.num_scales) == (8, 12, 4)
    GlimpseTask.from_config(config, _Canvas())
    config.model.num_scales = 5
    with pytest.raises(ConfigError, match=r"config.model.glimpse_size=12 with config.model.num_scales=5: the "
                                          r"largest patch is 192x192 pixels .* larger than the 100x100 images"):
      GlimpseTask.from_config(config, _Canvas())
