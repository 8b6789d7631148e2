"""bench/dla_cifar.py's bookkeeping pinned against hand calculations: per-epoch seconds and images/s after epoch 1
from our metric rows, final vs best epoch accuracy, ours - peer, the budget estimate of each phase, a peer
stopped by the budget. The trainings are stand-ins (no torch, nothing compiled)."""
import sys
import types

import numpy as np
import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import dla_cifar  # noqa: E402
from bench.results_io import load_result  # noqa: E402


def test_ours_run_per_epoch_rows_and_images_per_s_after_epoch_1(tmp_path, monkeypatch):
  from aila_jax.train import metrics  # pylint: disable=import-outside-toplevel
  rows = [{"step": 10, "train/loss": 2.0, "wall": 100.0}, {"step": 10, "eval/accuracy": 0.3, "wall": 105.0,
                                                            "eval/seconds": 5.0},
          {"step": 20, "train/loss": 1.5, "wall": 150.0}, {"step": 20, "eval/accuracy": 0.5, "wall": 160.0},
          {"step": 30, "train/loss": 1.2, "wall": 190.0}, {"step": 30, "eval/accuracy": 0.4, "wall": 200.0}]
  monkeypatch.setattr(metrics, "read_metrics", lambda workdir: rows)
  seen = {}

  def fake_cifar_run(args, data_dir, epochs, batch):
    seen.update(set=args.set, smoke=args.smoke, epochs=epochs, batch=batch)
    metrics.read_metrics("somewhere")  # as cifar_run: the module's function, looked up at call time
    return {"steps": 30}
  monkeypatch.setattr(dla_cifar, "cifar_run", fake_cifar_run)
  out = dla_cifar.ours_run(tmp_path, 3, 64, 7, ["a=1"], False)
  assert seen == {"set": ["log_wall_clock=True", "seed=7", "a=1"], "smoke": False, "epochs": 3, "batch": 64}
  assert out["steps_per_epoch"] == 10 and out["drop_last"] is True
  per = out["per_epoch"]
  assert [r["epoch"] for r in per] == [1, 2, 3] and [r["step"] for r in per] == [10, 20, 30]
  assert [r["test_accuracy"] for r in per] == [0.3, 0.5, 0.4]
  assert [r["train_loss"] for r in per] == [2.0, 1.5, 1.2]
  # epoch e's training: from the previous epoch's eval row to this epoch's last train row
  assert [r["train_seconds"] for r in per] == [None, 45.0, 30.0]
  assert [r["eval_seconds"] for r in per] == [5.0, None, None]
  assert out["train_images_per_s_after_epoch_1"] == pytest.approx(2 * 10 * 64 / 75.0)
  assert metrics.read_metrics("x") is rows  # restored


class _Param:
  def __init__(self, n):
    self.n = n

  def numel(self):
    return self.n


def _main(tmp_path, monkeypatch, argv, ours_accs=(0.5, 0.7, 0.6), peer_accs=(0.3, 0.65, 0.62), peer_epochs=None,
          ours_seconds=None):
  np.savez(tmp_path / "cifar10_jpeg_bytes.npz", y_train=np.zeros(100, np.int64), y_test=np.zeros(20, np.int64))
  seen = {}

  def fake_ours(data_dir, epochs, batch, seed, overrides, smoke):
    seen["ours"] = (epochs, batch, seed, list(overrides), smoke)
    if ours_seconds is not None:
      clock[0] += ours_seconds
    return {"per_epoch": [{"test_accuracy": a} for a in ours_accs], "train_images_per_s_after_epoch_1": 1000.0}

  def fake_peer(model, data, *, epochs, batch, seed, mean, std, device, compiled, compile_mode, ckpt, stop):
    seen["peer"] = dict(epochs=epochs, batch=batch, seed=seed, mean=mean, std=std, device=device, stop=stop)
    accs = peer_accs[:peer_epochs] if peer_epochs else peer_accs
    return {"per_epoch": [{"test_accuracy": a} for a in accs], "epochs_run": len(accs),
            "train_images_per_s_after_epoch_1": 500.0}

  clock = [1000.0]
  if ours_seconds is not None:  # a clock that only the ours phase advances
    monkeypatch.setattr(dla_cifar, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
  fake_torch = types.SimpleNamespace(__version__="0.fake", manual_seed=lambda s: None,
                                     cuda=types.SimpleNamespace(is_available=lambda: False))
  monkeypatch.setattr(dla_cifar, "torch", fake_torch)
  monkeypatch.setattr(dla_cifar, "ours_run", fake_ours)
  monkeypatch.setattr(dla_cifar, "train_peer", fake_peer)
  monkeypatch.setattr(dla_cifar, "decode", lambda d: {})
  monkeypatch.setattr(dla_cifar, "ensure_peer", lambda p: p)
  model = types.SimpleNamespace(parameters=lambda: [_Param(3), _Param(4)])
  monkeypatch.setattr(dla_cifar, "load_peer", lambda p: types.SimpleNamespace(DLA=lambda num_classes: model))
  monkeypatch.delenv("OUT", raising=False)
  assert dla_cifar.main(["--data_dir", str(tmp_path), "--out", str(tmp_path / "out"), "--tag", "t", *argv]) == 0
  return load_result(tmp_path / "out" / "dla_cifar_cpu_t.json"), seen


def test_final_and_best_epoch_accuracy_and_ours_minus_peer(tmp_path, monkeypatch):
  result, seen = _main(tmp_path, monkeypatch, ["--epochs", "3", "--batch", "64", "--seed", "5"])
  ours, peer = result["ours"], result["peer"]
  assert seen["ours"] == (3, 64, 5, [], False)
  assert (seen["peer"]["epochs"], seen["peer"]["batch"], seen["peer"]["seed"]) == (3, 64, 5)
  assert tuple(seen["peer"]["std"]) == dla_cifar.PEER_STD and tuple(seen["peer"]["mean"]) == dla_cifar.PEER_MEAN
  assert ours["final_epoch_test_accuracy"] == 0.6 and ours["best_epoch_test_accuracy"] == 0.7
  assert ours["best_epoch"] == 2
  assert peer["final_epoch_test_accuracy"] == 0.62 and peer["best_epoch_test_accuracy"] == 0.65
  assert peer["best_epoch"] == 2 and peer["params"] == 7 and "stopped" not in peer
  s = result["summary"]
  assert s["ours_minus_peer_final"] == pytest.approx(0.6 - 0.62)
  assert s["final_epoch_test_accuracy"] == {"ours": 0.6, "peer": 0.62}
  assert s["best_epoch_test_accuracy (as the peer's README reports)"] == {"ours": 0.7, "peer": 0.65}
  assert s["train_images_per_s_after_epoch_1"] == {"ours": 1000.0, "peer": 500.0}
  assert result["complete"] and (result["epochs"], result["batch"]) == (3, 64)
  assert result["data"]["train_images"] == 100 and result["data"]["test_images"] == 20
  assert seen["peer"]["stop"](1e9) is True and seen["peer"]["stop"](0.0) is False


def test_best_epoch_is_the_first_of_ties_and_skips_missing_evals(tmp_path, monkeypatch):
  result, _ = _main(tmp_path, monkeypatch, ["--epochs", "4"], ours_accs=(None, 0.8, 0.8, 0.7),
                    peer_accs=(0.9, 0.2, 0.3, 0.4))
  assert result["ours"]["best_epoch"] == 2 and result["ours"]["best_epoch_test_accuracy"] == 0.8
  assert result["ours"]["final_epoch_test_accuracy"] == 0.7
  assert result["peer"]["best_epoch"] == 1 and result["peer"]["final_epoch_test_accuracy"] == 0.4
  assert result["summary"]["ours_minus_peer_final"] == pytest.approx(0.3)


def test_a_peer_stopped_by_the_budget_has_no_difference(tmp_path, monkeypatch):
  result, _ = _main(tmp_path, monkeypatch, ["--epochs", "3"], peer_epochs=2)
  assert result["peer"]["stopped"].startswith("budget: stopped after 2 of 3 epochs")
  assert result["peer"]["final_epoch_test_accuracy"] == 0.65
  assert result["summary"]["ours_minus_peer_final"] is None


def test_each_phase_starts_only_if_its_estimate_fits(tmp_path, monkeypatch):
  # ours: 60 + 3 x (100 / 10 + 1) = 93 s > 70 s; the peer: 30 + 3 x (100 / 20 + 1) = 48 s <= 70 s
  result, seen = _main(tmp_path, monkeypatch, ["--epochs", "3", "--budget_s", "70", "--est_ours_img_s", "10",
                                               "--est_peer_img_s", "20"])
  assert result["ours"]["skipped"].startswith("budget: estimated 93 s (10 images/s assumed)") and "ours" not in seen
  assert result["peer"]["final_epoch_test_accuracy"] == 0.62
  result, seen = _main(tmp_path, monkeypatch, ["--epochs", "3", "--budget_s", "70", "--est_ours_img_s", "100",
                                               "--est_peer_img_s", "4"])  # ours 66 s fits, the peer 108 s not
  assert "ours" in seen and result["peer"]["skipped"].startswith("budget: estimated 108 s")


def test_our_normalisation_of_the_peer_sets_the_config_overrides(tmp_path, monkeypatch):
  result, seen = _main(tmp_path, monkeypatch, ["--epochs", "3", "--ours_norm", "peer", "--peer_norm", "ours",
                                               "--set", "x=1"])
  assert seen["ours"][3] == ["x=1", f"image_mean={dla_cifar.PEER_MEAN}", f"image_std={dla_cifar.PEER_STD}"]
  assert result["ours"]["normalisation"]["std"] == list(dla_cifar.PEER_STD)
  assert tuple(seen["peer"]["std"]) != dla_cifar.PEER_STD and result["peer"]["normalisation"]["name"] == "ours"


def test_final_epoch_accuracy_is_the_last_epochs_not_the_last_measured(tmp_path, monkeypatch):
  result, _ = _main(tmp_path, monkeypatch, ["--epochs", "3", "--order", "peer"], peer_accs=(0.3, 0.65, None))
  assert result["peer"]["final_epoch_test_accuracy"] is None and result["peer"]["best_epoch"] == 2
  assert result["ours"] is None and result["summary"]["ours_minus_peer_final"] is None


def test_a_phase_is_estimated_against_what_is_left_after_the_earlier_one(tmp_path, monkeypatch):
  # the peer's 48 s (30 + 3 x (100 / 20 + 1)) fits 70 s of budget, not the 20 s left after 50 s of ours
  result, seen = _main(tmp_path, monkeypatch, ["--epochs", "3", "--budget_s", "70", "--est_ours_img_s", "100",
                                               "--est_peer_img_s", "20"], ours_seconds=50.0)
  assert "ours" in seen and "peer" not in seen
  assert result["peer"]["skipped"] == "budget: estimated 48 s (20 images/s assumed) > 20 s left of --budget_s 70"


def test_our_last_epoch_without_an_evaluation_still_completes_the_summary(tmp_path, monkeypatch):
  # the key was there with None (no eval row at the last epoch): the difference raised a TypeError after both
  # trainings, so the JSON never got its summary (found by mutation testing, 2026-12-08)
  result, _ = _main(tmp_path, monkeypatch, ["--epochs", "3"], ours_accs=(0.5, 0.6, None))
  assert result["ours"]["final_epoch_test_accuracy"] is None
  assert result["summary"]["ours_minus_peer_final"] is None and result["complete"]
