"""bench/mrla_peer.py's derived numbers against hand calculations: medians over rounds, images/s, the relative
cost (step time over the plain ResNet-50's in the same framework and mode), and the summary the README and
bench/figures.py quote (throughput ratio to the official code's best mode, the official best relative cost,
the overhead ratio). Neither our model nor PyTorch runs: both sides' steps are fakes that hand out chosen times
(a stand-in ``torch`` module, no GPU)."""
import json
import sys
import types

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import mrla_peer  # noqa: E402

LOOP = 7
TIMES = {  # seconds per step, 3 rounds: medians in the comments (the means differ)
    ("jax", "jit", "plain"): [0.100, 0.120, 0.110],            # 110 ms
    ("jax", "jit", "mrla_light"): [0.130, 0.200, 0.132],       # 132 ms: x1.2
    ("jax", "jit", "mrla_base"): [0.165, 0.160, 0.170],        # 165 ms: x1.5
    ("torch", "eager", "plain"): [0.200, 0.210, 0.190],        # 200 ms
    ("torch", "eager", "mrla_light"): [0.300, 0.310, 0.290],   # 300 ms: x1.5
    ("torch", "eager", "mrla_base"): [0.500, 0.400, 0.510],    # 500 ms: x2.5
    ("torch", "compile", "plain"): [0.160, 0.150, 0.200],      # 160 ms
    ("torch", "compile", "mrla_light"): [0.256, 0.250, 0.300],  # 256 ms: x1.6
    ("torch", "compile", "mrla_base"): [0.330, 0.320, 0.400],  # 330 ms: x2.0625
}


def _install(monkeypatch):
  queues = {k: list(v) for k, v in TIMES.items()}
  calls = []

  def take(key, n):
    calls.append((key, n))
    return queues[key].pop(0) if n == LOOP else 1.0

  def make_ours(net, batch, size, classes, dtype):
    return types.SimpleNamespace(net=net), 0, {"plain": 10, "mrla_light": 11, "mrla_base": 12}[net]

  def run_jax(step, state, n):
    return state, take(("jax", "jit", step.net), n)

  class Runner:
    def __init__(self, ctor, mode, batch, size, classes, device):
      self.key, self.params = ("torch", mode, ctor), 20

    def run(self, n):
      return take(self.key, n)

  fake_torch = types.ModuleType("torch")
  fake_torch.__version__ = "0.fake"
  fake_torch.cuda = types.SimpleNamespace(is_available=lambda: False)
  monkeypatch.setitem(sys.modules, "torch", fake_torch)
  monkeypatch.setattr(mrla_peer, "make_ours", make_ours)
  monkeypatch.setattr(mrla_peer, "run_jax", run_jax)
  monkeypatch.setattr(mrla_peer, "TorchRunner", Runner)
  monkeypatch.setattr(mrla_peer, "fetch_peer", lambda mirror=None: "models_dir")
  monkeypatch.setattr(mrla_peer, "official_constructors", lambda d: {n: n for n in mrla_peer.NETS})
  return calls, queues


def test_rows_relative_costs_and_summary(monkeypatch, tmp_path):
  calls, queues = _install(monkeypatch)
  monkeypatch.setattr(sys, "argv", ["mrla_peer.py", "--out", str(tmp_path), "--batch", "8", "--rounds", "3",
                                    "--loop", str(LOOP)])
  result = mrla_peer.main()
  assert not any(queues.values())
  timed = [k for k, n in calls if n == LOOP]
  order = [("jax", "jit", "plain"), ("torch", "eager", "plain"), ("torch", "compile", "plain"),
           ("jax", "jit", "mrla_light"), ("torch", "eager", "mrla_light"), ("torch", "compile", "mrla_light"),
           ("jax", "jit", "mrla_base"), ("torch", "eager", "mrla_base"), ("torch", "compile", "mrla_base")]
  assert timed == order * 3  # interleaved rounds, every network in turn
  saved = json.loads((tmp_path / "mrla_peer_cpu.json").read_text())
  assert saved["rows"] == result["rows"] and saved["summary"] == result["summary"]
  assert saved["rounds"] == 3 and saved["loop"] == LOOP and saved["batch"] == 8
  rows = {(r["framework"], r["mode"], r["net"]): r for r in saved["rows"]}
  medians = {k: sorted(v)[1] for k, v in TIMES.items()}
  plain = {("jax", "jit"): 0.110, ("torch", "eager"): 0.200, ("torch", "compile"): 0.160}
  for key, sec in medians.items():
    r = rows[key]
    assert r["step_ms"] == pytest.approx(sec * 1e3), key
    assert r["images_per_s"] == pytest.approx(8 / sec), key
    assert r["relative_cost"] == pytest.approx(sec / plain[key[:2]]), key
    assert r["round_ms"] == pytest.approx([t * 1e3 for t in TIMES[key]])
  assert rows[("jax", "jit", "mrla_light")]["relative_cost"] == pytest.approx(1.2)
  assert rows[("torch", "eager", "mrla_base")]["relative_cost"] == pytest.approx(2.5)
  assert rows[("torch", "compile", "plain")]["params"] == 20 and rows[("jax", "jit", "mrla_base")]["params"] == 12
  s = saved["summary"]
  assert set(s) == {"mrla_light", "mrla_base"}
  # mrla_light: the official best images/s is torch.compile (256 ms), its best relative cost eager's 1.5
  light = s["mrla_light"]
  assert light["ours_images_per_s"] == pytest.approx(8 / 0.132)
  assert light["official_best_images_per_s"] == pytest.approx(8 / 0.256)
  assert light["throughput_ratio"] == pytest.approx(0.256 / 0.132)
  assert light["ours_relative_cost"] == pytest.approx(1.2)
  assert light["official_best_relative_cost"] == pytest.approx(1.5)
  assert light["overhead_ratio"] == pytest.approx(0.2 / 0.5)  # (1.2 - 1) / (1.5 - 1)
  base = s["mrla_base"]
  assert base["official_best_images_per_s"] == pytest.approx(8 / 0.330)
  assert base["throughput_ratio"] == pytest.approx(2.0)  # 330 / 165
  assert base["official_best_relative_cost"] == pytest.approx(0.330 / 0.160)
  assert base["overhead_ratio"] == pytest.approx(0.5 / (0.330 / 0.160 - 1))


def test_ours_only_has_relative_costs_and_no_summary(monkeypatch, tmp_path):
  _install(monkeypatch)
  monkeypatch.setattr(sys, "argv", ["mrla_peer.py", "--out", str(tmp_path), "--batch", "4", "--rounds", "3",
                                    "--loop", str(LOOP), "--torch-modes", "", "--nets", "plain,mrla_light"])
  result = mrla_peer.main()
  assert [r["net"] for r in result["rows"]] == ["plain", "mrla_light"]
  assert [r["relative_cost"] for r in result["rows"]] == pytest.approx([1.0, 1.2])
  assert result["rows"][1]["images_per_s"] == pytest.approx(4 / 0.132)
  assert result["summary"] == {}


def test_run_jax_is_wall_time_over_n_steps(monkeypatch):
  clock = iter([3.0, 3.5])
  monkeypatch.setattr(mrla_peer, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  state, sec = mrla_peer.run_jax(lambda s: s * 2, 1, 5)
  assert state == 32 and sec == pytest.approx(0.1)  # 0.5 s / 5 steps


def test_torch_runner_run_is_wall_time_over_n_steps(monkeypatch):
  clock = iter([1.0, 1.6])
  monkeypatch.setattr(mrla_peer, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  r = object.__new__(mrla_peer.TorchRunner)
  steps = []
  r.device, r.step = "cpu", lambda: steps.append(1)
  assert r.run(3) == pytest.approx(0.2) and len(steps) == 3


def test_parse_net():
  assert mrla_peer.parse_net("mrla_light") == ("mrla_light", {})
  assert mrla_peer.parse_net("mrla_light@value_conv=conv:dim_per_head=4") == (
      "mrla_light", {"value_conv": "conv", "dim_per_head": "4"})
  with pytest.raises(SystemExit, match="expected NAME@KEY=VALUE"):
    mrla_peer.parse_net("mrla_light@value_conv")


def test_without_the_plain_network_the_summary_has_no_relative_costs_and_is_still_written(monkeypatch, tmp_path):
  # crashed formatting None with :.3f after every round had run (found by mutation testing, 2026-12-08)
  _install(monkeypatch)
  monkeypatch.setattr(sys, "argv", ["mrla_peer.py", "--out", str(tmp_path), "--batch", "8", "--rounds", "3",
                                    "--loop", str(LOOP), "--nets", "mrla_light"])
  result = mrla_peer.main()
  s = result["summary"]["mrla_light"]
  assert s["ours_relative_cost"] is None and s["official_best_relative_cost"] is None and s["overhead_ratio"] is None
  assert s["throughput_ratio"] == pytest.approx((8 / 0.132) / (8 / 0.256))  # ours vs the faster official mode
  assert json.loads((tmp_path / "mrla_peer_cpu.json").read_text())["summary"] == result["summary"]
