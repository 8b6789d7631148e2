"""bench/ram.py's derived numbers pinned against hand calculations: images/s = steps x batch / seconds, the
median over repetitions, the memory feed's batches, the GPU loader's batches of one permutation, and main()'s
rows and ours-over-peer ratios. Models, data, peers and timers are stand-ins: nothing is compiled, no torch."""
import sys
import types

import numpy as np
import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import ram  # noqa: E402
from bench.results_io import load_result  # noqa: E402


def _fake_stack(monkeypatch, n=50):
  """Stand-ins for everything bench_ours builds; returns the list of batches its step saw."""
  seen = []
  config = types.SimpleNamespace(model_name="ram", model={}, task="glimpse", schedule={},
                                 optimizer=types.SimpleNamespace(learning_rate=1e-3))
  monkeypatch.setattr(ram, "_config", lambda data_dir, **k: config)
  arrays = {"image": np.arange(n, dtype=np.float32)[:, None] * 10.0, "label": np.arange(n)}
  dataset = types.SimpleNamespace(model_kwargs={}, example=None, preprocess=lambda a: dict(a),
                                  train=types.SimpleNamespace(arrays=arrays))
  monkeypatch.setattr(ram, "datasets", types.SimpleNamespace(build_dataset=lambda c: dataset))
  monkeypatch.setattr(ram, "models", types.SimpleNamespace(get_model=lambda *a, **k: None))
  monkeypatch.setattr(ram, "tasks", types.SimpleNamespace(get_task=lambda *a, **k: None))
  monkeypatch.setattr(ram, "optim", types.SimpleNamespace(make_schedule=lambda *a, **k: None,
                                                          make_optimizer=lambda *a, **k: None))
  monkeypatch.setattr(ram, "trainer", types.SimpleNamespace(_build_state=lambda *a: 0,
                                                            train_step=lambda *a, **k: None))
  monkeypatch.setattr(ram, "sharding", types.SimpleNamespace(
      make_mesh=lambda: None, replicated=lambda m: None, batch_sharding=lambda m: None,
      to_global=lambda batch, s: batch))

  def step(state, batch):
    seen.append(batch)
    return state + 1, {"loss": 0.25}
  monkeypatch.setattr(ram, "jax", types.SimpleNamespace(jit=lambda f, **k: step, block_until_ready=lambda x: x))
  return seen


def test_bench_ours_images_per_second_is_the_median_rate(monkeypatch):
  seen = _fake_stack(monkeypatch)
  clock = iter([0.0, 2.0, 10.0, 11.0, 20.0, 24.0])  # 3 reps of 10 steps: 2 s, 1 s, 4 s
  monkeypatch.setattr(ram, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  out = ram.bench_ours("d", batch_size=8, steps=10, warmup=3, reps=3, feed="memory")
  assert out["all"] == pytest.approx([80 / 2, 80 / 1, 80 / 4])  # 10 steps x 8 images
  assert out["images_per_sec"] == pytest.approx(40.0)  # median of 40, 80, 20
  assert len(seen) == 3 + 3 * 10
  assert (out["steps"], out["batch_size"], out["feed"], out["final_loss"]) == (10, 8, "memory", 0.25)
  for batch in seen:  # random rows of the train set: image and label of the same rows
    assert batch["image"].shape == (8, 1) and batch["label"].shape == (8,)
    np.testing.assert_array_equal(batch["image"][:, 0], batch["label"] * 10.0)
  assert len({tuple(b["label"]) for b in seen}) > 1
  assert max(int(b["label"].max()) for b in seen) >= 8  # drawn from all 50 rows, not the first batch_size


class _Perm(np.ndarray):
  def to(self, device):
    return self


def _fake_torch(perm):
  class Gen:
    def __init__(self, device):
      pass

    def manual_seed(self, seed):
      return self
  return types.SimpleNamespace(Generator=Gen, randperm=lambda n, generator: np.asarray(perm).view(_Perm))


def test_gpu_loader_batches_are_consecutive_slices_of_one_permutation():
  perm = [7, 3, 9, 0, 1, 8, 2, 6, 5, 4]
  x, y = np.arange(10) * 100, np.arange(10)
  loader = ram._GpuLoader(_fake_torch(perm), x, y, batch_size=3, num_batches=3)
  batches = list(loader)
  assert len(loader) == 3 and len(batches) == 3 and len(loader.sampler.indices) == 9
  assert [list(b[1]) for b in batches] == [[7, 3, 9], [0, 1, 8], [2, 6, 5]]
  assert all(list(bx) == list(by * 100) for bx, by in batches)


def _run_main(monkeypatch, tmp_path, argv, peer):
  calls = []
  speeds = {("ram", 128, "pipeline"): 600.0, ("ram", 128, "memory"): 1000.0}

  def fake_ours(data_dir, *, model_name="ram", batch_size=128, steps=300, warmup=30, reps=3, feed="pipeline"):
    calls.append((model_name, batch_size, feed, steps, warmup, reps))
    return {"images_per_sec": speeds.get((model_name, batch_size, feed), 1.0)}
  monkeypatch.setattr(ram, "bench_ours", fake_ours)
  monkeypatch.setattr(ram, "bench_peer", peer)
  monkeypatch.setattr(sys, "argv", ["ram.py", "--out", str(tmp_path)] + argv)
  ram.main()
  (path,) = tmp_path.glob("ram_*.json")
  return load_result(path), calls


def test_main_ratios_are_ours_over_peer(monkeypatch, tmp_path):
  result, calls = _run_main(monkeypatch, tmp_path, ["--steps", "7", "--reps", "2"],
                            lambda *a, **k: {"images_per_sec": 400.0, "torch": "9.9"})
  assert result["ratio_ours_memory_over_peer"] == pytest.approx(1000 / 400)
  assert result["ratio_ours_pipeline_over_peer"] == pytest.approx(600 / 400)
  assert result["versions"]["torch"] == "9.9" and "torch" not in result["rows"]["peer"]
  assert calls == [("ram", 128, "pipeline", 7, 30, 2), ("ram", 128, "memory", 7, 30, 2),
                   ("ram", 1024, "memory", 7, 30, 2), ("wsram", 128, "memory", 7, 30, 2),
                   ("wsram", 1024, "memory", 7, 30, 2)]
  assert set(result["rows"]) == {"ours_pipeline", "ours_memory", "peer", "ours_memory_batch1024",
                                 "wsram_k5_memory_batch128", "wsram_k5_memory_batch1024"}


def test_main_quick_and_failed_peer(monkeypatch, tmp_path):
  def broken(*a, **k):
    raise RuntimeError("no torch")
  result, calls = _run_main(monkeypatch, tmp_path, ["--quick"], broken)
  assert "failed" in result["rows"]["peer"] and not [k for k in result if k.startswith("ratio")]
  assert {c[3:] for c in calls} == {(5, 2, 1)} and ("ram", 64, "memory", 5, 2, 1) in calls
  assert "wsram_k5_memory_batch64" in result["rows"]
