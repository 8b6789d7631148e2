"""bench/multigpu.py's derived numbers pinned against hand calculations: speedup r_n / r_1 and speedup / n per
layout, which layouts run, what the parent launches and which RESULT line it keeps (no GPU, no subprocess: the
launcher and the workers are faked)."""
import functools
import json
import sys
import types

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import multigpu  # noqa: E402


def _row(rate, devices, processes, kind="FakeGPU"):
  return {"examples_per_sec": rate, "devices": devices, "processes": processes, "device_kind": kind}


def _fake_launch(rates):
  """_launch stand-in: the layout is (devices, per_gpu) -> its rate in ``rates``; records its calls."""
  calls = []

  def launch(args, workload, devices, per_gpu):
    calls.append((workload, list(devices), per_gpu))
    layout = "one_gpu" if devices == [0] else ("process_per_gpu" if per_gpu else "one_process")
    return _row(rates[workload][layout], len(devices), len(devices) if per_gpu else 1)
  return launch, calls


def test_speedup_and_fraction_of_linear_per_layout(tmp_path, monkeypatch):
  rates = {"cifar_dla": {"one_gpu": 1000.0, "one_process": 3000.0, "process_per_gpu": 3600.0},
           "multi30k": {"one_gpu": 200.0, "one_process": 500.0, "process_per_gpu": 800.0}}
  launch, calls = _fake_launch(rates)
  monkeypatch.setattr(multigpu, "_launch", launch)
  monkeypatch.setattr(multigpu, "_device_count", lambda smoke: 4)
  out = tmp_path / "r.json"
  result = multigpu.main(["--workloads=cifar_dla,multi30k", "--steps=7", "--warmup=2", f"--out={out}"])
  w = result["workloads"]["cifar_dla"]
  # 3000 / 1000 = 3.0, over 4 devices 0.75; 3600 / 1000 = 3.6 -> 0.9; the one-GPU row 1.0 of 1 device
  assert w["one_gpu"]["speedup"] == 1.0 and w["one_gpu"]["speedup_over_linear"] == 1.0
  assert w["one_process"]["speedup"] == pytest.approx(3.0) and w["one_process"]["speedup_over_linear"] == 0.75
  assert w["process_per_gpu"]["speedup"] == pytest.approx(3.6)
  assert w["process_per_gpu"]["speedup_over_linear"] == pytest.approx(0.9)
  m = result["workloads"]["multi30k"]  # its own one-GPU base: 500 / 200 = 2.5 -> 0.625; 800 / 200 = 4 -> 1.0
  assert m["one_process"]["speedup"] == pytest.approx(2.5)
  assert m["one_process"]["speedup_over_linear"] == pytest.approx(0.625)
  assert m["process_per_gpu"]["speedup"] == pytest.approx(4.0)
  assert m["process_per_gpu"]["speedup_over_linear"] == pytest.approx(1.0)
  assert (result["devices"], result["steps"], result["warmup"], result["device_kind"]) == (4, 7, 2, "FakeGPU")
  assert calls == [("cifar_dla", [0], False), ("cifar_dla", [0, 1, 2, 3], False), ("cifar_dla", [0, 1, 2, 3], True),
                   ("multi30k", [0], False), ("multi30k", [0, 1, 2, 3], False), ("multi30k", [0, 1, 2, 3], True)]
  assert json.loads(out.read_text()) == result


def test_one_device_runs_only_the_one_gpu_layout(monkeypatch):
  launch, calls = _fake_launch({"cifar_dla": {"one_gpu": 50.0}})
  monkeypatch.setattr(multigpu, "_launch", launch)
  monkeypatch.setattr(multigpu, "_device_count", lambda smoke: 1)
  result = multigpu.main(["--workloads=cifar_dla", "--smoke"])  # smoke: no --out, nothing written
  assert list(result["workloads"]["cifar_dla"]) == ["one_gpu"] and calls == [("cifar_dla", [0], False)]
  assert (result["steps"], result["warmup"], result["smoke"]) == (3, 1, True)


def test_default_steps_and_warmup_and_unknown_workloads(monkeypatch):
  launch, _ = _fake_launch({"cifar_dla": {"one_gpu": 1.0}})
  monkeypatch.setattr(multigpu, "_launch", launch)
  monkeypatch.setattr(multigpu, "_device_count", lambda smoke: 1)
  result = multigpu.main(["--workloads=cifar_dla", "--smoke", "--steps=5"])
  assert (result["steps"], result["warmup"]) == (5, 1)
  with pytest.raises(SystemExit, match="unknown \\['nope'\\]"):
    multigpu.main(["--workloads=cifar_dla,nope", "--smoke"])


class _Proc:
  def __init__(self, out, rc=0):
    self.out, self.returncode = out, rc

  def communicate(self, timeout=None):
    return self.out, None


def _fake_popen(outputs, seen):
  it = iter(outputs)

  def popen(cmd, env=None, **kw):
    seen.append((cmd, env))
    return _Proc(*next(it))
  return popen


def test_launch_keeps_process_0s_single_result_line(monkeypatch):
  seen = []
  row0, row1 = {"examples_per_sec": 12.5, "devices": 2}, {"examples_per_sec": 99.0}
  outputs = [("log\nRESULT " + json.dumps(row0) + "\nmore\n", 0), ("RESULT " + json.dumps(row1) + "\n", 0)]
  monkeypatch.setattr(multigpu.subprocess, "Popen", _fake_popen(outputs, seen))
  monkeypatch.setattr(multigpu, "_free_port", lambda: 4321)
  args = types.SimpleNamespace(steps=11, warmup=3, smoke=True, timeout=5)
  assert multigpu._launch(args, "cifar_dla", [0, 1], True) == row0  # process 0's row, not process 1's
  assert len(seen) == 2
  for i, (cmd, env) in enumerate(seen):
    assert cmd[2:] == ["--worker", "--workload=cifar_dla", "--steps=11", "--warmup=3", "--smoke",
                       "--coordinator=127.0.0.1:4321", "--num_processes=2", f"--process_id={i}"]
    assert "--xla_force_host_platform_device_count=1" in env["XLA_FLAGS"].split()  # one device a process
  # one process on both devices
  seen.clear()
  monkeypatch.setattr(multigpu.subprocess, "Popen", _fake_popen([("RESULT " + json.dumps(row1), 0)], seen))
  assert multigpu._launch(args, "cifar_dla", [0, 1], False) == row1
  ((cmd, env),) = seen
  assert "--worker" in cmd and not any(c.startswith("--process_id") for c in cmd)
  assert env["XLA_FLAGS"].split().count("--xla_force_host_platform_device_count=2") == 1


def test_launch_refuses_a_failed_process_or_missing_result(monkeypatch):
  args = types.SimpleNamespace(steps=1, warmup=1, smoke=True, timeout=5)
  monkeypatch.setattr(multigpu, "_free_port", lambda: 1)
  monkeypatch.setattr(multigpu.subprocess, "Popen", _fake_popen([("RESULT {}", 0), ("boom", 1)], []))
  with pytest.raises(RuntimeError, match="failed"):
    multigpu._launch(args, "cifar_dla", [0, 1], True)
  monkeypatch.setattr(multigpu.subprocess, "Popen", _fake_popen([("no result", 0)], []))
  with pytest.raises(RuntimeError, match="no RESULT"):
    multigpu._launch(args, "cifar_dla", [0, 1], False)
  two = "RESULT {\"a\": 1}\nRESULT {\"a\": 2}\n"
  monkeypatch.setattr(multigpu.subprocess, "Popen", _fake_popen([(two, 0)], []))
  with pytest.raises(RuntimeError, match="no RESULT"):
    multigpu._launch(args, "cifar_dla", [0, 1], False)


def test_env_gpu_layout_names_its_devices(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--a=1 --xla_force_host_platform_device_count=8")
  env = multigpu._env(False, [2, 3], 2)
  assert env["CUDA_VISIBLE_DEVICES"] == "2,3"
  env = multigpu._env(True, [0], 3)
  assert env["XLA_FLAGS"].split() == ["--a=1", "--xla_force_host_platform_device_count=3"]
  assert env["JAX_PLATFORMS"] == "cpu" and env["PYTHONPATH"].split(":")[0] == str(multigpu.REPO)


def test_worker_rate_and_target_tokens(monkeypatch, capsys):
  """worker's arithmetic: examples/s = steps x global batch / timed seconds (the warm-up excluded), target
  tokens/s = that x max_len; the model, task and step are stand-ins (nothing compiled)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from aila_jax import models, tasks  # pylint: disable=import-outside-toplevel
  from aila_jax.train import optim, sharding, trainer, xla_options  # pylint: disable=import-outside-toplevel
  clock = iter([10.0, 12.5, 100.0, 104.0])  # warm-up 2.5 s, timed 4.0 s
  monkeypatch.setattr(multigpu, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  monkeypatch.setattr(sharding, "make_mesh", lambda: None)
  monkeypatch.setattr(sharding, "check_batch_divisible", lambda *a, **k: None)
  monkeypatch.setattr(sharding, "replicated", lambda mesh: None)
  monkeypatch.setattr(sharding, "batch_sharding", lambda mesh: None)
  monkeypatch.setattr(models, "get_model", lambda *a, **k: None)
  monkeypatch.setattr(tasks, "get_task", lambda *a, **k: None)
  monkeypatch.setattr(optim, "make_schedule", lambda *a, **k: None)
  monkeypatch.setattr(optim, "make_optimizer", lambda *a, **k: None)
  monkeypatch.setattr(xla_options, "compiler_options", lambda config: None)
  monkeypatch.setattr(trainer, "_build_state", lambda *a: jnp.zeros(()))
  steps_run = []

  def fake_jit(fn, **kw):
    if not isinstance(fn, functools.partial):  # the random batch
      return lambda key: {"x": jnp.zeros(())}

    def step(state, batch):
      steps_run.append(1)
      return state + 1, {"loss": jnp.asarray(0.25)}
    return step
  monkeypatch.setattr(jax, "jit", fake_jit)
  args = types.SimpleNamespace(num_processes=1, workload="multi30k", smoke=True, steps=6, warmup=3)
  multigpu.worker(args)
  (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("RESULT ")]
  row = json.loads(line[7:])
  assert len(steps_run) == 9
  # smoke multi30k: batch 8, max_len 8; 6 steps x 8 / 4.0 s = 12 examples/s, x 8 tokens = 96 tokens/s
  assert row["examples_per_sec"] == pytest.approx(12.0) and row["target_tokens_per_sec"] == pytest.approx(96.0)
  assert row["seconds"] == 4.0 and row["warmup_seconds"] == 2.5 and row["final_loss"] == 0.25
  assert (row["steps"], row["warmup_steps"], row["global_batch"]) == (6, 3, 8)


def test_two_devices_run_all_three_layouts(monkeypatch):
  launch, calls = _fake_launch({"cifar_dla": {"one_gpu": 100.0, "one_process": 150.0, "process_per_gpu": 190.0}})
  monkeypatch.setattr(multigpu, "_launch", launch)
  monkeypatch.setattr(multigpu, "_device_count", lambda smoke: 2)
  w = multigpu.main(["--workloads=cifar_dla", "--smoke"])["workloads"]["cifar_dla"]
  assert calls == [("cifar_dla", [0], False), ("cifar_dla", [0, 1], False), ("cifar_dla", [0, 1], True)]
  assert w["process_per_gpu"]["speedup"] == pytest.approx(1.9)
  assert w["process_per_gpu"]["speedup_over_linear"] == pytest.approx(0.95)


def test_launch_on_gpus_gives_each_process_its_own_gpu(monkeypatch):
  seen = []
  outputs = [("RESULT {\"r\": 0}", 0), ("", 0), ("", 0)]
  monkeypatch.setattr(multigpu.subprocess, "Popen", _fake_popen(outputs, seen))
  monkeypatch.setattr(multigpu, "_free_port", lambda: 1)
  args = types.SimpleNamespace(steps=1, warmup=1, smoke=False, timeout=5)
  assert multigpu._launch(args, "cifar_dla", [0, 1, 2], True) == {"r": 0}
  assert [env["CUDA_VISIBLE_DEVICES"] for _, env in seen] == ["0", "1", "2"]
  assert all("--smoke" not in cmd for cmd, _ in seen)


def test_zero_warmup_is_kept_and_zero_steps_refused(monkeypatch, tmp_path):
  # `--warmup=0` became 10 (`or` treated 0 as unset; found by mutation testing, 2026-12-08)
  launch, _ = _fake_launch({"cifar_dla": {"one_gpu": 1.0}})
  monkeypatch.setattr(multigpu, "_launch", launch)
  monkeypatch.setattr(multigpu, "_device_count", lambda smoke: 1)
  result = multigpu.main(["--workloads=cifar_dla", "--steps=7", "--warmup=0", f"--out={tmp_path / 'r.json'}"])
  assert (result["steps"], result["warmup"]) == (7, 0)
  with pytest.raises(SystemExit):
    multigpu.main(["--workloads=cifar_dla", "--steps=0"])
