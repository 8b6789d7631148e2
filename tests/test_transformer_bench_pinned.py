"""bench/transformer.py: tokens/s, the ours/torch ratios, the step timer and the training step's loss and Adam
update pinned against hand calculations, on the CPU with fakes (no Transformer is built or compiled)."""
import json
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import transformer


def _fake_torch(monkeypatch):
  torch = types.SimpleNamespace(__version__="0.fake", cuda=types.SimpleNamespace(
      is_available=lambda: True, get_device_name=lambda: "Fake GPU 80GB"))
  monkeypatch.setattr(transformer, "torch", torch)


def test_main_tokens_per_s_and_ratios(monkeypatch, tmp_path, capsys):
  got = {}

  def fake_ours(sizes, vocab, x, y, warmup, steps):
    got["ours"] = (sizes, vocab, x, y, warmup, steps)
    return dict(step_s=0.01, compile_s=1.0, loss=5.0, params=10)

  def fake_torch(sizes, vocab, x, y, warmup, steps, compile_model):
    got[compile_model] = (warmup, steps)
    if compile_model:
      return dict(step_s=0.04, compile_s=9.0, loss=5.5, params=11)
    return dict(step_s=0.02, compile_s=2.0, loss=5.5, params=11)

  _fake_torch(monkeypatch)
  monkeypatch.setattr(transformer, "bench_ours", fake_ours)
  monkeypatch.setattr(transformer, "bench_torch", fake_torch)
  monkeypatch.setattr(sys, "argv", ["x", "--out", str(tmp_path), "--batch", "3", "--length", "5", "--vocab", "50",
                                    "--warmup", "2", "--steps", "4"])
  transformer.main()
  capsys.readouterr()
  info = json.loads((tmp_path / "transformer_Fake-GPU-80GB.json").read_text())
  # tokens per step = B * (L_src + L_tgt) = 3 * (5 + 5) = 30
  assert info["tokens_per_step"] == 30 and info["src_len"] == 5 and info["tgt_len"] == 5 and info["batch"] == 3
  assert info["results"]["ours"]["tokens_per_s"] == pytest.approx(3000.0)  # 30 / 0.01
  assert info["results"]["torch_eager"]["tokens_per_s"] == pytest.approx(1500.0)  # 30 / 0.02
  assert info["results"]["torch_compile"]["tokens_per_s"] == pytest.approx(750.0)  # 30 / 0.04
  assert info["ratios"] == pytest.approx({"ours/torch_eager": 2.0, "ours/torch_compile": 4.0})
  assert info["sizes"] == transformer.BASE and info["vocab"] == 50 and info["device"] == "Fake GPU 80GB"
  sizes, vocab, x, y, warmup, steps = got["ours"]
  assert (sizes, vocab, warmup, steps) == (transformer.BASE, 50, 2, 4) and got[False] == got[True] == (2, 4)
  # random tokens without padding in [3, vocab), the targets ending with EOS (2)
  assert x.shape == y.shape == (3, 5) and x.min() >= 3 and x.max() < 50 and y[:, :-1].min() >= 3
  assert (y[:, -1] == 2).all()


def test_main_failed_compile_has_no_ratio(monkeypatch, tmp_path, capsys):
  def fake_torch(sizes, vocab, x, y, warmup, steps, compile_model):
    if compile_model:
      raise RuntimeError("inductor")
    return dict(step_s=0.5, compile_s=2.0, loss=5.5, params=11)

  _fake_torch(monkeypatch)
  monkeypatch.setattr(transformer, "bench_ours", lambda *a: dict(step_s=0.25, compile_s=1.0, loss=5.0, params=10))
  monkeypatch.setattr(transformer, "bench_torch", fake_torch)
  monkeypatch.setattr(sys, "argv", ["x", "--out", str(tmp_path), "--quick"])
  transformer.main()
  capsys.readouterr()
  info = json.loads((tmp_path / "transformer_Fake-GPU-80GB.json").read_text())
  # --quick: batch 4, length 16 -> 4 * 32 = 128 tokens per step
  assert info["tokens_per_step"] == 128 and info["sizes"] == transformer.QUICK
  assert (info["warmup"], info["timed_steps"], info["vocab"]) == (1, 2, 64)
  assert info["results"]["ours"]["tokens_per_s"] == pytest.approx(512.0)  # 128 / 0.25
  assert info["results"]["torch_compile"] == {"error": "RuntimeError: inductor"}
  assert info["ratios"] == pytest.approx({"ours/torch_eager": 2.0})


def test_bench_ours_times_only_the_timed_steps(monkeypatch, capsys):
  # Time moves only in the step: the first call 10 s (compile), warm-up calls 0.25 s, timed calls 0.5 s each.
  clock = {"t": 0.0, "n": 0}
  warmup, steps = 2, 4

  class _Loss:
    def block_until_ready(self):
      return self

    def __float__(self):
      return 2.5

  def step(params, opt_state, x, y, rng):
    n = clock["n"]
    clock["t"] += 10.0 if n == 0 else 0.25 if n <= warmup else 0.5
    clock["n"] += 1
    return params, opt_state, _Loss(), rng

  def init(x, y):
    clock["t"] += 100.0  # initialisation is not part of the first step's time
    return {"a": np.zeros((2, 3)), "b": np.zeros(4)}, None

  monkeypatch.setattr(transformer, "ours_step_fn", lambda sizes, vocab, max_len: (step, init))
  monkeypatch.setattr(transformer, "time", types.SimpleNamespace(perf_counter=lambda: clock["t"]))
  x = np.full((2, 3), 5, np.int32)
  r = transformer.bench_ours(transformer.QUICK, 10, x, x, warmup, steps)
  capsys.readouterr()
  assert clock["n"] == 1 + warmup + steps
  assert r == {"step_s": 0.5, "compile_s": 10.0, "loss": 2.5, "params": 10}


def test_ours_step_label_smoothed_loss_and_adam_update(monkeypatch):
  # A stand-in model whose logits are a parameter (B=1, T=3, vocab 4), to pin the loss and the optimiser.
  class _Model:
    def __init__(self, **kw):
      self.kw = kw

    def init(self, rng, x, y):
      return {"params": {"logits": jnp.asarray(_LOGITS)}}

    def apply(self, variables, x, y, train, rngs):
      return variables["params"]["logits"], {}

  monkeypatch.setattr(transformer, "EncoderDecoder", _Model)
  step, init = transformer.ours_step_fn(transformer.QUICK, 4, 3)
  x = jnp.array([[3, 3, 3]], jnp.int32)
  y = jnp.array([[1, 2, 0]], jnp.int32)  # the last target is padding: weight 0
  params, opt = init(x, y)
  new, _, loss, _ = step(params, opt, x, y, jax.random.key(0))
  # by hand: logp = logits - logsumexp; positions 0 and 1 only, each 0.9 * (-logp[y]) + 0.1 * mean_k(-logp_k)
  lg = np.asarray(_LOGITS, np.float64)[0]
  logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
  ce = [0.9 * -logp[t, y_t] - 0.1 * logp[t].mean() for t, y_t in ((0, 1), (1, 2))]
  assert float(loss) == pytest.approx(sum(ce) / 2, rel=1e-5)
  # Adam's first step moves each parameter by lr = 1e-4 against the sign of its gradient (bias-corrected
  # m / sqrt(v) = g / |g|); the padded position has zero gradient and does not move.
  g = np.exp(logp) - 0.9 * np.eye(4)[[1, 2, 0]] - 0.1 / 4
  g[2] = 0.0
  expected = lg - 1e-4 * np.sign(g)
  np.testing.assert_allclose(np.asarray(new["logits"])[0], expected, rtol=0, atol=3e-7)


_LOGITS = [[[0.5, -1.0, 2.0, 0.0], [1.0, 1.5, -0.5, 0.25], [3.0, 0.0, 0.0, 0.0]]]
