"""config.augment_on='device': crop + flip + normalisation inside the jitted step, against loops over the definition."""
import jax
import numpy as np
import pytest

from aila_jax.data import datasets, device_augment
from aila_jax.errors import ConfigError
from aila_jax.train import train_and_evaluate
from aila_jax.train.checkpoint import load_checkpoint
from helpers import make_testing_config


def _crop_flip_loops(images, dy, dx, flip, pad):
  """The definition, one example and one pixel at a time: zero outside the image, mirrored along W."""
  b, h, w, c = images.shape
  out = np.zeros_like(images)
  for i in range(b):
    for r in range(h):
      for q in range(w):
        src_q = (w - 1 - q) if flip[i] else q
        y, x = r + dy[i] - pad, src_q + dx[i] - pad
        if 0 <= y < h and 0 <= x < w:
          out[i, r, q] = images[i, y, x]
  return out


def test_crop_flip_equals_the_definition_at_every_offset():
  pad, rng = 2, np.random.default_rng(0)
  images = rng.integers(1, 256, size=(2 * (2 * pad + 1), 5, 6, 3), dtype=np.uint8)  # nonzero: padding shows
  dy = np.tile(np.arange(2 * pad + 1), 2)
  dx = np.roll(dy, 3)
  flip = np.arange(len(dy)) % 2 == 0
  got = np.asarray(device_augment.crop_flip(images, dy, dx, flip, pad))
  np.testing.assert_array_equal(got, _crop_flip_loops(images, dy, dx, flip, pad))


def test_draws_cover_every_offset_evenly_and_flip_half():
  dy, dx, flip = map(np.asarray, device_augment.crop_flip_draws(jax.random.PRNGKey(3), 9000, 4))
  for d in (dy, dx):
    counts = np.bincount(d, minlength=9)
    assert len(counts) == 9 and counts.min() > 850 and counts.max() < 1150  # 1000 each expected (sd ~30)
  assert abs(flip.mean() - 0.5) < 0.03
  assert np.corrcoef(dy, dx)[0, 1] ** 2 < 1e-3  # independent streams
  rng = jax.random.PRNGKey(0)  # each training step draws anew
  keys = [device_augment.step_key(rng, s) for s in (0, 1, 2)]
  draws = [np.asarray(device_augment.crop_flip_draws(k, 64, 4)[0]) for k in keys]
  assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])


def test_transform_normalises_as_the_host_pipeline_and_augments_with_its_draws():
  mean, std, pad = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), 4
  t = device_augment.DeviceImageTransform(mean, std, pad, datasets.uint8_images)
  batch = {"image": np.random.default_rng(1).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
           "label": np.arange(6, dtype=np.int64)}
  raw = t.host_preprocess(batch)
  assert raw["image"].dtype == np.uint8 and raw["label"].dtype == np.int32
  norm = (batch["image"] / 255.0 - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(np.asarray(t(raw)["image"]), norm, rtol=1e-5, atol=1e-5)
  key = jax.random.PRNGKey(7)
  dy, dx, flip = map(np.asarray, device_augment.crop_flip_draws(key, 6, pad))
  want = (_crop_flip_loops(batch["image"], dy, dx, flip, pad) / 255.0 - np.array(mean)) / np.array(std)
  np.testing.assert_allclose(np.asarray(t(raw, key)["image"]), want, rtol=1e-5, atol=1e-5)


def _params(workdir):
  return jax.tree_util.tree_leaves(load_checkpoint(workdir)[1]["params"])


def test_trainer_device_augmentation_resumes_exactly_and_matches_the_host_without_crops(tmp_path, data_dir):
  def cfg(steps, **kw):
    return make_testing_config(data_dir, num_train_steps=steps, checkpoint_every=10, eval_every=0, log_every=5,
                               eval_batch_size=5000, **kw)

  device = {"augment": "crop_flip", "augment_on": "device"}
  result = train_and_evaluate(cfg(20, **device), tmp_path / "straight")
  assert result["eval/count"] == 10000
  train_and_evaluate(cfg(10, **device), tmp_path / "resumed")
  cropped_10 = _params(tmp_path / "resumed")
  train_and_evaluate(cfg(10, steps_per_call=5, **device), tmp_path / "chunked")  # 5 updates per call: same crops
  for a, b in zip(cropped_10, _params(tmp_path / "chunked")):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  train_and_evaluate(cfg(20, **device), tmp_path / "resumed")  # resumes at step 10
  for a, b in zip(_params(tmp_path / "straight"), _params(tmp_path / "resumed")):
    np.testing.assert_array_equal(a, b)
  # no crops: the device path trains on exactly what the host pipeline gives
  dev = train_and_evaluate(cfg(10, augment="none", augment_on="device"), tmp_path / "dev_none")
  host = train_and_evaluate(cfg(10, augment="none", augment_on="host"), tmp_path / "host_none")
  assert dev["eval/loss"] == pytest.approx(host["eval/loss"], rel=1e-5)  # evaluation normalises on the device
  for a, b in zip(_params(tmp_path / "dev_none"), _params(tmp_path / "host_none")):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # and the crops do change what it trains on
  assert any(not np.allclose(a, c, rtol=1e-3, atol=1e-4) for a, c in zip(_params(tmp_path / "dev_none"), cropped_10))


def test_bad_augment_on_is_a_config_error(tmp_path, data_dir):
  with pytest.raises(ConfigError, match="augment_on"):
    train_and_evaluate(make_testing_config(data_dir, augment_on="gpu"), tmp_path / "a")
  from configs import transformer_copy  # pylint: disable=g-import-not-at-top
  config = transformer_copy.get_config()
  config.augment_on = "device"
  with pytest.raises(ConfigError, match="augment_on='device': dataset .* has no device augmentation"):
    train_and_evaluate(config, tmp_path / "b")


def test_draws_do_not_depend_on_how_the_batch_is_sharded():
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  key = jax.random.PRNGKey(11)
  one = device_augment.crop_flip_draws(key, 64, 4)
  split = jax.jit(lambda k: device_augment.crop_flip_draws(k, 64, 4), out_shardings=sharded)(key)
  assert jax.device_count() == 8 and len(split[0].sharding.device_set) == 8
  for a, b in zip(one, split):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_normalisation_constants_from_the_config(tmp_path, data_dir):
  # config.image_mean / image_std replace the dataset's statistics on the host and in the step alike
  spec = datasets.sources.DATASETS["mnist"]
  images = np.random.default_rng(3).integers(0, 256, (4,) + spec.image_shape, dtype=np.uint8)
  batch = {"image": images, "label": np.arange(4, dtype=np.int64)}
  for where in ("host", "device"):
    config = make_testing_config(data_dir, dataset="mnist", augment_on=where, image_mean=(0.5,), image_std=(0.25,))
    ds = datasets.image_classification(config, spec)
    got = (ds.preprocess(batch) if where == "host" else ds.device_transform(ds.device_transform.host_preprocess(batch)))
    np.testing.assert_allclose(np.asarray(got["image"]), (images / 255.0 - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
  default = datasets.image_classification(make_testing_config(data_dir, dataset="mnist"), spec).preprocess(batch)
  np.testing.assert_allclose(default["image"], (images / 255.0 - spec.mean[0]) / spec.std[0], rtol=1e-6, atol=1e-6)
  with pytest.raises(ConfigError, match=r"config.image_std: expected 1 positive number\(s\), one per channel of mnist"):
    datasets.image_classification(make_testing_config(data_dir, dataset="mnist", image_std=(0.2, 0.2, 0.2)), spec)
  with pytest.raises(ConfigError, match=r"config.image_std: expected 1 positive"):
    datasets.image_classification(make_testing_config(data_dir, dataset="mnist", image_std=(0.0,)), spec)
