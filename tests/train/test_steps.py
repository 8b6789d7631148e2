"""train_step / eval_step: jit-safe, correct, and the same on an 8-device mesh as on one device."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aila_jax import models, tasks
from aila_jax.train import eval_step, sharding, train_step
from aila_jax.train.state import TrainState


def _setup(batch_norm=True, dropout=0.0):
  model = models.get_model("cnn", num_classes=10, widths=(4, 8), hidden=16, batch_norm=batch_norm,
                           dropout_rate=dropout)
  variables = model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 28, 28, 1)), train=False)
  variables = dict(variables)
  params = variables.pop("params")
  schedule = optax.constant_schedule(1e-2)
  state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(schedule, momentum=0.9),
                            model_state=variables, rng=jax.random.PRNGKey(1))
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(16, 28, 28, 1)).astype(np.float32),
           "label": rng.integers(0, 10, 16).astype(np.int32)}
  task = tasks.ClassificationTask(num_classes=10)
  return state, batch, task, schedule


class TrainStepTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_step_updates_params_batch_stats_and_step(self):
    state, batch, task, schedule = _setup()
    step = self.variant(functools.partial(train_step, task=task, schedule=schedule))
    new_state, metrics = step(state, batch)
    chex.assert_shape(metrics["loss"], ())
    assert int(new_state.step) == 1
    assert not np.allclose(new_state.params["head"]["kernel"], state.params["head"]["kernel"])
    # BatchNorm running statistics moved towards the batch statistics
    assert not np.allclose(new_state.model_state["batch_stats"]["bn_0"]["mean"],
                           state.model_state["batch_stats"]["bn_0"]["mean"])
    np.testing.assert_allclose(metrics["learning_rate"], 1e-2)

  def test_loss_is_cross_entropy_and_gradient_matches_manual(self):
    state, batch, task, schedule = _setup(batch_norm=False)
    _, metrics = jax.jit(functools.partial(train_step, task=task, schedule=schedule))(state, batch)
    logits, _ = state.apply_fn(state.variables(), batch["image"], train=True)
    want = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
    grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        state.apply_fn({"params": p}, batch["image"], train=True)[0], batch["label"]).mean())(state.params)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)

  def test_sharded_over_8_devices_equals_single_device(self):
    assert jax.device_count() == 8
    state, batch, task, schedule = _setup()
    fn = functools.partial(train_step, task=task, schedule=schedule)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      mesh = sharding.make_mesh(devices)
      repl, data = sharding.replicated(mesh), sharding.batch_sharding(mesh)
      step = jax.jit(fn, in_shardings=(repl, data), out_shardings=(repl, repl))
      gbatch = sharding.to_global(batch, data)
      assert len(gbatch["image"].sharding.device_set) == len(devices)
      new_state, metrics = step(jax.device_put(state, repl), gbatch)
      results.append(jax.device_get((new_state.params, new_state.model_state, metrics)))
    chex.assert_trees_all_close(results[0], results[1], rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_eval_step_masks_padding(self):
    state, batch, task, _ = _setup()
    batch = dict(batch, mask=np.r_[np.ones(10), np.zeros(6)].astype(np.float32))
    sums = self.variant(functools.partial(eval_step, task=task))(state, batch)
    np.testing.assert_allclose(sums["count"], 10)
    logits, _ = state.apply_fn(state.variables(), batch["image"], train=False)
    correct = (np.asarray(logits).argmax(-1) == batch["label"])[:10].sum()
    np.testing.assert_allclose(sums["accuracy"], correct)
