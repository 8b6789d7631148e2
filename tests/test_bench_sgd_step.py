"""bench/sgd_step.py: N updates in one call (lax.scan) equal N calls of one update."""

import jax
import jax.numpy as jnp
import numpy as np

from aila_jax import models
from bench.sgd_step import sgd_bn_step


def test_scan_of_updates_equals_repeated_calls():
  model = models.get_model("cifar_resnet", num_classes=10, depth=8, widths=(4, 4, 4))
  rng = jax.random.PRNGKey(0)
  x = jax.random.normal(rng, (4, 8, 8, 3))
  y = jnp.array([0, 1, 2, 3])
  variables = model.init(rng, x[:2], train=False)
  one, state1, _ = sgd_bn_step(model, variables, x, y, weight_decay=5e-4, donate=False)
  three, state3, _ = sgd_bn_step(model, variables, x, y, weight_decay=5e-4, donate=False, steps_per_call=3)
  for _ in range(3):
    state1 = one(state1)
  state3 = three(state3)
  for a, b in zip(jax.tree.leaves(state1), jax.tree.leaves(state3)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
  assert not np.allclose(jax.tree.leaves(state1[0])[0], jax.tree.leaves(variables["params"])[0])  # it moved


def test_dla_bench_variant_specs():
  # bench/dla.py --ours_xla: PRESET or PRESET@K (K updates per call), labels as the results JSON names them
  import pytest  # pylint: disable=import-outside-toplevel
  from bench.dla import ours_variant  # pylint: disable=import-outside-toplevel
  assert ours_variant("default") == ("ours", "default", 1)
  assert ours_variant("cmdbuf") == ("ours_cmdbuf", "cmdbuf", 1)
  assert ours_variant("cmdbuf@10") == ("ours_cmdbuf_x10", "cmdbuf", 10)
  with pytest.raises(ValueError, match="expected PRESET or PRESET@K with K >= 1"):
    ours_variant("cmdbuf@0")
  with pytest.raises(ValueError, match="unknown XLA preset 'fast'"):
    ours_variant("fast@2")


def test_dla_bench_profile_divides_by_the_updates_it_traced(monkeypatch, tmp_path):
  # bench/dla.py profile: with K updates per call it traces whole calls, ceil(steps / K) * K updates, and the
  # per-step figures divide by those (3 steps asked at K = 10: one call, 10 updates, not 3)
  import contextlib  # pylint: disable=import-outside-toplevel
  from bench import dla  # pylint: disable=import-outside-toplevel
  ran = []
  fake = type("V", (), {"k": 10, "run": lambda self, n: ran.append(n)})()
  monkeypatch.setattr(dla.jax.profiler, "trace", lambda *a, **k: contextlib.nullcontext())
  monkeypatch.setattr(dla.trace_summary, "summarize", lambda d, steps, process: {"steps": steps})
  monkeypatch.delenv("OUT", raising=False)
  assert dla.profile(fake, 3, "x")["steps"] == 10 and ran == [10]
  ran.clear()
  assert dla.profile(fake, 11, "x")["steps"] == 20 and ran == [20]
