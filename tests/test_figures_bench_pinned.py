"""bench/figures.py pinned where the stored results do not reach: the ELA accuracy row of docs/results.md with
ELA ahead (the sign of the difference shown), a mixer without a complete pair (no row), and a CPU smoke result
(never in the table)."""
import json

from bench import figures


def _ela_file(tmp_path, name, device, summary, **extra):
  (tmp_path / name).write_text(json.dumps({"device": device, "epochs": 4, "jobs": 2, "complete": True,
                                           "summary": summary, "runs": [], **extra}))


def test_ela_accuracy_row_with_ela_ahead_and_only_complete_pairs(tmp_path):
  arm = lambda acc, sd, sec: {"test_accuracy_mean": acc, "test_accuracy_std": sd, "train_seconds_mean": sec}
  summary = {"aila2": {"paired_seeds": [0, 1], "noela": arm(0.80, 0.01, 100.0), "ela": arm(0.8125, None, 75.0),
                       "accuracy_ela_minus_noela": 0.0125, "train_seconds_ela_over_noela": 0.75},
             "mrla_base": {"paired_seeds": [], "noela": arm(None, None, None), "ela": arm(None, None, None)}}
  _ela_file(tmp_path, "ela_accuracy_GPU_e4.json", "GPU", summary)
  _ela_file(tmp_path, "ela_accuracy_cpu_e4.json", "cpu", summary)  # a smoke run: not a measurement
  rows = [r for r in figures.headline_rows(figures.Results(figures.collect([tmp_path])))
          if r[0].startswith("ELA accuracy")]
  assert rows == [("ELA accuracy, aila2 ResNet-56, 4 epochs, seeds [0, 1] (test accuracy, mean +- sd; JPEG copy)",
                   "with ELA 81.25%, without 80.00% +- 1.00 (+1.25 points); training seconds with / without 0.750 "
                   "(2 runs sharing the GPU)", "accuracy kept while pruning (abstract)", "no peer (no public code)",
                   "`ela_accuracy_GPU_e4.json` (GPU)")]


def test_cifar_resnet20_row_is_the_mean_over_seeds(tmp_path):
  row = lambda mixer, acc: {"mixer": mixer, "epochs": 12, "test_accuracy": acc}
  cifar = [row("residual", 0.5), row("residual", 0.6), row("residual", 0.9), row("aila1", 0.25), row("aila1", 0.25),
           row("aila1", 1.0)]
  (tmp_path / "depth_train_cifar12_x.json").write_text(json.dumps({"device": "GPU", "cifar": cifar}))
  (r,) = [r for r in figures.headline_rows(figures.Results(figures.collect([tmp_path])))
          if r[0].startswith("CIFAR-10 ResNet-20")]
  assert r[:2] == ("CIFAR-10 ResNet-20, 12 epochs, mean of 3 seeds", "residual 66.67%, aila1 50.00%")


def test_dla_cifar_stopped_run_filed_after_the_finished_one_is_not_averaged(tmp_path):
  # the stopped file's name sorts after the finished run of the same seed: it must not replace it
  def stored(tag, seed, acc, stopped=None):
    run = {"final_epoch_test_accuracy": acc, "best_epoch_test_accuracy": acc,
           **({"stopped": stopped} if stopped else {})}
    (tmp_path / f"dla_cifar_GPU_e200_{tag}.json").write_text(json.dumps(
        {"device": "GPU", "epochs": 200, "batch": 128, "seed": seed, "peer": run}))

  stored("s0a", 0, 0.90)
  stored("s0z", 0, 0.10, stopped="budget: stopped after 3 of 200 epochs")
  stored("s1", 1, 0.80)
  (row,) = [r for r in figures.headline_rows(figures.Results(figures.collect([tmp_path]))) if "over seeds" in r[0]]
  assert row[3] == "85.00% +- 7.07 final epoch, mean of seeds [0, 1] (90.00%, 80.00%)"  # sd of .9, .8: 0.0707


def test_depth_peer_ratio_is_ours_over_the_peers_throughput(tmp_path):
  # step times: ours 10 ms, PyTorch eager 25 ms -> our throughput is 2.5x the peer's
  rows = [{"mixer": "residual", "depth": 20, "step_ms": 10.0, "ratio_vs_residual": 1.0},
          {"mixer": "aila1", "depth": 20, "step_ms": 12.0, "ratio_vs_residual": 1.2},
          {"mixer": "torch_residual", "depth": 20, "step_ms": 25.0, "ratio_vs_residual": 2.5}]
  (tmp_path / "depth_GPU_t.json").write_text(json.dumps({"device": "GPU", "rows": rows, "batch": 8}))
  (label, ratio, name), = figures.peer_ratios(figures.Results(figures.collect([tmp_path])))
  assert ratio == 2.5 and name == "depth_GPU_t.json" and label.startswith("ResNet-20 residual vs PyTorch eager")


def test_ela_accuracy_rows_of_different_models_have_different_labels(tmp_path):
  # the run with model.mixer_kwargs.norm_init=zero was labelled exactly like the one with the official init
  arm = lambda acc: {"test_accuracy_mean": acc, "test_accuracy_std": None, "train_seconds_mean": 1.0}
  summary = {"mrla_base": {"paired_seeds": [0], "noela": arm(0.5), "ela": arm(0.5), "accuracy_ela_minus_noela": 0.0,
                           "train_seconds_ela_over_noela": 1.0}}
  _ela_file(tmp_path, "ela_accuracy_GPU_e4.json", "GPU", summary)
  _ela_file(tmp_path, "ela_accuracy_GPU_e4_zero.json", "GPU", summary)
  path = tmp_path / "ela_accuracy_GPU_e4_zero.json"
  path.write_text(json.dumps(dict(json.loads(path.read_text()),
                                  sets=["dtype=bfloat16", "model.mixer_kwargs.norm_init=zero"])))
  labels = [r[0] for r in figures.headline_rows(figures.Results(figures.collect([tmp_path])))
            if r[0].startswith("ELA accuracy")]
  assert labels == ["ELA accuracy, mrla_base ResNet-56, 4 epochs, seeds [0] (test accuracy, mean +- sd; JPEG copy)",
                    "ELA accuracy, mrla_base ResNet-56, 4 epochs, seeds [0], model.mixer_kwargs.norm_init=zero "
                    "(test accuracy, mean +- sd; JPEG copy)"]
