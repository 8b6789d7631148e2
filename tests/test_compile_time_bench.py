"""bench/compile_time.py's count of matrix products in an optimised HLO module (what a GPU autotunes), and its
--isolate mode (each spec in a process of its own)."""
import json
import subprocess
import sys

import jax
import jax.numpy as jnp

from helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
import pytest  # noqa: E402

from bench.compile_time import matmul_counts, split_options  # noqa: E402


def test_counts_dots_and_gemm_calls_by_shape():
  hlo = """
  %dot.1 = f32[4,8]{1,0} dot(f32[4,3]{1,0} %a, f32[3,8]{1,0} %b), lhs_contracting_dims={1}
  %dot.2 = f32[4,8]{1,0} dot(f32[4,3]{1,0} %c, f32[3,8]{1,0} %d), lhs_contracting_dims={1}
  %gemm = (bf16[2,5]{1,0}, s8[0]{0}) custom-call(bf16[2,7]{1,0} %x), custom_call_target="__cublas$gemm"
  %conv = f32[1,4,4,8]{3,2,1,0} convolution(f32[1,4,4,3] %i, f32[3,3,3,8] %k), window={size=3x3}
  """
  assert matmul_counts(hlo) == {"matmuls": 3, "matmul_shapes": 2}


def test_a_compiled_product_is_found_and_a_reduction_is_not():
  x = jnp.ones((4, 3))
  dot = jax.jit(lambda a, b: a @ b).lower(x, jnp.ones((3, 8))).compile().as_text()
  red = jax.jit(lambda a: jnp.sum(a * 2.0, axis=0)).lower(x).compile().as_text()
  assert matmul_counts(dot)["matmuls"] >= 1
  assert matmul_counts(red) == {"matmuls": 0, "matmul_shapes": 0}


def test_spec_options_of_the_benchmark_are_taken_out_of_the_mixer_spec():
  assert split_options("aila2:xla=notriton,keys=folded") == ("aila2:keys=folded", {"xla": "notriton"})
  assert split_options("aila1:mix=vjp,residual=True") == ("aila1:residual=True", {"mix": "vjp"})
  assert split_options("residual") == ("residual", {})
  with pytest.raises(ValueError, match="unknown XLA preset 'nope'"):
    split_options("aila2:xla=nope")


def test_isolate_runs_each_spec_in_its_own_process_and_keeps_a_stopped_one(tmp_path):
  cmd = [sys.executable, str(REPO / "bench" / "compile_time.py"), "--isolate", "--depth", "8", "--batch", "2",
         "--dtype", "float32", "--out", str(tmp_path), "--tag", "iso"]
  subprocess.run(cmd + ["--mixers", "residual;aila1"], check=True, capture_output=True, timeout=300)
  rows = json.loads((tmp_path / "compile_time_cpu_iso.json").read_text())["rows"]
  assert [r["mixer"] for r in rows] == ["residual", "aila1"]
  assert all(r["process"] == "own" and r["status"] == "finished" and r["first_step_s"] > 0 for r in rows)
  assert rows[1]["params"] > rows[0]["params"]  # AILA-1's mixing logits: the spec reached its own process
  # a process stopped before its first step leaves a row that says so (and no timings)
  subprocess.run(cmd + ["--mixers", "residual", "--spec_timeout_s", "0.5", "--tag", "stopped"], check=True,
                 capture_output=True, timeout=300)
  (row,) = json.loads((tmp_path / "compile_time_cpu_stopped.json").read_text())["rows"]
  assert row["status"] == "stopped after --spec_timeout_s 0.5 s" and "first_step_s" not in row
