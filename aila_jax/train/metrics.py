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
RESUME_KEY = "resumed_from_step"  # the marker row a resumed run appends (MetricWriter.mark_resume)


def _to_py(v):
  v = np.asarray(v)
  return v.item() if v.ndim == 0 else v.tolist()


class MetricWriter:
  """Appends one JSON object per logged step to ``workdir/metrics.jsonl`` and mirrors scalars to
  TensorBoard event files (tensorboardX: no TensorFlow needed).

  Keys are prefixed by their split (``train/loss``, ``eval/accuracy``); every
  row has ``step``. Only process 0 writes. ``wall_clock=True`` (``config.log_wall_clock``) adds ``wall``,
  the seconds since this writer's first row, to every row (for error-against-time curves; a resumed run
  starts a new clock).
  """

  def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True, tensorboard: bool = True,
               wall_clock: bool = False):
    self.path = pathlib.Path(workdir) / METRICS_FILE
    self.enabled = enabled
    self._t0 = None if wall_clock else False  # False: no wall column; None: clock not started yet
    self._tb = None
    if enabled and tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

  def mark_resume(self, step: int) -> None:
    """Appends a resume marker: the rows this run writes replace those logged after ``step``.

    ``metrics.jsonl`` is only ever appended to, so the rows of an interrupted
    (or an earlier, finished) run stay in the file; :func:`read_metrics` gives
    the history as the latest run sees it (rows after a marker's step written
    before the marker are superseded). A fresh run in a workdir with old rows
    marks step 0.
    """
    if not self.enabled or not self.path.exists():
      return
    with self.path.open("rb+") as f:
      f.seek(0, 2)
      if f.tell():
        f.seek(-1, 2)
        if f.read(1) != b"\n":  # a half-written last line of a killed run: end it
          f.write(b"\n")
    with self.path.open("a") as f:
      f.write(json.dumps({"step": int(step), RESUME_KEY: int(step)}) + "\n")

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    if RESUME_KEY in metrics:
      raise ValueError(f"metric name {RESUME_KEY!r} is reserved for resume markers")
    row = {"step": int(step), **{k: _to_py(v) for k, v in metrics.items()}}
    if self._t0 is not False:
      now = time.perf_counter()
      self._t0 = now if self._t0 is None else self._t0
      row["wall"] = now - self._t0
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


def read_metrics(workdir: str | pathlib.Path, *, raw: bool = False) -> list[dict]:
  """The rows of ``workdir/metrics.jsonl`` as dicts (for notebooks and tests).

  By default, the history as the latest run sees it: at each resume marker
  (:meth:`MetricWriter.mark_resume`) the rows logged after the marker's step
  by earlier runs are dropped, and the markers themselves are left out; lines
  that are not JSON (a half-written last line of a killed run) are skipped.
  ``raw=True``: every parsable row in file order, markers included.
  """
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  rows = []
  for line in path.read_text().splitlines():
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      continue
    if not isinstance(row, dict) or "step" not in row:
      continue
    if not raw and RESUME_KEY in row:
      rows = [r for r in rows if r["step"] <= row[RESUME_KEY]]
      continue
    rows.append(row)
  return rows


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
