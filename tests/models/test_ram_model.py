"""RAM / WS-RAM models: shapes, sampling, clipping, K samples, bad inputs."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.errors import ConfigError
from aila_jax.nn import ram as ram_nn

TINY = dict(glimpse_size=4, num_scales=2, num_glimpses=3, glimpse_hidden=8, location_hidden=8,
            glimpse_features=16, hidden=16, inference_hidden=8)


def _init(name, shape=(3, 12, 12, 1), **kw):
  model = models.get_model(name, num_classes=10, **{**TINY, **kw})
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  y = jnp.arange(shape[0]) % 10
  rngs = {"params": jax.random.PRNGKey(1), "glimpse": jax.random.PRNGKey(2)}
  return model, model.init(rngs, x, y, train=False), x, y


@pytest.mark.parametrize("name", ["ram", "wsram"])
def test_shapes_mean_and_sampled(name):
  model, v, x, y = _init(name)
  logits, inter = model.apply(v, x, y)
  chex.assert_shape(logits, (3, 10))
  chex.assert_shape(inter["locations"], (3, 3, 2))
  chex.assert_shape(inter["log_prior"], (3, 3))
  sample = "proposal" if name == "wsram" else "prior"
  logits, inter = model.apply(v, x, y, sample=sample, num_samples=4, rngs={"glimpse": jax.random.PRNGKey(3)})
  chex.assert_shape(logits, (4, 3, 10))
  chex.assert_shape(inter["locations"], (4, 3, 3, 2))
  assert ("baseline" in inter) == (name == "ram")
  assert ("log_proposal" in inter) == (name == "wsram")
  # the K samples differ (independent glimpse keys) and the locations are clipped to [-1, 1]
  assert not np.allclose(inter["samples"][0], inter["samples"][1])
  assert float(jnp.abs(inter["locations"]).max()) <= 1.0


def test_mean_mode_is_deterministic_and_sampling_uses_glimpse_stream():
  model, v, x, y = _init("ram")
  a, _ = model.apply(v, x)
  b, _ = model.apply(v, x)
  chex.assert_trees_all_close(a, b)
  s1 = model.apply(v, x, sample="prior", rngs={"glimpse": jax.random.PRNGKey(5)})[1]["samples"]
  s2 = model.apply(v, x, sample="prior", rngs={"glimpse": jax.random.PRNGKey(5)})[1]["samples"]
  s3 = model.apply(v, x, sample="prior", rngs={"glimpse": jax.random.PRNGKey(6)})[1]["samples"]
  chex.assert_trees_all_close(s1, s2)
  assert not np.allclose(s1, s3)


def test_locations_clipped_but_log_prob_of_unclipped_sample():
  model, v, x, _ = _init("ram", std=5.0)  # a wide policy: samples leave [-1, 1]
  _, inter = model.apply(v, x, sample="prior", rngs={"glimpse": jax.random.PRNGKey(0)})
  assert float(jnp.abs(inter["samples"]).max()) > 1.0
  chex.assert_trees_all_close(inter["locations"], jnp.clip(inter["samples"], -1, 1))
  want = ram_nn.gaussian_log_prob(inter["samples"], inter["prior_mean"], jnp.log(5.0))
  chex.assert_trees_all_close(inter["log_prior"], want, rtol=1e-5)


def test_inference_network_starts_equal_to_prior():
  model, v, x, y = _init("wsram")
  _, inter = model.apply(v, x, y, sample="proposal", rngs={"glimpse": jax.random.PRNGKey(0)})
  chex.assert_trees_all_close(inter["log_proposal"], inter["log_prior"], rtol=1e-5)


def test_inference_network_wider_start_and_image_code():
  model, v, x, y = _init("wsram", inference_std_scale=2.0, inference_input="image")
  assert "inference_image" in v["params"]["trajectory"]
  _, inter = model.apply(v, x, y, sample="proposal", rngs={"glimpse": jax.random.PRNGKey(0)})
  # q starts at the prior's mean with twice its standard deviation
  want = ram_nn.gaussian_log_prob(inter["samples"], inter["prior_mean"], jnp.log(2 * 0.1))
  chex.assert_trees_all_close(inter["log_proposal"], want, rtol=1e-5)
  chex.assert_trees_all_close(inter["proposal_mean"], inter["prior_mean"], atol=1e-6)
  # q's mean reads the image code once its output layer is non-zero
  h, labels = jnp.ones((2, 16)), jnp.array([1, 2])
  prior = ram_nn.Gaussian(jnp.zeros((2, 2)), jnp.full((2, 2), jnp.log(0.1)), jnp.zeros((2, 2)))
  q = ram_nn.InferenceNetwork(num_classes=10, hidden=8)
  qv = q.init(jax.random.PRNGKey(0), h, labels, prior, jnp.ones((2, 8)))
  qv = jax.tree_util.tree_map(lambda a: a, qv)
  qv["params"]["mean"]["kernel"] = jnp.ones_like(qv["params"]["mean"]["kernel"])
  m1 = q.apply(qv, h, labels, prior, jnp.zeros((2, 8))).mean
  m2 = q.apply(qv, h, labels, prior, 3.0 * jnp.ones((2, 8))).mean
  assert float(jnp.abs(m1 - m2).max()) > 1e-3
  # the image code average-pools to at most 14 pixels a side: 60x60 -> 12x12 blocks of 5x5
  code = ram_nn.ImageCode(features=5)
  cv = code.init(jax.random.PRNGKey(0), jnp.zeros((1, 60, 60, 1)))
  chex.assert_shape(cv["params"]["code"]["kernel"], (12 * 12, 5))
  _, hv, _, _ = _init("wsram")
  assert "inference_image" not in hv["params"]["trajectory"]


def test_lstm_core():
  model, v, x, _ = _init("ram", cell="lstm")
  chex.assert_shape(model.apply(v, x)[0], (3, 10))


def test_gaussian_log_prob_matches_scipy_formula():
  x, m, ls = jnp.array([[0.3, -0.2]]), jnp.array([[0.1, 0.1]]), jnp.log(jnp.array([0.5, 2.0]))
  ref = sum(-0.5 * ((xi - mi) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
            for xi, mi, s in zip([0.3, -0.2], [0.1, 0.1], [0.5, 2.0]))
  np.testing.assert_allclose(ram_nn.gaussian_log_prob(x, m, ls), [ref], rtol=1e-6)


@pytest.mark.parametrize("key,value", [("glimpse_size", 0), ("num_scales", 0), ("num_scales", -1),
                                       ("num_glimpses", 0), ("std", 0.0), ("cell", "gru"),
                                       ("inference_input", "pixels"), ("inference_std_scale", 0.0)])
def test_bad_config(key, value):
  with pytest.raises(ConfigError, match=f"config.model.{key}"):
    models.get_model("ram", num_classes=10, **{key: value})


def test_bad_image_rank_and_channels():
  model, v, x, _ = _init("ram")
  with pytest.raises(ValueError, match=r"images must have shape \[batch, H, W, 1\].*got shape \(3, 12, 12\)"):
    model.apply(v, x[..., 0])
  with pytest.raises(ValueError, match=r"config.model.channels = 1.*got shape \(3, 12, 12, 3\)"):
    model.apply(v, jnp.zeros((3, 12, 12, 3)))


def test_bad_num_samples_and_sampler():
  model, v, x, y = _init("wsram")
  with pytest.raises(ValueError, match=r"num_samples \(K\) must be an int >= 1"):
    model.apply(v, x, y, sample="prior", num_samples=0, rngs={"glimpse": jax.random.PRNGKey(0)})
  ram, rv, _, _ = _init("ram")
  with pytest.raises(ValueError, match="sample='proposal' needs a model with an inference network"):
    ram.apply(rv, x, y, sample="proposal", rngs={"glimpse": jax.random.PRNGKey(0)})
