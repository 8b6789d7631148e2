r"""Daily price forecasting windows (dataset ``prices``), as in AILA's price experiments.

The five series of ``shared/data/prices`` (``date,close`` csv files, see its
README): S&P 500, gold, US dollar index, coffee and wheat futures, chosen by
``config.dataset_kwargs.series``. Options (``config.dataset_kwargs``):

* ``series``: ``sp500``, ``gold``, ``usd``, ``coffee``, ``wheat`` (a key of :data:`SERIES`);
* ``lookback`` :math:`L` (days of input) and ``horizon`` :math:`H` (days predicted);
* ``split`` = (train, val, test) fractions of the rows, in time order;
* ``transform``: ``log_return`` (default) or ``standard`` (below);
* ``file``: a csv path overriding the series' file (tests, other series).

**Windows and splits, without leakage.** Rows are split chronologically at
:math:`b_1 = \lfloor f_{\text{train}} N \rfloor` and :math:`b_2 = b_1 +
\lfloor f_{\text{val}} N \rfloor`. A window anchored at day :math:`s` has
inputs :math:`p_{s-L+1..s}` and targets :math:`p_{s+1..s+H}`; it belongs to
the split whose row range holds *all* its targets, so no target ever crosses a
split boundary (inputs of the first val/test windows reach back into the
previous split: that is the past, known at forecast time). Anchors whose
targets straddle a boundary are dropped.

**Scaling, fitted on the train rows** :math:`[0, b_1)` only:

* ``log_return``: :math:`z = (\log p - \log p_s) / \sigma`, with
  :math:`\sigma` the standard deviation of the daily log returns of the train
  rows; de-scaled :math:`\hat p = p_s \exp(\sigma \hat z)`. Inputs and targets
  are relative to the last observed close, so the naive forecast is
  :math:`\hat z = 0`.
* ``standard``: :math:`z = (p - \mu) / s` with the train rows' mean and
  standard deviation; de-scaled :math:`\hat p = \mu + s \hat z`.

Records: ``inputs`` float32 ``[L, 1]``, ``target`` float32 ``[H]`` (scaled),
``last`` float32 (:math:`p_s`) and ``target_price`` float32 ``[H]``.

**Checked on load** (:class:`~aila_jax.errors.DataError` naming the file and
its line): the header ``date,close``; a gap (a row with a missing or empty
close); a close that is NaN, infinite or (for ``log_return``) not positive;
a malformed date; dates that are not strictly increasing (non-monotonic or
duplicate).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import os
import pathlib

import numpy as np

from aila_jax.data import datasets, sources
from aila_jax.errors import ConfigError, DataError

SERIES = {
    "sp500": "sp500_gspc.csv",
    "gold": "gold_futures_gcf.csv",
    "usd": "usd_index_dxy.csv",
    "coffee": "coffee_futures_kcf.csv",
    "wheat": "wheat_futures_zwf.csv",
}
TRANSFORMS = ("log_return", "standard")
DEFAULTS = dict(series="sp500", lookback=32, horizon=1, split=(0.7, 0.15, 0.15), transform="log_return",
                file=None)


def read_price_csv(path: str | os.PathLike, *, positive: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Reads a ``date,close`` csv into ``(dates datetime64[D] [N], closes float64 [N])``, checked.

  Raises:
    DataError: naming the file and line of a gap (missing/empty close), a NaN or
      non-finite close, a non-positive close (``positive``), a bad date, or
      dates that are not strictly increasing (out of order or duplicated).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f"{path}: price file not found")
  dates, closes = [], []
  with path.open(newline="") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:2]] != ["date", "close"]:
      raise DataError(f"{path}: line 1: expected the header 'date,close', got {header}")
    for line, row in enumerate(reader, start=2):
      if not row or all(not c.strip() for c in row):
        raise DataError(f"{path}: line {line}: empty row (a gap in the series)")
      date_s = row[0].strip()
      close_s = row[1].strip() if len(row) > 1 else ""
      try:
        date = datetime.date.fromisoformat(date_s)
      except ValueError:
        raise DataError(f"{path}: line {line}: malformed date {date_s!r}; expected YYYY-MM-DD") from None
      if not close_s:
        raise DataError(f"{path}: line {line} ({date_s}): missing close (a gap in the series)")
      try:
        close = float(close_s)
      except ValueError:
        raise DataError(f"{path}: line {line} ({date_s}): close {close_s!r} is not a number") from None
      if math.isnan(close):
        raise DataError(f"{path}: line {line} ({date_s}): close is NaN")
      if not math.isfinite(close):
        raise DataError(f"{path}: line {line} ({date_s}): close is {close_s!r}, not finite")
      if positive and close <= 0:
        raise DataError(f"{path}: line {line} ({date_s}): close {close} is not positive (the log_return "
                        "transform needs positive prices; use config.dataset_kwargs.transform='standard')")
      if dates:
        if date == dates[-1]:
          raise DataError(f"{path}: line {line}: duplicate date {date_s} (also on line {line - 1})")
        if date < dates[-1]:
          raise DataError(f"{path}: line {line}: dates not increasing: {date_s} comes after {dates[-1]}")
      dates.append(date)
      closes.append(close)
  if not closes:
    raise DataError(f"{path}: no rows after the header")
  return np.asarray(dates, dtype="datetime64[D]"), np.asarray(closes, np.float64)


def split_bounds(n: int, split) -> tuple[int, int]:
  """Row boundaries ``(b1, b2)``: train ``[0, b1)``, val ``[b1, b2)``, test ``[b2, n)``."""
  split = tuple(float(f) for f in split)
  if len(split) != 3 or any(f < 0 for f in split) or abs(sum(split) - 1.0) > 1e-6:
    raise ConfigError(f"config.dataset_kwargs.split: expected three fractions >= 0 summing to 1 "
                      f"(train, val, test), got {split}")
  b1 = int(n * split[0])
  b2 = b1 + int(n * split[1])
  return b1, b2


def window_anchors(lo: int, hi: int, *, lookback: int, horizon: int) -> np.ndarray:
  """Anchors ``s`` whose inputs ``[s-L+1, s]`` start at row >= 0 and targets ``[s+1, s+H]`` lie in ``[lo, hi)``."""
  first = max(lo - 1, lookback - 1)
  last = hi - horizon - 1
  return np.arange(first, last + 1) if last >= first else np.zeros((0,), np.int64)


@dataclasses.dataclass(frozen=True)
class PriceScaler:
  r"""The train-only scaling of :mod:`aila_jax.data.prices` (``log_return`` or ``standard``)."""
  transform: str
  sigma: float = 1.0   # log_return: std of the train rows' daily log returns
  mu: float = 0.0      # standard: train mean
  sd: float = 1.0      # standard: train std

  @classmethod
  def fit(cls, train_closes: np.ndarray, transform: str) -> "PriceScaler":
    if transform == "log_return":
      sigma = float(np.std(np.diff(np.log(train_closes))))
      return cls(transform, sigma=sigma if sigma > 0 else 1.0)
    sd = float(np.std(train_closes))
    return cls(transform, mu=float(np.mean(train_closes)), sd=sd if sd > 0 else 1.0)

  def scale(self, prices, last):
    """Prices ``[..., K]`` with the anchor close ``last [...]`` -> scaled values."""
    if self.transform == "log_return":
      return (np.log(prices) - np.log(last)[..., None]) / self.sigma
    return (prices - self.mu) / self.sd

  def unscale(self, z, last, xp=np):
    """Scaled predictions ``[..., H]`` -> prices (``xp`` = numpy or jax.numpy)."""
    if self.transform == "log_return":
      return last[..., None] * xp.exp(self.sigma * z)
    return self.mu + self.sd * z


def price_windows(closes: np.ndarray, anchors: np.ndarray, *, lookback: int, horizon: int,
                  scaler: PriceScaler) -> dict[str, np.ndarray]:
  """The records of the windows anchored at ``anchors`` (see the module docstring)."""
  inputs_idx = anchors[:, None] + np.arange(-lookback + 1, 1)[None, :]  # (W, L)
  target_idx = anchors[:, None] + np.arange(1, horizon + 1)[None, :]  # (W, H)
  last = closes[anchors]
  return {
      "inputs": scaler.scale(closes[inputs_idx], last)[..., None].astype(np.float32),  # (W, L, 1)
      "target": scaler.scale(closes[target_idx], last).astype(np.float32),  # (W, H)
      "last": last.astype(np.float32),
      "target_price": closes[target_idx].astype(np.float32),
  }


def _to_float32(batch):
  return {k: np.asarray(v, np.float32) for k, v in batch.items()}


def price_file(kwargs: dict, data_dir) -> pathlib.Path:
  if kwargs.get("file"):
    return pathlib.Path(kwargs["file"]).expanduser()
  if kwargs["series"] not in SERIES:
    raise ConfigError(f"config.dataset_kwargs.series: unknown series {kwargs['series']!r}; "
                      f"expected one of {sorted(SERIES)}")
  root = sources.resolve_data_dir(data_dir)
  if root is None:
    raise ConfigError("config.data_dir: the prices dataset needs a data folder holding prices/*.csv; "
                      "set config.data_dir or $AILA_DATA_DIR")
  return root / "prices" / SERIES[kwargs["series"]]


@datasets.register_dataset("prices")
def build_prices(config) -> datasets.Dataset:
  kw = datasets.check_kwargs(dict(config.get("dataset_kwargs", {}) or {}), DEFAULTS, dataset="prices")
  for key in ("lookback", "horizon"):
    if not isinstance(kw[key], int) or isinstance(kw[key], bool) or kw[key] < 1:
      raise ConfigError(f"config.dataset_kwargs.{key}: expected an int >= 1, got {kw[key]!r}")
  if kw["transform"] not in TRANSFORMS:
    raise ConfigError(f"config.dataset_kwargs.transform: expected one of {TRANSFORMS}, got {kw['transform']!r}")
  if config.get("augment", "none") != "none":
    raise ConfigError(f"config.augment: the prices dataset has no augmentation; set 'none', "
                      f"got {config.augment!r}")
  path = price_file(kw, config.get("data_dir"))
  dates, closes = read_price_csv(path, positive=kw["transform"] == "log_return")
  n, lookback, horizon = len(closes), kw["lookback"], kw["horizon"]
  b1, b2 = split_bounds(n, kw["split"])
  scaler = PriceScaler.fit(closes[:b1], kw["transform"])
  ranges = {"train": (0, b1), "val": (b1, b2), "test": (b2, n)}
  splits = {}
  for name, (lo, hi) in ranges.items():
    anchors = window_anchors(lo, hi, lookback=lookback, horizon=horizon)
    if name != "val" and len(anchors) == 0:
      raise ConfigError(f"config.dataset_kwargs: the {name} split of {path.name} (rows {lo}..{hi - 1}) holds "
                        f"no window of lookback {lookback} and horizon {horizon}; lower them or change split")
    splits[name] = sources.ArraySource(
        price_windows(closes, anchors, lookback=lookback, horizon=horizon, scaler=scaler),
        name=f"prices/{path.stem}/{name}")
  evals = {"test": splits["test"]}
  if len(splits["val"]):
    evals["val"] = splits["val"]
  example = _to_float32({k: v[:1] for k, v in splits["train"].arrays.items()})
  info = {"scaler": scaler, "file": str(path), "rows": n, "bounds": (b1, b2),
          "dates": (str(dates[0]), str(dates[b1 - 1]) if b1 else None, str(dates[-1])),
          "windows": {k: len(v) for k, v in splits.items()}}
  return datasets.Dataset(name="prices", train=splits["train"], eval=evals, preprocess=_to_float32,
                          example=example, model_kwargs={"num_classes": horizon}, info=info)
