"""bench/glimpse_paths.py: figure from a tiny RAM workdir on fake translated MNIST; drawn boxes = sensor patches."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.attention.glimpse import extract_glimpses, locations_to_pixels
from aila_jax.train import checkpoint, config_check
from aila_jax.train import metrics as metrics_lib
from bench import glimpse_paths
from configs import ram_translated


def _tiny_workdir(root):
  """A workdir as train_and_evaluate leaves it (config.json, an orbax checkpoint of the train state,
  metrics.jsonl), written with the trainer's own writers but without compiling a training step."""
  rng = np.random.default_rng(0)
  np.savez(root / "mnist.npz", x_train=rng.integers(0, 255, (4, 28, 28), dtype=np.uint8),
           y_train=rng.integers(0, 10, 4), x_test=rng.integers(0, 255, (4, 28, 28), dtype=np.uint8),
           y_test=rng.integers(0, 10, 4))
  c = ram_translated.get_config()
  c.data_dir, c.worker_count = str(root), 0
  c.model.update(glimpse_size=4, num_scales=2, num_glimpses=2, glimpse_hidden=8, location_hidden=8, cell="relu",
                 glimpse_features=16, hidden=16)
  c.task_kwargs.eval_samples = 2
  work = root / "work"
  work.mkdir()
  config_check.write_config_json(work, c)
  model = models.get_model("ram", num_classes=10, **c.model)
  # random parameters of the model's shapes (traced, not compiled: the CI budget)
  shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 60, 60, 1)),
                                             sample="mean"))["params"]
  params = jax.tree_util.tree_map(lambda x: rng.normal(0.0, 0.3, x.shape).astype(x.dtype), shapes)
  zeros = jax.tree_util.tree_map(np.zeros_like, params)
  tree = {"step": np.asarray(300), "params": params, "opt_state": {"mu": zeros, "nu": zeros},
          "model_state": {}, "rng": np.asarray([0, 2], np.uint32)}
  ckpt = checkpoint.Checkpointer(work / "checkpoints")
  ckpt.save(300, tree, {"iterator": {}})
  ckpt.close()
  writer = metrics_lib.MetricWriter(work, tensorboard=False)
  writer.write(200, {"eval/accuracy": 0.5, "eval/accuracy_sampled": 0.25})
  writer.write(300, {"eval/accuracy": 0.75, "eval/accuracy_sampled": 0.5})
  writer.write(400, {"eval/accuracy": 1.0})  # after the checkpoint: not its error
  writer.close()
  return work, params


def test_figure_from_checkpoint(tmp_path):
  work, params = _tiny_workdir(tmp_path)
  out = glimpse_paths.main(["--workdir", str(work), "--out", str(tmp_path / "g.png"), "--n", "2",
                            "--samples", "2", "--data_dir", str(tmp_path), "--dpi", "30"])
  assert out["out"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  run, p = out["runs"][0], out["paths"][0]
  assert run["step"] == 300
  jax.tree_util.tree_map(np.testing.assert_array_equal, run["variables"]["params"], params)
  assert run["errors"] == {"step": 300, "error": 0.25, "error_sampled": 0.5}
  with pytest.raises(FileNotFoundError, match=r"--step 200: no checkpoint at that step .*saved steps: \[300\]"):
    glimpse_paths.load_run(work, data_dir=tmp_path, step=200)
  heading = glimpse_paths._heading(run)
  assert "step 300 of 40,000: partly trained" in heading and "test error 25.00% with mean locations" in heading
  assert p["mean_locations"].shape == (2, 2, 2) and p["sampled_locations"].shape == (2, 2, 2, 2)
  # the mean row shows the model's deterministic prediction on the very digits drawn
  test = run["dataset"].eval["test"]
  batch = run["dataset"].preprocess({"image": np.stack([test[i]["image"] for i in range(2)]),
                                     "label": np.array([int(test[i]["label"]) for i in range(2)])})
  logits, inter = jax.jit(run["model"].apply, static_argnames="sample")({"params": params}, batch["image"],
                                                                         sample="mean")
  np.testing.assert_array_equal(p["mean_pred"], np.asarray(logits).argmax(-1))
  np.testing.assert_array_equal(p["mean_locations"], np.asarray(inter["locations"]))
  np.testing.assert_array_equal(p["images"], test.get_batch([0, 1])["image"][..., 0])


def test_drawn_boxes_are_the_sensor_patches():
  """Average-pooling the pixels inside each drawn box gives the retina's patch at that scale."""
  rng = np.random.default_rng(1)
  image = rng.random((1, 20, 20, 1)).astype(np.float32)
  for loc in ([0.0, 0.0], [-0.93, 0.41], [1.0, -1.0], [0.37, 0.98]):
    patches = np.asarray(extract_glimpses(jnp.asarray(image), jnp.asarray([loc], jnp.float32), size=3,
                                          num_scales=3))[0]  # (S, 3, 3, 1)
    padded = np.pad(image[0, ..., 0], 40)
    for k, (top, left, side) in enumerate(glimpse_paths.glimpse_boxes(loc, 20, 20, 3, 3)):
      assert side == 3 * 2**k
      crop = padded[top + 40:top + 40 + side, left + 40:left + 40 + side]
      np.testing.assert_allclose(crop.reshape(3, 2**k, 3, 2**k).mean((1, 3)), patches[k, ..., 0], rtol=1e-6)


def test_centre_pixels_equal_the_library_mapping():
  locs = np.random.default_rng(2).uniform(-1.3, 1.3, (200, 2)).astype(np.float32)
  locs[:4] = [[1, 1], [-1, -1], [0, 0], [np.nan, np.inf]]
  np.testing.assert_array_equal(glimpse_paths.centre_pixels(locs, 60, 37),
                                np.asarray(locations_to_pixels(jnp.asarray(locs), 60, 37)))


def test_not_a_glimpse_workdir(tmp_path):
  with pytest.raises(FileNotFoundError, match="no config.json"):
    glimpse_paths.load_run(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps({"model_name": "transformer"}))
  with pytest.raises(ValueError, match=r"config.model_name of .*: expected one of \('ram', 'wsram'\)"):
    glimpse_paths.load_run(tmp_path)
