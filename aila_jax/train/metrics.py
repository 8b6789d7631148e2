"""Metric writers (``metrics.jsonl`` and TensorBoard) and the progress line."""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from typing import Mapping

import numpy as np

METRICS_FILE = "metrics.jsonl"


def _to_py(v):
  v = np.asarray(v)
  return v.item() if v.ndim == 0 else v.tolist()


class MetricWriter:
  """Appends one JSON object per logged step to ``workdir/metrics.jsonl`` and mirrors scalars to
  TensorBoard event files (tensorboardX: no TensorFlow needed).

  Keys are prefixed by their split (``train/loss``, ``eval/accuracy``); every
  row has ``step``. Only process 0 writes.
  """

  def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True, tensorboard: bool = True):
    self.path = pathlib.Path(workdir) / METRICS_FILE
    self.enabled = enabled
    self._tb = None
    if enabled and tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Drops rows logged after ``step`` (the work a resumed run redoes)."""
    if not self.enabled or not self.path.exists():
      return
    rows = [line for line in self.path.read_text().splitlines() if line.strip()]
    kept = []
    for line in rows:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (json.JSONDecodeError, KeyError):
        continue  # a half-written last line of a killed run
    self.path.write_text("".join(l + "\n" for l in kept))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _to_py(v) for k, v in metrics.items()}}
    with self.path.open("a") as f:
      f.write(json.dumps(row) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
          self._tb.add_scalar(k, v, int(step))
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
  """The rows of ``workdir/metrics.jsonl`` as dicts (for notebooks and tests)."""
  path = pathlib.Path(workdir) / METRICS_FILE
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


def _fmt_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
  """Prints ``step N/T | loss .. | ... | X steps/s | ETA ..`` lines on stdout."""

  def __init__(self, total_steps: int, start_step: int, *, enabled: bool = True, stream=None):
    self.total = total_steps
    self.enabled = enabled
    self.stream = stream or sys.stdout
    self._t0 = time.perf_counter()
    self._s0 = start_step
    self._last_t = self._t0
    self._last_s = start_step

  def steps_per_sec(self, step: int) -> float:
    now = time.perf_counter()
    rate = (step - self._last_s) / max(now - self._last_t, 1e-9)
    self._last_t, self._last_s = now, step
    return rate

  def line(self, step: int, metrics: Mapping[str, float], rate: float) -> str:
    overall = (step - self._s0) / max(time.perf_counter() - self._t0, 1e-9)
    eta = (self.total - step) / overall if overall > 0 else float("nan")
    parts = [f"step {step}/{self.total}"]
    parts += [f"{k.split('/')[-1]} {v:.4g}" for k, v in metrics.items()
              if k.startswith("train/") and k.split("/")[-1] in ("loss", "accuracy")]
    parts += [f"{rate:.2f} steps/s", f"ETA {_fmt_duration(eta) if math.isfinite(eta) else '?'}"]
    return " | ".join(parts)

  def print(self, step: int, metrics: Mapping[str, float], rate: float) -> None:
    if self.enabled:
      print(self.line(step, metrics, rate), file=self.stream, flush=True)
