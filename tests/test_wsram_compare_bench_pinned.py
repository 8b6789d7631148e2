"""bench/wsram_compare.py's probe and summary pinned against hand calculations: the probe differentiates the
loss of a fixed batch of the first --probe_batch test images, reports the location network's gradient-variance
fields under their own names and the ESS as the mean over 8 draws keyed by seed + 1; summarize() ratios are a
variant's first step / time at the naive estimator's final error over naive's. Data, task, model and checkpoints
are stand-ins: no training."""
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import wsram_compare as wc  # noqa: E402


def test_probe_fields_batch_and_ess_mean(monkeypatch, tmp_path):
  source = [{"image": np.full((2,), float(i)), "label": np.int64(i)} for i in range(10)]
  dataset = types.SimpleNamespace(model_kwargs={}, eval={"test": source}, preprocess=lambda b: dict(b))
  monkeypatch.setattr(wc.datasets, "build_dataset", lambda c: dataset)
  seen = {}

  class Task:
    def train_loss(self, apply_fn, variables, batch, rngs):
      seen["labels"] = batch["label"]
      p = variables["params"]
      u = jax.random.uniform(rngs["glimpse"])
      loss = jnp.sum(p["trajectory"]["location"]["w"] * batch["image"].sum()) + jnp.sum(p["core"]["w"])
      return loss, {"ess": 1.0 + u}, None
  monkeypatch.setattr(wc.GlimpseTask, "from_config", classmethod(lambda cls, c, d: Task()))
  monkeypatch.setattr(wc.models, "get_model", lambda *a, **k: types.SimpleNamespace(apply=None))
  params = {"trajectory": {"location": {"w": np.ones(3, np.float32)}}, "core": {"w": np.ones(2, np.float32)}}
  monkeypatch.setattr(wc.checkpoint, "load_checkpoint", lambda wd, step: (None, {"params": params}, None))
  grads = {}

  def fake_variance(grad_fn, p, key, draws):
    grads["g"] = grad_fn(p, key)
    grads["draws"] = draws
    return types.SimpleNamespace(total_variance=3.0, mean_squared_norm=5.0)
  monkeypatch.setattr(wc, "stochastic", types.SimpleNamespace(gradient_variance=fake_variance))
  config = types.SimpleNamespace(model_name="wsram", model=types.SimpleNamespace(to_dict=lambda: {}))
  out = wc.probe(config, tmp_path, [4, 8], batch_size=4, draws=6, seed=2)
  np.testing.assert_array_equal(seen["labels"], [0, 1, 2, 3])  # the first 4 test images
  np.testing.assert_allclose(grads["g"]["w"], [2 * 6.0] * 3)  # d/dw of w . 1 * sum(images) = 2 * (0+1+2+3)
  assert grads["draws"] == 6 and set(grads["g"]) == {"w"}
  keys = jax.random.split(jax.random.key(3), 8)
  expected_ess = 1.0 + float(np.mean(np.asarray(jax.vmap(jax.random.uniform)(keys))))
  assert [o["step"] for o in out] == [4, 8]
  for o in out:
    assert o["location_grad_variance"] == 3.0 and o["location_grad_mean_sq_norm"] == 5.0
    assert o["ess"] == pytest.approx(expected_ess, rel=1e-6)


def test_summary_uses_naive_final_and_equality_reaches():
  def evals(errs, walls):
    return [{"step": 100 * (i + 1), "train_wall": w, "error": e} for i, (e, w) in enumerate(zip(errs, walls))]
  runs = {"ds": {"naive": {"evals": evals([0.4, 0.3, 0.2, 0.1], [5.0, 10.0, 15.0, 40.0])},
                 "ram": {"evals": evals([0.3, 0.1, 0.05], [4.0, 9.0, 12.0])},
                 "empty": {"evals": []}}}
  s = wc.summarize(runs)["ds"]
  assert "empty" not in s
  r = s["ram"]
  assert (r["final_error"], r["final_step"], r["train_wall"]) == (0.05, 300, 12.0)
  assert r["reaches_naive_final_at"]["step"] == 200  # 0.1 <= naive's final 0.1
  assert r["step_ratio_to_naive"] == pytest.approx(200 / 400)
  assert r["train_wall_ratio_to_naive"] == pytest.approx(9.0 / 40.0)
  assert s["naive"]["step_ratio_to_naive"] == 1.0 and s["naive"]["train_wall_ratio_to_naive"] == 1.0
