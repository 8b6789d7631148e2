"""bench/dla.py's derived numbers pinned against hand calculations: a variant's step time is the median of its
interleaved rounds, images/s = batch / step time, the ratio is ours over the faster peer variant, first-step
seconds of a K-update call, seconds per update, the profile's whole calls and the CIFAR run's bookkeeping.
Models, peers and timers are stand-ins: nothing is compiled, no torch."""
import contextlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import dla  # noqa: E402
from bench.results_io import load_result  # noqa: E402


def test_ours_variant_labels_presets_and_updates_per_call():
  assert dla.ours_variant("default") == ("ours", "default", 1)
  assert dla.ours_variant("cmdbuf") == ("ours_cmdbuf", "cmdbuf", 1)
  assert dla.ours_variant("cmdbuf@10") == ("ours_cmdbuf_x10", "cmdbuf", 10)
  assert dla.ours_variant("default@1") == ("ours", "default", 1)
  assert dla.ours_variant("default@2") == ("ours_x2", "default", 2)
  for bad in ("cmdbuf@0", "cmdbuf@x", "cmdbuf@-1"):
    with pytest.raises(ValueError, match="K >= 1"):
      dla.ours_variant(bad)


def test_ours_run_is_seconds_per_update_over_whole_calls(monkeypatch):
  calls = []
  monkeypatch.setattr(dla, "make_ours", lambda *a, **k: (lambda s: calls.append(1) or s + 1, jnp.zeros(()), 7))
  v = dla.Ours("cifar_dla", 32, 2, 10, steps_per_call=4)
  clock = iter([100.0, 106.0])
  monkeypatch.setattr(dla, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  # 10 updates -> ceil(10 / 4) = 3 calls = 12 updates in 6 s: 0.5 s an update
  assert v.run(10) == pytest.approx(0.5) and len(calls) == 3
  clock = iter([0.0, 2.0])
  calls.clear()
  assert v.run(1) == pytest.approx(0.5) and len(calls) == 1  # one call of 4 updates in 2 s


def test_profile_traces_whole_calls_and_divides_by_their_updates(monkeypatch):
  seen = {}
  monkeypatch.setattr(jax.profiler, "trace", lambda *a, **k: contextlib.nullcontext())
  monkeypatch.setattr(dla.trace_summary, "summarize",
                      lambda d, updates, process: seen.update(updates=updates, process=process) or {"k": 1})
  monkeypatch.delenv("OUT", raising=False)
  ran = []
  v = types.SimpleNamespace(k=4, run=ran.append)
  assert dla.profile(v, 10, "x") == {"k": 1}
  assert ran == [12] and seen == {"updates": 12, "process": "/host:CPU"}  # ceil(10 / 4) * 4
  ran.clear()
  v.k = 5
  dla.profile(v, 10, "x")
  assert ran == [10] and seen["updates"] == 10


def test_kernel_comparison_takes_each_profiled_variant():
  prof = {"kernels": 12, "kernel_ms_per_step": 3.5, "busy_ms_per_step": 4.0, "kernels_per_step": 6.0,
          "categories": {"conv": {"ms_per_step": 2.0}, "gemm": {"ms_per_step": 1.5}}}
  rows = {"ours": {"profile": prof}, "eager": {"profile": {"error": "x"}}, "compiled": {}}
  assert dla.kernel_comparison(rows) == {"ours": {"kernel_ms_per_step": 3.5, "busy_ms_per_step": 4.0,
                                                  "kernels_per_step": 6.0, "conv_ms": 2.0, "gemm_ms": 1.5}}


def test_subset_keeps_the_first_train_images_and_evenly_spaced_test_images(tmp_path):
  arrays = {}
  for split, n in (("train", 6), ("test", 10)):
    blobs = [np.full(i + 1, i, np.uint8) for i in range(n)]  # image i: i + 1 bytes of value i
    arrays[f"{split}_jpeg"] = np.concatenate(blobs)
    arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    arrays[f"y_{split}"] = np.arange(n) + (100 if split == "test" else 0)
  np.savez(tmp_path / "cifar10_jpeg_bytes.npz", **arrays)
  dla.subset_cifar(tmp_path, tmp_path / "sub", 2, 3)
  with np.load(tmp_path / "sub" / "cifar10_jpeg_bytes.npz") as z:
    assert list(z["y_train"]) == [0, 1] and list(z["train_offsets"]) == [0, 1, 3]
    assert list(z["train_jpeg"]) == [0, 1, 1]
    # linspace(0, 9, 3) = 0, 4.5, 9 -> images 0, 4, 9 (1, 5 and 10 bytes)
    assert list(z["y_test"]) == [100, 104, 109] and list(z["test_offsets"]) == [0, 1, 6, 16]
    assert list(z["test_jpeg"]) == [0] + [4] * 5 + [9] * 10
  dla.subset_cifar(tmp_path, tmp_path / "sub2", 4)
  with np.load(tmp_path / "sub2" / "cifar10_jpeg_bytes.npz") as z:
    assert list(z["y_train"]) == [0, 1, 2, 3] and len(z["y_test"]) == 10


# seconds per step that each fake variant's run() returns: its first call, the warm-up, then one per round
SCHEDULE = {
    "ours": (2.0, 1.0, [0.010, 0.020, 0.012]),             # median 12 ms (the mean would be 14)
    "ours_cmdbuf_x10": (0.5, 1.0, [0.008, 0.009, 0.008]),  # median 8 ms; first call: 0.5 s x 10 updates
    "eager": (3.0, 1.0, [0.040, 0.032, 0.050]),            # median 40 ms
    "compiled": (9.0, 1.0, [0.016, 0.020, 0.018]),         # median 18 ms
    "compiled_reduce-overhead": (9.0, 1.0, [0.025, 0.016, 0.017]),  # median 17 ms: the faster peer
}


class _Fake:
  def __init__(self, label):
    first, warm, rounds = SCHEDULE[label]
    self.values, self.ns, self.params = [first, warm] + list(rounds), [], 1234

  def run(self, n):
    self.ns.append(n)
    return self.values[len(self.ns) - 1]

  def close(self):
    pass


built_torch = []


def _fake_main(monkeypatch, tmp_path, extra=()):
  built = {}

  class FakeOurs(_Fake):
    def __init__(self, model_name, side, batch, classes, xla="default", steps_per_call=1):
      self.k = steps_per_call
      label = "ours" if (xla, steps_per_call) == ("default", 1) else f"ours_{xla}_x{steps_per_call}"
      super().__init__(label)
      built[label] = (model_name, side, batch, classes, self)

  class FakePeer(_Fake):
    def __init__(self, peer, side, batch, classes, compiled, device, peers_dir, compile_mode=None):
      label = "eager" if not compiled else ("compiled" if compile_mode is None else f"compiled_{compile_mode}")
      super().__init__(label)
      built[label] = (peer, side, batch, classes, self)

  fake_torch = types.SimpleNamespace(__version__="0.fake", cuda=types.SimpleNamespace(is_available=lambda: False),
                                     backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(benchmark=None)))
  monkeypatch.setattr(dla, "torch", fake_torch)
  monkeypatch.setattr(dla, "Ours", FakeOurs)
  monkeypatch.setattr(dla, "Peer", FakePeer)
  monkeypatch.setattr(dla, "ensure_peer", lambda *a, **k: None)
  monkeypatch.delenv("OUT", raising=False)
  monkeypatch.setattr(sys, "argv", ["dla.py", "--out", str(tmp_path), "--workloads", "cifar_dla_b128",
                                    "--rounds", "3", "--loop", "4", "--cifar_epochs", "0",
                                    "--ours_xla", "default,cmdbuf@10", "--tag", "t", *extra])
  dla.main()
  built_torch.append(fake_torch)
  return load_result(tmp_path / "dla_cpu_t.json"), built


def test_main_median_of_rounds_images_per_s_and_ratio_to_the_faster_peer(tmp_path, monkeypatch):
  result, built = _fake_main(monkeypatch, tmp_path)
  assert result["complete"] and result["rounds"] == 3 and result["loop"] == 4 and result["cudnn_benchmark"]
  assert built_torch[-1].backends.cudnn.benchmark is True  # the peers' own scripts turn it on
  rows = {r["variant"]: r for r in result["variants"]}
  assert set(rows) == set(SCHEDULE) == set(built)
  for label, (_, _, _, _, v) in built.items():
    assert v.ns == [1, 3, 4, 4, 4], label  # first step, warm-up 3, then 3 rounds of --loop 4
  assert built["eager"][:4] == ("kuangliu", 32, 128, 10) and built["ours"][:4] == ("cifar_dla", 32, 128, 10)
  assert rows["ours"]["round_ms"] == pytest.approx([10.0, 20.0, 12.0])
  assert rows["ours"]["step_ms"] == pytest.approx(12.0)
  assert rows["ours_cmdbuf_x10"]["step_ms"] == pytest.approx(8.0)
  assert rows["compiled_reduce-overhead"]["step_ms"] == pytest.approx(17.0)
  assert rows["ours"]["images_per_s"] == pytest.approx(128 / 0.012)
  assert rows["eager"]["images_per_s"] == pytest.approx(3200.0)
  assert rows["ours"]["first_step_s"] == 2.0 and rows["ours_cmdbuf_x10"]["first_step_s"] == pytest.approx(5.0)
  assert rows["ours_cmdbuf_x10"]["updates_per_call"] == 10 and rows["eager"]["updates_per_call"] == 1
  assert rows["eager"]["model"] == "kuangliu" and rows["ours"]["model"] == "cifar_dla"
  assert rows["ours"]["batch"] == 128 and rows["ours"]["params"] == 1234
  entry = result["workloads"]["cifar_dla_b128"]
  assert entry["faster_peer"] == "compiled_reduce-overhead"
  assert entry["ratio_ours_vs_faster_peer"] == pytest.approx(17 / 12)  # (128 / 12 ms) / (128 / 17 ms)
  assert entry["ratio_ours_cmdbuf_x10_vs_faster_peer"] == pytest.approx(17 / 8)
  assert entry["ours_first_step_s"] == 2.0
  assert entry["ours"] == round(128 / 0.012, 1) and entry["compiled"] == round(128 / 0.018, 1)
  assert "kernels" not in entry and result["cifar"] is None


def test_main_profiles_each_variant_into_the_kernel_table(tmp_path, monkeypatch):
  def summary(ms):
    return {"kernels": 5, "kernel_ms_per_step": ms, "busy_ms_per_step": ms + 1, "kernels_per_step": 2.0,
            "categories": {"conv": {"ms_per_step": ms / 2}}}
  seen = []
  monkeypatch.setattr(dla, "profile", lambda v, steps, name: seen.append(("ours", steps, name)) or summary(1.0))
  monkeypatch.setattr(dla, "profile_peer", lambda v, steps, name: seen.append(("peer", steps, name)) or summary(4.0))
  result, _ = _fake_main(monkeypatch, tmp_path, ["--profile_steps", "6"])
  assert ("ours", 6, "cifar_dla_b128_ours") in seen and ("peer", 6, "cifar_dla_b128_eager") in seen
  assert ("ours", 6, "cifar_dla_b128_ours_cmdbuf_x10") in seen and len(seen) == 5
  kernels = result["workloads"]["cifar_dla_b128"]["kernels"]
  assert kernels["ours"] == {"kernel_ms_per_step": 1.0, "busy_ms_per_step": 2.0, "kernels_per_step": 2.0,
                             "conv_ms": 0.5}
  assert kernels["eager"]["conv_ms"] == 2.0


def _cifar_run(tmp_path, monkeypatch, result, n_train=1000, epochs=3):
  from aila_jax import train  # pylint: disable=import-outside-toplevel
  from aila_jax.train import metrics  # pylint: disable=import-outside-toplevel
  np.savez(tmp_path / "cifar10_jpeg_bytes.npz", y_train=np.zeros(n_train, np.int64))
  seen = {}
  monkeypatch.setattr(train, "train_and_evaluate", lambda config, workdir: seen.update(config=config) or result)
  rows = [{"step": 7, "eval/accuracy": 0.4, "eval/seconds": 1.5}, {"step": 7, "train/loss": 1.0},
          {"step": 14, "eval/accuracy": 0.6, "eval/seconds": 0.5}, {"step": 21, "eval/accuracy": 0.5, "eval/seconds": 9.0}]
  monkeypatch.setattr(metrics, "read_metrics", lambda workdir: rows)
  out = dla.cifar_run(types.SimpleNamespace(set=[], smoke=False), tmp_path, epochs, batch=128)
  return out, seen["config"]


def test_cifar_run_epochs_final_and_best_accuracy_and_images_per_s(tmp_path, monkeypatch):
  r = {"step": 21, "eval/accuracy": 0.5, "train_seconds": 10.0, "first_step_seconds": 4.0}
  out, config = _cifar_run(tmp_path, monkeypatch, r)
  # 1000 // 128 = 7 steps an epoch, 3 epochs = 21 steps
  assert (config.num_train_steps, config.schedule.steps_per_epoch, config.eval_every, config.log_every,
          config.checkpoint_every, config.batch_size) == (21, 7, 7, 7, 21, 128)
  assert out["final_test_accuracy"] == 0.5 and out["best_epoch_test_accuracy"] == 0.6
  assert [e["epoch"] for e in out["evals"]] == [1.0, 2.0, 3.0]
  assert [e["accuracy"] for e in out["evals"]] == [0.4, 0.6, 0.5]
  assert out["images_per_s_after_first_step"] == pytest.approx(20 * 128 / 6.0)  # 21 - 1 steps in 10 - 4 s
  # the evaluations inside the loop (steps 7 and 14: 1.5 + 0.5 s) out too; the last one (step 21) runs after
  assert out["eval_seconds_in_loop"] == 2.0
  assert out["images_per_s_after_first_step_without_evals"] == pytest.approx(20 * 128 / 4.0)
  assert (out["train_images"], out["steps"], out["epochs"], out["batch"]) == (1000, 21, 3, 128)
  assert out["train_seconds"] == 10.0 and out["first_step_seconds"] == 4.0
  # a first call of 10 updates (steps_per_call): the 11 after it
  out, _ = _cifar_run(tmp_path, monkeypatch, dict(r, first_call_steps=10))
  assert out["images_per_s_after_first_step"] == pytest.approx(11 * 128 / 6.0)
  out, _ = _cifar_run(tmp_path, monkeypatch, dict(r, first_step_seconds=10.0))
  assert out["images_per_s_after_first_step"] is None
