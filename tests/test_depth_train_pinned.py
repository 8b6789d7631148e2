"""bench/depth_train.py's derived numbers pinned against hand calculations: the price summary (mean, std over
seeds, ratio to naive, the <= verdicts), which selection each price row quotes, the price configs, and the CIFAR
rows (training seconds after the first step, the step count per epoch). Trainings are stand-ins."""
import json
import math
import sys
import time

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import depth_train  # noqa: E402
from bench.results_io import load_result  # noqa: E402


def _row(series, model, seed, mse, naive=1.0, **kw):
  return dict(series=series, model=model, seed=seed, test_mse=mse, naive_test_mse=naive, selected_step=10 * seed,
              test_dm_stat=-seed, trained_test_mse=mse + 1, final_test_mse=mse + 2, train_seconds=3.0 + seed, **kw)


def test_le_counts_last_bit_rounding_as_equal():
  assert depth_train._le(0.5, 1.0) and depth_train._le(1.0, 1.0)
  assert depth_train._le(1.0 + 1e-15, 1.0)  # within rel 1e-12
  assert not depth_train._le(1.0 + 1e-9, 1.0) and not depth_train._le(2.0, 1.0)


def test_summary_means_stds_ratios_and_verdicts():
  rows = [_row("gold", "aila1", 0, 0.9, naive=2.0), _row("gold", "aila1", 1, 1.3, naive=2.0),
          _row("gold", "lstm", 0, 1.0, naive=2.0),
          _row("sp500", "aila1", 0, 0.9), _row("sp500", "aila1", 1, 1.0), _row("sp500", "aila1", 2, 1.4),
          _row("sp500", "aila2", 0, 1.05), _row("sp500", "lstm", 0, 1.2)]
  out = depth_train.summarize(rows)
  assert [e["series"] for e in out] == ["sp500", "gold"]  # prices_lib.SERIES order
  sp, gold = out
  assert sp["naive_test_mse"] == 1.0 and list(sp["models"]) == ["aila1", "aila2", "lstm"]
  a1 = sp["models"]["aila1"]
  assert a1["test_mse_mean"] == pytest.approx(1.1) and a1["seeds"] == 3  # (0.9 + 1.0 + 1.4) / 3; the median: 1.0
  # sample std (n - 1): deviations -0.2, -0.1, 0.3 -> sqrt(0.14 / 2)
  assert a1["test_mse_std"] == pytest.approx(math.sqrt(0.07))
  assert a1["ratio_to_naive"] == pytest.approx(1.1)
  assert a1["selected_steps"] == [0, 10, 20] and a1["test_dm_stat"] == [0, -1, -2]
  assert a1["trained_test_mse_mean"] == pytest.approx(2.1) and a1["final_test_mse_mean"] == pytest.approx(3.1)
  assert a1["train_seconds_mean"] == pytest.approx(4.0)
  assert sp["models"]["lstm"]["test_mse_std"] == 0.0 and sp["models"]["lstm"]["seeds"] == 1
  assert sp["aila1_le_naive"] is False and sp["aila1_le_lstm"] is True  # 1.1 > 1.0; 1.1 <= 1.2
  assert sp["aila2_le_naive"] is False and sp["aila2_le_lstm"] is True
  assert "lstm_aila1_le_naive" not in sp
  g1 = gold["models"]["aila1"]
  assert g1["test_mse_mean"] == pytest.approx(1.1) and g1["ratio_to_naive"] == pytest.approx(0.55)
  assert g1["test_mse_std"] == pytest.approx(math.sqrt(0.08))  # deviations -0.2, 0.2 over n - 1 = 1
  assert gold["aila1_le_naive"] is True and gold["aila1_le_lstm"] is False  # 1.1 <= 2; 1.1 > 1.0
  assert "aila2_le_naive" not in gold


def test_summary_without_lstm_has_no_lstm_verdict():
  (e,) = depth_train.summarize([_row("usd", "lstm_aila2", 0, 0.5)])
  assert e["lstm_aila2_le_naive"] is True and "lstm_aila2_le_lstm" not in e


def test_price_configs():
  c = depth_train.price_config("gold", "aila2", seed=3, data_dir="/d", steps=40, eval_every=8)
  assert (c.model.mixer, dict(c.model.mixer_kwargs), c.dataset_kwargs.series, c.seed, c.data_dir) == \
      ("aila2", {"num_heads": 4}, "gold", 3, "/d")
  assert (c.num_train_steps, c.eval_every, c.checkpoint_every, c.log_every, c.progress) == (40, 8, 40, 8, False)
  c = depth_train.price_config("usd", "lstm_aila1", seed=0)
  assert c.model_name != depth_train.price_config("usd", "aila1", seed=0).model_name
  assert (c.model.mixer, dict(c.model.mixer_kwargs)) == ("aila1", {})
  assert c.log_every == c.eval_every and c.checkpoint_every == c.num_train_steps
  lstm = depth_train.price_config("usd", "lstm", seed=0)
  assert lstm.model.mixer == "none"
  with pytest.raises(ValueError, match="unknown model 'gru'"):
    depth_train.price_config("usd", "gru", seed=0)


BEST = {"step": 0, "initial_naive": True, "eval_val/mse": 1.0, "eval_val/naive_mse": 1.5, "eval_val/dm_stat": 0.3,
        "eval/naive_mse": 2.0, "eval/naive_mae": 0.7, "eval/mse": 2.1, "eval/mae": 0.8, "eval/rmse": 1.45,
        "eval/directional_accuracy": 0.55, "eval/mse_diff": 0.1, "eval/dm_stat": 0.9}
TRAINED = {"step": 150, "eval_val/mse": 1.1, "eval/mse": 1.9, "eval_val/naive_mse": 1.5, "eval/naive_mse": 2.0,
           "eval/naive_mae": 0.7}


def _price_run(monkeypatch, tmp_path, **spec):
  seen = []
  final = {"step": 600, "train_seconds": 12.0, "eval/mse": 2.2, "eval_val/mse": 1.3}
  monkeypatch.setattr(depth_train, "train_and_evaluate", lambda config, workdir: dict(final))
  monkeypatch.setattr(depth_train, "read_metrics", lambda workdir: ["rows"])
  monkeypatch.setattr(depth_train, "_params_from_log", lambda workdir: 42)

  def select(rows, initial_naive=False):
    seen.append(initial_naive)
    return dict(BEST) if initial_naive else dict(TRAINED)
  monkeypatch.setattr(depth_train, "select_by_val", select)
  base = dict(series="gold", model="aila1", seed=2, data_dir=None, steps=0, eval_every=0, initial=True,
              deadline=time.time() + 100, workdir=str(tmp_path))
  return depth_train.price_run({**base, **spec}), seen


def test_price_row_quotes_the_best_val_eval_and_the_trained_and_final_ones(monkeypatch, tmp_path):
  row, seen = _price_run(monkeypatch, tmp_path)
  assert seen == [True, False]  # zero head, target 'change': the naive step 0 is a candidate
  assert (row["series"], row["model"], row["seed"], row["mixer"], row["params"]) == ("gold", "aila1", 2, "aila1", 42)
  assert row["steps"] == 600 and row["train_seconds"] == 12.0 and row["wall_seconds"] >= 0
  assert row["selected_step"] == 0 and row["selected_initial"] is True
  assert (row["val_mse"], row["naive_val_mse"], row["val_dm_stat"]) == (1.0, 1.5, 0.3)
  assert (row["naive_test_mse"], row["naive_test_mae"]) == (2.0, 0.7)
  assert (row["trained_best_step"], row["trained_val_mse"], row["trained_test_mse"]) == (150, 1.1, 1.9)
  assert (row["final_test_mse"], row["final_val_mse"]) == (2.2, 1.3)
  assert {k: row[f"test_{k}"] for k in depth_train.TEST_KEYS} == {
      "mse": 2.1, "mae": 0.8, "rmse": 1.45, "directional_accuracy": 0.55, "mse_diff": 0.1, "dm_stat": 0.9}
  _, seen = _price_run(monkeypatch, tmp_path, initial=False)
  assert seen == [False, False]
  assert _price_run(monkeypatch, tmp_path, deadline=time.time() - 1)[0] == {
      "series": "gold", "model": "aila1", "seed": 2, "skipped": True}


def test_cifar_rows_seconds_after_first_step_and_step_counts(monkeypatch, tmp_path):
  configs = []

  def train(config, workdir):
    configs.append(config)
    return {"step": config.num_train_steps, "eval/accuracy": 0.25 * len(configs), "eval/loss": 1.5,
            "train_seconds": 50.0, "first_step_seconds": 20.0}
  monkeypatch.setattr(depth_train, "train_and_evaluate", train)
  monkeypatch.setattr(depth_train, "_params_from_log", lambda workdir: 1000)
  monkeypatch.setattr(sys, "argv", ["depth_train.py", "--out", str(tmp_path), "--skip", "prices", "--mixers",
                                    "residual,aila1@6", "--seed", "0,1", "--depth", "8", "--epochs", "2",
                                    "--tag", "t", "--set", "worker_count=3"])
  depth_train.main()
  result = load_result(tmp_path / "depth_train_t.json")
  rows = result["cifar"]
  assert [(r["mixer"], r["epochs"], r["seed"]) for r in rows] == [("residual", 2, 0), ("aila1", 6, 0),
                                                                   ("residual", 2, 1), ("aila1", 6, 1)]
  # 50,000 // 256 = 195 steps an epoch
  assert [r["steps"] for r in rows] == [390, 1170, 390, 1170]
  assert all(r["train_seconds_after_first_step"] == 30.0 and r["first_step_seconds"] == 20.0 for r in rows)
  assert [r["test_accuracy"] for r in rows] == [0.25, 0.5, 0.75, 1.0]
  assert all(r["params"] == 1000 and r["depth"] == 8 and r["test_loss"] == 1.5 for r in rows)
  assert all(r["overrides"] == ["worker_count=3"] for r in rows)
  c = configs[1]
  assert (c.model.mixer, c.model.depth, c.seed, c.worker_count) == ("aila1", 8, 0, 3)
  assert (c.eval_every, c.checkpoint_every, c.log_every) == (0, 1170, 390)
  assert configs[2].seed == 1 and result["prices"] == []


def test_prices_in_main_are_sorted_and_summarised(monkeypatch, tmp_path):
  done = []

  def price_run(spec):
    done.append(spec)
    r = _row(spec["series"], spec["model"], spec["seed"], 0.5 + spec["seed"])
    r.update(wall_seconds=1.0)
    return r
  monkeypatch.setattr(depth_train, "price_run", price_run)
  monkeypatch.setattr(sys, "argv", ["depth_train.py", "--out", str(tmp_path), "--skip", "cifar",
                                    "--series", "usd,sp500", "--price_models", "lstm,aila1", "--price_seeds", "1,0",
                                    "--price_steps", "30", "--price_eval_every", "5", "--no_initial"])
  depth_train.main()
  result = load_result(tmp_path / "depth_train.json")
  assert len(done) == 8 and all((s["steps"], s["eval_every"], s["initial"]) == (30, 5, False) for s in done)
  assert [(r["series"], r["model"], r["seed"]) for r in result["prices"]] == sorted(
      (s, m, d) for s in ("usd", "sp500") for m in ("lstm", "aila1") for d in (0, 1))
  summary = {e["series"]: e for e in result["prices_summary"]}
  assert [e["series"] for e in result["prices_summary"]] == ["sp500", "usd"]
  assert summary["usd"]["models"]["aila1"]["test_mse_mean"] == pytest.approx(1.0)  # seeds 0, 1: 0.5, 1.5
  assert json.dumps(result["price_setup"]["selection"])
