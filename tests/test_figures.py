"""bench/figures.py on the stored results: every figure drawn from the files it names, the peer ratios equal
the ratios the bench scripts stored themselves, and the generated table of docs/results.md is up to date."""
import json
import shutil

import numpy as np
import pytest

from bench import figures
from bench.results_io import load_result
from helpers import REPO

RESULTS = REPO / "bench" / "results"


@pytest.fixture(scope="module")
def stored():
  return figures.Results(figures.collect([RESULTS]))


def test_draws_every_figure_from_the_stored_results(tmp_path, stored):
  index = figures.draw(stored, tmp_path)
  assert set(index) == set(figures.FIGURES)
  for name, info in index.items():
    if name == "wsram_compare.png" and not list(RESULTS.glob("wsram_compare_*.json")):
      assert "not run on a GPU yet" in info["missing"] and not (tmp_path / name).exists()
      continue
    if name == "dla_cifar.png" and not [p for p in RESULTS.glob("dla_cifar_*.json") if "_cpu" not in p.name]:
      assert "no dla_cifar_* result from a GPU" in info["missing"] and not (tmp_path / name).exists()
      continue
    assert "sources" in info, (name, info)  # bench/results holds data for every other figure
    data = (tmp_path / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 150_000, name
    assert all(p.startswith(str(RESULTS)) for p in info["sources"])
  assert json.loads((tmp_path / "figures.json").read_text()) == index
  assert any("glimpse" in n for n in index) and "NVIDIA H200" in index["glimpse_error.png"]["devices"]


def test_peer_ratios_equal_the_ratios_the_scripts_stored(stored):
  ratios = {(label, name): value for label, value, name in figures.peer_ratios(stored)}
  tr = load_result(RESULTS / "transformer_NVIDIA-H100-80GB-HBM3.json")["ratios"]
  assert ratios[("Transformer-base vs torch_eager (H100)", "transformer_NVIDIA-H100-80GB-HBM3.json")] == \
      pytest.approx(tr["ours/torch_eager"], rel=1e-12)
  dla = load_result(RESULTS / "dla_NVIDIA-H200_run1.json")["workloads"]
  for workload, w in dla.items():
    label = f"DLA {workload} vs {w['faster_peer']} (H200, peer without cudnn.benchmark)"
    assert ratios[(label, "dla_NVIDIA-H200_run1.json")] == pytest.approx(w["ratio_ours_vs_faster_peer"], rel=1e-4)
  ram = load_result(RESULTS / "ram_NVIDIA-H100-80GB-HBM3.json")["ratio_ours_memory_over_peer"]
  assert ratios[("RAM training vs the PyTorch port (H100)", "ram_NVIDIA-H100-80GB-HBM3.json")] == ram
  att = load_result(RESULTS / "attention_NVIDIA-H200.json")["shapes"][0]
  assert ratios[("attention 8x2048x16x64 vs torch SDPA (H200)", "attention_NVIDIA-H200.json")] == \
      att["ratios"]["ours_core/torch_sdpa"]


def test_an_earlier_folder_hides_the_same_file_later(tmp_path):
  shutil.copy(RESULTS / "ram_NVIDIA-H100-80GB-HBM3.json", tmp_path)
  found = figures.collect([tmp_path, RESULTS])
  assert found["ram_NVIDIA-H100-80GB-HBM3.json"] == tmp_path / "ram_NVIDIA-H100-80GB-HBM3.json"
  assert found["transformer_NVIDIA-H100-80GB-HBM3.json"] == RESULTS / "transformer_NVIDIA-H100-80GB-HBM3.json"
  with pytest.raises(FileNotFoundError, match="not a folder"):
    figures.collect([tmp_path / "nope"])


def test_results_page_table_is_generated_from_the_stored_results(tmp_path, stored):
  doc = REPO / "docs" / "results.md"
  text = doc.read_text()
  copy = tmp_path / "results.md"
  copy.write_text(text)
  assert figures.update_doc(copy, stored) == text, "docs/results.md is stale: run python -m bench.figures --doc"
  table = figures.table_markdown(stored)
  assert "| 1.00% at 90,000 steps | 1.12% (Mnih et al. 2014)" in table  # RAM MNIST, H100 90k run vs the paper
  assert ("ELA accuracy, mrla_base ResNet-56, 8 epochs, seeds [0, 1, 2] (test accuracy, mean +- sd; JPEG copy) | "
          "with ELA 52.71% +- 10.26, without 56.33% +- 8.28 (-3.62 points)") in table  # the stored paired runs


def test_mrla_peer_result_gives_its_ratio(tmp_path):
  # The summary bench/mrla_peer.py writes (not yet run on a GPU): the figure and the table take its ratio.
  summary = {"mrla_light": {"ours_images_per_s": 2000.0, "official_best_images_per_s": 1600.0,
                            "throughput_ratio": 1.25, "ours_relative_cost": 1.4, "official_best_relative_cost": 1.9,
                            "overhead_ratio": 0.44}}
  (tmp_path / "mrla_peer_NVIDIA-H200.json").write_text(json.dumps({"device": "NVIDIA H200", "rows": [],
                                                                  "summary": summary}))
  res = figures.Results(figures.collect([tmp_path]))
  assert figures.peer_ratios(res) == [("ResNet-50 mrla_light vs the official MRLA (H200)", 1.25,
                                       "mrla_peer_NVIDIA-H200.json")]
  assert "| 2,000 img/s | not available | 1.25x the official MRLA code's faster mode |" in figures.table_markdown(res)


def test_wsram_compare_result_is_drawn_and_tabled(tmp_path):
  from bench import wsram_compare  # pylint: disable=import-outside-toplevel
  evals = lambda errs: [{"step": 100 * (i + 1), "train_wall": 3.0 * (i + 1), "error": e} for i, e in enumerate(errs)]
  runs = {"mnist": {"naive": {"evals": evals([0.5, 0.2, 0.1])}, "wsram_cv": {"evals": evals([0.3, 0.1, 0.05])}}}
  result = {"device": "NVIDIA H200", "summary": wsram_compare.summarize(runs), "runs": runs,
            "command": "bench/wsram_compare.py --batch_size 32 --seed 2"}
  (tmp_path / "wsram_compare_NVIDIA-H200.json").write_text(json.dumps(result))
  res = figures.Results(figures.collect([tmp_path]))
  index = figures.draw(res, tmp_path / "figs")
  assert index["wsram_compare.png"]["sources"] == [str(tmp_path / "wsram_compare_NVIDIA-H200.json")]
  table = figures.table_markdown(res)
  assert ("| WS-RAM paper's comparison, mnist, batch 32, 300 steps, seed 2: final test error (steps to the naive "
          "estimator's final error, as a fraction of its steps) | naive 10.00% (1.00x); wsram_cv 5.00% (0.67x) |") in table
  assert "not run on a GPU yet | not available (full text unreachable)" not in table


def test_compile_time_rows_per_impl_with_matmul_counts(tmp_path):
  row = lambda mixer, impl, s, m, k: {"mixer": mixer, "impl": impl, "depth": 56, "batch": 8, "first_step_s": s,
                                      "matmuls": m, "matmul_shapes": k}
  rows = [row("residual", "stacked", 10.0, 3, 3), row("aila1", "stacked", 30.0, 51, 14),
          row("residual", "reduce", 10.0, 3, 3), row("aila1", "reduce", 15.0, 3, 3)]
  (tmp_path / "compile_time_cpu_x.json").write_text(json.dumps({"device": "cpu", "rows": rows}))
  table = figures.table_markdown(figures.Results(figures.collect([tmp_path])))
  assert ("| first step (compile) of ResNet-56 b8, depth sums impl=stacked | residual 10.0 s (1.00x), aila1 30.0 s "
          "(3.00x); matmuls/distinct shapes: residual 3/3, aila1 51/14 |") in table
  assert ("impl=reduce | residual 10.0 s (1.00x), aila1 15.0 s (1.50x) (ratios to the process's first compile, the "
          "residual network with impl=stacked: 10.0 s); matmuls/distinct shapes: "
          "residual 3/3, aila1 3/3 |") in table
  # a residual compiled second reuses the first one's autotuning: ratios stay relative to the first compile
  rows[2] = row("residual", "reduce", 4.0, 3, 3)
  (tmp_path / "compile_time_cpu_x.json").write_text(json.dumps({"device": "cpu", "rows": rows}))
  table = figures.table_markdown(figures.Results(figures.collect([tmp_path])))
  assert ("impl=reduce | residual 4.0 s (0.40x), aila1 15.0 s (1.50x) (ratios to the process's first compile, the "
          "residual network with impl=stacked: 10.0 s); matmuls") in table


def test_dla_cifar_result_is_drawn_and_tabled(tmp_path):
  # The keys bench/dla_cifar.py writes (tests/test_dla_cifar.py runs its smoke): a 2-epoch GPU run; a CPU smoke
  # file beside it is neither drawn nor tabled.
  epochs = lambda accs: [{"epoch": i + 1, "test_accuracy": a} for i, a in enumerate(accs)]
  ours = {"per_epoch": epochs([0.83, 0.81]), "final_epoch_test_accuracy": 0.81, "best_epoch_test_accuracy": 0.83,
          "train_images_per_s_after_epoch_1": 20000.0, "wall_seconds": 95.0}
  peer = {"per_epoch": epochs([0.6, 0.8]), "final_epoch_test_accuracy": 0.8, "best_epoch_test_accuracy": 0.8,
          "train_images_per_s_after_epoch_1": 5000.0}
  (tmp_path / "dla_cifar_NVIDIA-H200_e2.json").write_text(json.dumps(
      {"device": "NVIDIA H200", "epochs": 2, "batch": 128, "ours": ours, "peer": peer}))
  (tmp_path / "dla_cifar_cpu.json").write_text(json.dumps(
      {"device": "cpu", "epochs": 1, "batch": 32, "ours": ours, "peer": None}))
  res = figures.Results(figures.collect([tmp_path]))
  index = figures.draw(res, tmp_path / "figs")
  assert index["dla_cifar.png"]["sources"] == [str(tmp_path / "dla_cifar_NVIDIA-H200_e2.json")]
  table = figures.table_markdown(res)
  assert ("| DLA CIFAR-10 (kuangliu topology), 2 epochs, batch 128, the peer's recipe: test accuracy (JPEG copy) | "
          "81.00% final epoch (best epoch 83.00%, as the peer reports it), 20,000 training img/s after epoch 1; 95 s "
          "for the whole run (compilation and evaluation included) | not applicable (the paper reports ImageNet) | "
          "80.00% final epoch (best epoch 80.00%, as the peer reports it), 5,000 training img/s after epoch 1 |") in table
  assert "batch 32" not in table and "DLA CIFAR-10 accuracy (200 epochs) | not run" not in table


def test_dla_cifar_accuracy_over_seeds_is_averaged_per_normalisation(tmp_path):
  cifar, kuangliu = [0.247, 0.2435, 0.2616], [0.2023, 0.1994, 0.201]

  def stored(tag, seed, who, acc, std):
    run = {"final_epoch_test_accuracy": acc, "best_epoch_test_accuracy": acc, "normalisation": {"std": std}}
    (tmp_path / f"dla_cifar_GPU_e30_{tag}.json").write_text(json.dumps(
        {"device": "GPU", "epochs": 30, "batch": 128, "seed": seed, who: run}))

  stored("a", 0, "ours", 0.80, cifar)
  stored("b", 1, "ours", 0.90, cifar)
  stored("c", 0, "ours", 0.70, kuangliu)  # --ours_norm peer: its own group
  stored("d", 0, "peer", 0.85, kuangliu)
  rows = figures.headline_rows(figures.Results(figures.collect([tmp_path])))
  (row,) = [r for r in rows if "over seeds" in r[0]]
  sd = 100 * float(np.std([0.80, 0.90], ddof=1))
  assert row[1] == (f"normalisation std {tuple(kuangliu)}: 70.00% final epoch, mean of seeds [0] (70.00%); "
                    f"normalisation std {tuple(cifar)}: 85.00% +- {sd:.2f} final epoch, mean of seeds [0, 1] "
                    "(80.00%, 90.00%)")
  assert row[3] == "85.00% final epoch, mean of seeds [0] (85.00%)"


def test_dla_cifar_run_stopped_by_its_budget_is_not_a_final_accuracy(tmp_path):
  # bench/dla_cifar.py --peer_ckpt: the first command stops at its budget ("stopped"), a rerun resumes and
  # finishes; the stopped file's last epoch must neither join the mean over seeds nor be drawn.
  def stored(tag, seed, acc, stopped=None):
    run = {"final_epoch_test_accuracy": acc, "best_epoch_test_accuracy": acc,
           "per_epoch": [{"epoch": 1, "test_accuracy": acc}], **({"stopped": stopped} if stopped else {})}
    (tmp_path / f"dla_cifar_GPU_e200_{tag}.json").write_text(json.dumps(
        {"device": "GPU", "epochs": 200, "batch": 128, "seed": seed, "peer": run}))

  stored("s0a", 0, 0.50, stopped="budget: stopped after 152 of 200 epochs")
  stored("s0b", 0, 0.92)
  stored("s1", 1, 0.90)
  res = figures.Results(figures.collect([tmp_path]))
  (row,) = [r for r in figures.headline_rows(res) if "over seeds" in r[0]]
  assert row[3] == "91.00% +- 1.41 final epoch, mean of seeds [0, 1] (92.00%, 90.00%)"
  assert str(tmp_path / "dla_cifar_GPU_e200_s0a.json") not in row[4]
  index = figures.draw(res, tmp_path / "figs")
  assert str(tmp_path / "dla_cifar_GPU_e200_s0a.json") not in index["dla_cifar.png"]["sources"]


def test_ela_accuracy_row_from_the_paired_summary(tmp_path):
  """The ELA accuracy row quotes bench/ela_accuracy.py's own summary (built here by its summarise) and says
  when the call ended before every planned run had."""
  from bench import ela_accuracy  # pylint: disable=import-outside-toplevel

  def run(arm, seed, acc, sec):
    return {"mixer": "mrla_base", "arm": arm, "seed": seed, "status": "finished", "test_accuracy": acc,
            "train_seconds": sec}
  runs = [run("noela", 0, 0.90, 100.0), run("ela", 0, 0.91, 80.0), run("noela", 1, 0.92, 110.0),
          run("ela", 1, 0.89, 90.0)]
  result = {"device": "GPU", "epochs": 10, "jobs": 6, "complete": False,
            "summary": ela_accuracy.summarise(runs, ["mrla_base"]), "runs": runs}
  (tmp_path / "ela_accuracy_GPU_e10.json").write_text(json.dumps(result))
  rows = figures.headline_rows(figures.Results(figures.collect([tmp_path])))
  (row,) = [r for r in rows if r[0].startswith("ELA accuracy")]
  sd_yes, sd_no = (100 * float(np.std(v, ddof=1)) for v in ([0.91, 0.89], [0.90, 0.92]))
  assert row[0].startswith("ELA accuracy, mrla_base ResNet-56, 10 epochs, seeds [0, 1]")
  assert row[1] == (f"with ELA 90.00% +- {sd_yes:.2f}, without 91.00% +- {sd_no:.2f} (-1.00 points); training "
                    f"seconds with / without {85 / 105:.3f} (6 runs sharing the GPU); the call ended before every "
                    "planned run had")


def test_compile_time_isolated_rows_and_a_spec_without_first_step(tmp_path):
  # bench/compile_time.py --isolate: every row from a process of its own; one stopped before its first step
  row = lambda mixer, s: {"mixer": mixer, "impl": "reduce", "depth": 56, "batch": 128, "first_step_s": s,
                          "matmuls": 3, "matmul_shapes": 3, "process": "own", "status": "finished"}
  rows = [row("residual", 20.0), row("aila2", 50.0),
          {"mixer": "aila2:keys=folded", "impl": "reduce", "process": "own",
           "status": "stopped after --spec_timeout_s 150 s"}]
  (tmp_path / "compile_time_GPU_iso.json").write_text(json.dumps({"device": "GPU", "rows": rows}))
  table = figures.table_markdown(figures.Results(figures.collect([tmp_path])))
  assert ("| first step (compile) of ResNet-56 b128 | residual 20.0 s (1.00x), aila2 50.0 s (2.50x), "
          "aila2:keys=folded no first step (stopped after --spec_timeout_s 150 s) (each in a process of its own); "
          "matmuls/distinct shapes: residual 3/3, aila2 3/3 |") in table
