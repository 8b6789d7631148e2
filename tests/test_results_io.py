"""bench/results_io.py: compact results (JSON summary + compressed curves) load back exactly as saved."""
import hashlib
import json
import math

import numpy as np
import pytest

from bench import results_io
from helpers import REPO, machine_folders

RESULTS = REPO / "bench" / "results"

# Git blob ids of the original JSON files (commit c505ec6, before the conversion), an independent
# record of every byte: the converted summary + .npz, loaded and dumped the way bench/ram_wsram_mnist.py
# wrote them (json.dumps(..., indent=1)), must hash to the same ids.
ORIGINAL_BLOBS = {
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3": "e838bf9b02fff75c0a642169a0539a59d65aedb7",
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_ram_b512": "77b6f9d02ab0374bb3cabdc567a432dafd91be8b",
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_ram_lstm": "afa1a4bf9d5a4e9ab481dad53a1f01c8e267a460",
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_ram_lstm_90k": "80d9fcec313590074c074e3842fad0c5b824ac37",
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_ram_lstm_std005_90k": "90b73b01874fe5388ab816302df8cb328bc6e604",
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_ram_relu": "11643bb2df7ba1e3c8ab274c746c60b62f17824f",
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_ram_relu_90k": "5d09986469992f9dea0248d9e8365fac864dbaa4",
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_wsram_k5": "0e43f145a74df313d52713ca807bffcea821e42b",
  "ram_wsram_mnist_NVIDIA-H100-80GB-HBM3_wsram_lstm_90k": "808dbf481634dfe5bdf4b5da88d33afade62bba9",
  "ram_wsram_mnist_NVIDIA-H200_ram_cluttered60_40k": "e4349bac839edf584794a24e8d0bd17c5cc08a6c",
  "ram_wsram_mnist_NVIDIA-H200_ram_cluttered60_90k": "9cd2ddc57429d7e5ce733a896fa3a83a4d327168",
  "ram_wsram_mnist_NVIDIA-H200_ram_cluttered60_90k_sampled": "05b624049fba2620a71c74d6e0834b8bf333c506",
  "ram_wsram_mnist_NVIDIA-H200_ram_cluttered60_std015_90k": "9c3954c9e88918015afff915ad73a4f8aafeba65",
  "ram_wsram_mnist_NVIDIA-H200_ram_lstm_90k_sampled": "c8225c00f4ae9ab3274f724976c8b9223f0ae841",
  "ram_wsram_mnist_NVIDIA-H200_ram_relu_90k_sampled": "eb93114da206bae540dfe0438fe77c5da2c69df4",
  "ram_wsram_mnist_NVIDIA-H200_ram_translated_40k": "2d8c2df2962287d9681cce315ce27b00fe0de87c",
  "ram_wsram_mnist_NVIDIA-H200_wsram_cluttered60_60k": "cb154300a05674273f3c7a269412aaaf06a52b63",
  "ram_wsram_mnist_NVIDIA-H200_wsram_lstm_24k": "cb84f8791b3e0a9434795319daff7d18fee55c5e",
  "ram_wsram_mnist_NVIDIA-H200_wsram_lstm_30k_qimage_x2": "1ce2e30861bf2dccfa60a202cb0574c8f061d7d6",
  "ram_wsram_mnist_NVIDIA-H200_wsram_relu_30k": "1b800ee709a5ec090eec9c5977658996589e7a54",
  "ram_wsram_mnist_NVIDIA-H200_wsram_relu_30k_qimage": "e75ee831241a9c4bad7248ba28db463427d6800a",
  "ram_wsram_mnist_NVIDIA-H200_wsram_relu_30k_qimage_x2": "6062ed241165ed39411d2ae40d63361524bd1de2",
  "ram_wsram_mnist_NVIDIA-H200_wsram_relu_30k_x2": "1ac481d372a007ff521217f6c9dcdd1d7a1ee5f1",
}


def git_blob_id(data: bytes) -> str:
  return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_every_converted_result_is_its_original():
  for name, blob in ORIGINAL_BLOBS.items():
    path = RESULTS / f"{name}.json"
    assert results_io.MARKER in path.read_text() and results_io.curves_path(path).exists(), name
    text = json.dumps(results_io.load_result(path), indent=1)
    assert git_blob_id(text.encode()) == blob, name


def test_results_are_compact():
  files = [p for p in RESULTS.iterdir() if p.is_file()]
  sizes = {p.name: p.stat().st_size for p in files}
  assert max(sizes.values()) < 500_000, max(sizes, key=sizes.get)
  assert sum(sizes.values()) < 5_000_000


def tricky_result():
  rows = []
  for i in range(80):
    row = {"step": 10 * i, "loss": 1.0 / (i + 1), "mixed": i if i % 3 else float(i), "flag": i % 2 == 0,
           "big": 2 ** 62 + i}
    if i % 4 == 0:
      row["sometimes"] = -0.0 if i == 0 else (math.nan if i == 4 else (math.inf if i == 8 else 0.1 * i))
    rows.append(row)
  inline = [{"step": i, "name": f"r{i}"} for i in range(100)]  # a string: stays in the JSON
  with_null = [{"step": i, "x": None if i == 5 else 1.5} for i in range(70)]  # null: stays too
  return {"device": "cpu", "nested": {"train": rows, "evals": rows[:5]}, "inline": inline,
          "with_null": with_null, "second": [{"a": 1.25 * i, "b": i} for i in range(64)],
          "short": [{"a": 1.0}] * 63, "empty": [], "ints": list(range(100))}


def test_round_trip_keeps_types_order_nan_and_missing_keys(tmp_path):
  result = tricky_result()
  path = tmp_path / "r.json"
  written = results_io.save_result(path, result)
  assert written == [tmp_path / "r.curves.npz", path]
  summary = json.loads(path.read_text())
  assert summary["nested"]["train"]["rows"] == 80 and summary["second"]["table"] == "t1"
  assert summary["inline"] == result["inline"] and summary["short"] == result["short"]
  assert summary["with_null"] == result["with_null"]
  back = results_io.load_result(path)
  assert results_io.canonical(back) == results_io.canonical(result)
  rows = back["nested"]["train"]
  assert type(rows[1]["mixed"]) is int and type(rows[0]["mixed"]) is float
  assert type(rows[0]["flag"]) is bool and rows[1]["big"] == 2 ** 62 + 1
  assert math.copysign(1.0, rows[0]["sometimes"]) == -1.0 and math.isnan(rows[4]["sometimes"])
  assert "sometimes" not in rows[1] and list(rows[4]) == ["step", "loss", "mixed", "flag", "big", "sometimes"]
  with np.load(tmp_path / "r.curves.npz") as npz:
    assert npz["t0_c1"].dtype == np.float64 and npz["t0_c0"].tolist() == [10 * i for i in range(80)]


def test_a_result_without_tables_is_plain_json_and_drops_a_stale_npz(tmp_path):
  path = tmp_path / "r.json"
  results_io.save_result(path, tricky_result())
  small = {"a": 1, "rows": [{"x": 1.0}] * 3}
  assert results_io.save_result(path, small) == [path]
  assert not (tmp_path / "r.curves.npz").exists()
  assert json.loads(path.read_text()) == small == results_io.load_result(path)


def test_missing_arrays_file_and_reserved_key_are_clear_errors(tmp_path):
  path = tmp_path / "r.json"
  results_io.save_result(path, tricky_result())
  (tmp_path / "r.curves.npz").unlink()
  with pytest.raises(FileNotFoundError, match="r.curves.npz"):
    results_io.load_result(path)
  with pytest.raises(ValueError, match=r"\$curves"):
    results_io.save_result(path, {"x": {"$curves": 1}})


def test_convert_rewrites_in_place_and_checks(tmp_path):
  result = tricky_result()
  path = tmp_path / "r.json"
  path.write_text(json.dumps(result, indent=2))
  before, after = results_io.convert(path)
  assert before == len(json.dumps(result, indent=2)) and after < before
  assert results_io.canonical(results_io.load_result(path)) == results_io.canonical(result)
  untouched = tmp_path / "u.json"
  untouched.write_text('{"a":  [1, 2]}')
  assert results_io.convert(untouched) == (14, 14) and untouched.read_text() == '{"a":  [1, 2]}'


def test_saved_results_name_no_folder_of_the_machine(tmp_path):
  repo = tmp_path / "u" / "aila_jax"
  result = {"command": f"bench/x.py --data_dir {tmp_path}/u/shared/data --out {repo}/runs/o",
            "runs": [{"data_dir": f"{tmp_path}/u/shared/data", f"{repo}/key": 1}], "n": 3, "other": "/tmp/out"}
  assert results_io.portable(result, repo) == {
      "command": "bench/x.py --data_dir ../shared/data --out runs/o",
      "runs": [{"data_dir": "../shared/data", "key": 1}], "n": 3, "other": "/tmp/out"}
  written = results_io.save_result(tmp_path / "r.json", {"data_dir": str(REPO.parent / "shared" / "data")})
  assert json.loads(written[-1].read_text()) == {"data_dir": "../shared/data"}


def test_no_stored_result_names_a_home_or_checkout_folder():
  stored = [p for p in RESULTS.rglob("*") if p.suffix in (".json", ".txt", ".log", ".md")]  # logs of bench.run too
  assert any(p.suffix == ".txt" for p in stored)
  for p in stored:
    text = p.read_text()
    for root in machine_folders(temp_and_home=False):  # the device machines' own $OUT folders may appear
      assert root not in text, (p.name, root)
