"""The training step the benchmarks time for our models: SGD with momentum 0.9, learning rate 0.1 and coupled
weight decay, cross-entropy on a fixed random batch, BatchNorm statistics updated (as the PyTorch peers'
``optimizer.step()`` with ``weight_decay``)."""

from __future__ import annotations

import functools

import jax
import optax

from aila_jax.train.state import param_count


def sgd_bn_step(model, variables, x, y, *, weight_decay: float, donate: bool = True, rngs=None,
                compiler_options=None, steps_per_call: int = 1):
  """``(step, state, parameter count)``: ``step(state) -> state`` is one jitted update of ``model`` on
  ``(x, y)``, ``state = (params, batch_stats, opt_state)``; ``donate`` hands the state's buffers to the step;
  ``compiler_options`` go to ``jax.jit`` (XLA options, see bench/xla_presets.py); ``steps_per_call > 1`` makes one
  call run that many updates in a ``lax.scan`` (one dispatch, and with the ``cmdbuf_while`` preset one CUDA graph
  for the loop), so a caller divides its time per call by it."""
  params, stats = variables["params"], variables["batch_stats"]
  tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(0.1, momentum=0.9))

  def loss_fn(p, s):
    (logits, _), new = model.apply({"params": p, "batch_stats": s}, x, train=True, mutable=["batch_stats"],
                                   **({"rngs": rngs} if rngs else {}))
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new["batch_stats"]

  @functools.partial(jax.jit, donate_argnums=0 if donate else (), compiler_options=compiler_options)
  def step(state):
    def one(state, _):
      p, s, o = state
      (_, s), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s)
      updates, o = tx.update(g, o, p)
      return (optax.apply_updates(p, updates), s, o), None
    if steps_per_call == 1:
      return one(state, None)[0]
    return jax.lax.scan(one, state, None, length=steps_per_call)[0]

  return step, (params, stats, tx.init(params)), param_count(params)
