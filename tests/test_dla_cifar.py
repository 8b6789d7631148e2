"""bench/dla_cifar.py: the data file's two-part transport (split -> assemble gives every original array back,
a missing or foreign part is refused) and the batched crop + flip against a per-image numpy reference."""
import io

import numpy as np
import pytest
from PIL import Image

from aila_jax.errors import DataError
from bench import dla_cifar


def _tiny_npz(path, n_train=5, n_test=3, seed=0):
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, n in (("train", n_train), ("test", n_test)):
    blobs = []
    for _ in range(n):
      buf = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=75)
      blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    arrays[f"{split}_jpeg"] = np.concatenate(blobs)
    arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    arrays[f"y_{split}"] = rng.integers(0, 10, n).astype(np.int64)
  ordered = {k: arrays[k] for k in dla_cifar.KEYS}
  np.savez(path, **ordered)
  return ordered


def test_split_then_assemble_gives_the_original_arrays(tmp_path):
  original = _tiny_npz(tmp_path / "src.npz")
  a, b = dla_cifar.split_parts(tmp_path / "src.npz", tmp_path / "a", tmp_path / "b", split_at=2)
  with np.load(a) as z:
    assert len(z["y_train"]) == 2 and len(z["y_test"]) == 3
  with np.load(b) as z:
    assert len(z["y_train"]) == 3 and "test_jpeg" not in z.files
  out = dla_cifar.assemble_parts(tmp_path / "a", tmp_path / "b", tmp_path / "full")
  with np.load(out) as z:
    assert z.files == list(original)
    for k, v in original.items():
      assert z[k].dtype == v.dtype and np.array_equal(z[k], v), k


def test_missing_or_foreign_part_is_refused(tmp_path):
  _tiny_npz(tmp_path / "src.npz")
  _tiny_npz(tmp_path / "other.npz", seed=1)
  dla_cifar.split_parts(tmp_path / "src.npz", tmp_path / "a", tmp_path / "b")
  with pytest.raises(FileNotFoundError, match="cifar10_part_b.npz: part B"):
    dla_cifar.assemble_parts(tmp_path / "a", tmp_path / "nowhere", tmp_path / "full")
  dla_cifar.split_parts(tmp_path / "other.npz", tmp_path / "a2", tmp_path / "b2")
  with pytest.raises(DataError, match="different data files"):
    dla_cifar.assemble_parts(tmp_path / "a", tmp_path / "b2", tmp_path / "full")


def _reference(images, idx, dy, dx, flip, pad=4):
  out = []
  for i, y, x, f in zip(idx, dy, dx, flip):
    p = np.pad(images[i], ((pad, pad), (pad, pad), (0, 0)))[y:y + 32, x:x + 32]
    out.append(p[:, ::-1] if f else p)
  return np.stack(out)


def _case():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  plan = dla_cifar.epoch_plan(rng, 6)
  idx = np.concatenate([plan["perm"], [0, 1]])
  dy = np.concatenate([plan["dy"], [0, 8]])  # both edge offsets
  dx = np.concatenate([plan["dx"], [8, 0]])
  flip = np.concatenate([plan["flip"], [True, False]])
  return images, idx, dy, dx, flip


def test_crop_flip_numpy_matches_per_image_reference():
  images, idx, dy, dx, flip = _case()
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
  assert np.array_equal(dla_cifar.crop_flip(padded, idx, dy, dx, flip), _reference(images, idx, dy, dx, flip))
  plan = dla_cifar.epoch_plan(np.random.default_rng(3), 1000)
  assert sorted(plan["perm"]) == list(range(1000))
  assert plan["dy"].min() == 0 and plan["dy"].max() == 8 and 400 < plan["flip"].sum() < 600


def test_crop_flip_torch_matches_per_image_reference():
  torch = pytest.importorskip("torch")
  images, idx, dy, dx, flip = _case()
  padded = torch.from_numpy(np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0))))
  got = dla_cifar.crop_flip(padded, *(torch.from_numpy(a) for a in (idx, dy, dx, flip)))
  assert np.array_equal(got.numpy(), _reference(images, idx, dy, dx, flip))


def test_a_run_stopped_by_sigterm_is_reported_not_a_key_error(tmp_path, monkeypatch):
  """On the GPU machine a command's timeout sent SIGTERM: the trainer saved and returned without train_seconds,
  and the benchmark died with KeyError('train_seconds'). It now says where the run stopped."""
  import types  # pylint: disable=import-outside-toplevel
  from aila_jax import train  # pylint: disable=import-outside-toplevel
  from bench import dla  # pylint: disable=import-outside-toplevel
  np.savez(tmp_path / "cifar10_jpeg_bytes.npz", y_train=np.zeros(1280, np.int64))
  monkeypatch.setattr(train, "train_and_evaluate", lambda config, workdir: {"step": 250, "preempted": True})
  with pytest.raises(RuntimeError, match=r"stopped by SIGTERM at step 250 of 300 \(epoch 25.0 of 30; no test"):
    dla.cifar_run(types.SimpleNamespace(set=[], smoke=False), tmp_path, 30, batch=128)


def _tiny_peer_run(tmp_path, epochs, stop_after=None, ckpt=None, **kw):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  data = {"x_train": rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), "y_train": rng.integers(0, 10, 40),
          "x_test": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), "y_test": rng.integers(0, 10, 20)}
  torch.manual_seed(0)
  model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))
  done = []
  stop = None if stop_after is None else (lambda sec: (done.append(1), len(done) >= stop_after)[1])
  out = dla_cifar.train_peer(model, data, epochs=epochs, batch=16, seed=3, mean=(0.5,) * 3, std=(0.25,) * 3,
                             device="cpu", eval_batch=8, ckpt=ckpt, stop=stop, log=lambda *a, **k: None, **kw)
  return out, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_peer_resumed_from_its_checkpoint_is_the_uninterrupted_run(tmp_path):
  """Three epochs in one go against one epoch, a stop, and a second command resuming from the checkpoint: the
  same per-epoch losses, accuracies and learning rates, and the same final weights and BN statistics."""
  torch = pytest.importorskip("torch")
  whole, w_whole = _tiny_peer_run(tmp_path, 3)
  ckpt = tmp_path / "peer.pt"
  part, _ = _tiny_peer_run(tmp_path, 3, stop_after=1, ckpt=ckpt)
  assert part["epochs_run"] == 1 and ckpt.exists()
  rest, w_rest = _tiny_peer_run(tmp_path, 3, ckpt=ckpt)
  assert rest["epochs_run"] == 3 and rest["resumed_at_epoch"] == [2]
  for key in ("train_loss", "test_accuracy", "lr"):
    assert [r[key] for r in rest["per_epoch"]] == [r[key] for r in whole["per_epoch"]], key
  assert len({r["lr"] for r in whole["per_epoch"]}) == 3  # the cosine schedule moved
  for k, v in w_whole.items():
    assert torch.equal(v, w_rest[k]), k


def test_peer_checkpoint_of_another_recipe_is_refused(tmp_path):
  pytest.importorskip("torch")
  ckpt = tmp_path / "peer.pt"
  _tiny_peer_run(tmp_path, 2, stop_after=1, ckpt=ckpt)
  with pytest.raises(ValueError, match=r"another recipe: epochs 2 there, 3 here"):
    _tiny_peer_run(tmp_path, 3, ckpt=ckpt)
