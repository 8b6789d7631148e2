r"""Daily price forecasting windows (dataset ``prices``), as in AILA's price experiments.

The five series of ``shared/data/prices`` (``date,close`` csv files, see its
README): S&P 500, gold, US dollar index, coffee and wheat futures, chosen by
``config.dataset_kwargs.series``. Options (``config.dataset_kwargs``):

* ``series``: ``sp500``, ``gold``, ``usd``, ``coffee``, ``wheat`` (a key of :data:`SERIES`);
* ``lookback`` :math:`L` (days of input) and ``horizon`` :math:`H` (days predicted);
* ``split`` = (train, val, test) fractions of the rows, in time order;
* ``transform``: the space the series :math:`y` lives in, ``log_return``
  (default, :math:`y = \log p`) or ``standard`` (:math:`y = p`); it also picks
  the defaults of ``target`` and ``features``;
* ``target``: ``change`` (default for ``log_return``) or ``level`` (default for ``standard``), below;
* ``features``: a name or a tuple of names of the input channels, of
  ``relative``, ``returns``, ``level`` (default ``relative`` for
  ``log_return``, ``level`` for ``standard``), below;
* ``file``: a csv path overriding the series' file (tests, other series).

**Windows and splits, without leakage.** Rows are split chronologically at
:math:`b_1 = \lfloor f_{\text{train}} N \rfloor` and :math:`b_2 = b_1 +
\lfloor f_{\text{val}} N \rfloor`. A window anchored at day :math:`s` has
inputs :math:`p_{s-L+1..s}` (and :math:`p_{s-L}` for ``returns``) and targets
:math:`p_{s+1..s+H}`; it belongs to the split whose row range holds *all* its
targets, so no target ever crosses a split boundary (inputs of the first
val/test windows reach back into the previous split: that is the past, known
at forecast time). Anchors whose targets straddle a boundary are dropped.

**Statistics, fitted on the train rows** :math:`[0, b_1)` only (:class:`PriceScaler`):
:math:`\sigma_h` = the standard deviation of the :math:`h`-day changes
:math:`y_{t+h} - y_t` with both days in the train rows (:math:`h = 1..H`), and
:math:`\mu, s` = the mean and standard deviation of :math:`y` on the train rows.

**Targets** (``target``, float32 ``[H]``):

* ``change``, the residual-to-naive parameterisation:
  :math:`z_h = (y_{s+h} - y_s) / \sigma_h`, de-scaled
  :math:`\hat y_{s+h} = y_s + \sigma_h \hat z_h`. The output :math:`\hat z = 0`
  *is* the naive last-value forecast :math:`\hat p_{s+h} = p_s`, exactly (in
  both spaces), so a model whose head starts at zero
  (``config.model.zero_head``) starts as the random-walk forecast and learns
  a correction to it. In log space, :math:`\hat p = p_s \exp(\sigma_h \hat z)`.
* ``level``: :math:`z = (y_{s+h} - \mu) / s`, de-scaled :math:`\hat y = \mu + s \hat z`
  (the classic min-max/standard scaling of levels; on trending prices the test
  levels lie outside the train range).

**Input channels** (``features``; ``inputs`` float32 ``[L, F]``, one channel per name):

* ``relative``: :math:`(y_{s-k} - y_s) / \sigma_1`, :math:`k = L-1..0`: the
  window relative to the last observed value (the last entry is 0);
* ``returns``: :math:`(y_{s-k} - y_{s-k-1}) / \sigma_1`: the one-day changes
  (log returns for ``log_return``) inside the window;
* ``level``: :math:`(y_{s-k} - \mu) / s`.

Records: ``inputs`` float32 ``[L, F]``, ``target`` float32 ``[H]`` (scaled),
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
TARGETS = ("change", "level")
FEATURES = ("relative", "returns", "level")
DEFAULTS = dict(series="sp500", lookback=32, horizon=1, split=(0.7, 0.15, 0.15), transform="log_return",
                target=None, features=None, file=None)
# what target / features mean when left None, per transform
TRANSFORM_DEFAULTS = {"log_return": ("change", ("relative",)), "standard": ("level", ("level",))}


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
  r"""The train-only statistics and (de)scaling of :mod:`aila_jax.data.prices`.

  ``transform`` is the space (``log_return``: :math:`y = \log p`; ``standard``:
  :math:`y = p`); ``target`` is ``change`` or ``level`` (None: the
  transform's default); ``sigma`` holds :math:`\sigma_h` for ``h = 1..H`` (a
  float is one value for every horizon); ``mu``, ``sd`` are the train mean and
  standard deviation of :math:`y`.
  """
  transform: str
  sigma: float | tuple[float, ...] = 1.0
  mu: float = 0.0
  sd: float = 1.0
  target: str | None = None

  def __post_init__(self):
    if self.transform not in TRANSFORMS:
      raise ConfigError(f"config.dataset_kwargs.transform: expected one of {TRANSFORMS}, got {self.transform!r}")
    if self.target is None:
      object.__setattr__(self, "target", TRANSFORM_DEFAULTS[self.transform][0])
    if self.target not in TARGETS:
      raise ConfigError(f"config.dataset_kwargs.target: expected one of {TARGETS}, got {self.target!r}")
    if not isinstance(self.sigma, (int, float)):
      object.__setattr__(self, "sigma", tuple(float(v) for v in self.sigma))

  @classmethod
  def fit(cls, train_closes: np.ndarray, transform: str, *, horizon: int = 1,
          target: str | None = None) -> "PriceScaler":
    """The statistics of the train rows' closes (nothing else may be passed in: no leakage)."""
    y = cls(transform).to_space(np.asarray(train_closes, np.float64))
    sigma = []
    for h in range(1, horizon + 1):
      sd_h = float(np.std(y[h:] - y[:-h])) if len(y) > h else 0.0
      sigma.append(sd_h if sd_h > 0 and math.isfinite(sd_h) else 1.0)
    sd = float(np.std(y))
    return cls(transform, sigma=tuple(sigma), mu=float(np.mean(y)), sd=sd if sd > 0 else 1.0, target=target)

  def to_space(self, prices, xp=np):
    """Prices -> :math:`y` (``log p`` or ``p``)."""
    return xp.log(prices) if self.transform == "log_return" else prices

  def _sigma(self, h: int, xp=np):
    sigma = self.sigma if isinstance(self.sigma, tuple) else (self.sigma,) * h
    if len(sigma) < h:
      raise ValueError(f"PriceScaler: {len(sigma)} horizon scales for a horizon of {h}")
    return xp.asarray(sigma[:h], dtype=xp.float32 if xp is not np else np.float64)

  @property
  def step_sigma(self) -> float:
    r""":math:`\sigma_1`, the scale of the ``relative`` and ``returns`` input channels."""
    return self.sigma[0] if isinstance(self.sigma, tuple) else float(self.sigma)

  def scale(self, prices, last):
    """Target prices ``[..., H]`` with the anchor close ``last [...]`` -> scaled targets ``z``."""
    y = self.to_space(np.asarray(prices, np.float64))
    if self.target == "change":
      return (y - self.to_space(np.asarray(last, np.float64))[..., None]) / self._sigma(y.shape[-1])
    return (y - self.mu) / self.sd

  def unscale(self, z, last, xp=np):
    """Scaled predictions ``[..., H]`` -> prices (``xp`` = numpy or jax.numpy); ``z = 0`` with
    ``target='change'`` gives ``last`` exactly."""
    if self.target == "change":
      step = self._sigma(z.shape[-1], xp) * z
      if self.transform == "log_return":
        return last[..., None] * xp.exp(step)
      return last[..., None] + step
    y = self.mu + self.sd * z
    return xp.exp(y) if self.transform == "log_return" else y

  def features(self, window_prices: np.ndarray, names: tuple[str, ...], lookback: int) -> np.ndarray:
    """Input channels ``[..., L, F]`` from the closes ``[..., L']`` ending at the anchor (``L' >= L``,
    one more row than ``L`` for ``returns``)."""
    y = self.to_space(np.asarray(window_prices, np.float64))
    channels = []
    for name in names:
      if name == "relative":
        channels.append((y[..., -lookback:] - y[..., -1:]) / self.step_sigma)
      elif name == "returns":
        channels.append(np.diff(y, axis=-1)[..., -lookback:] / self.step_sigma)
      elif name == "level":
        channels.append((y[..., -lookback:] - self.mu) / self.sd)
      else:
        raise ConfigError(f"config.dataset_kwargs.features: unknown feature {name!r}; expected names of {FEATURES}")
    return np.stack(channels, axis=-1)


def price_windows(closes: np.ndarray, anchors: np.ndarray, *, lookback: int, horizon: int,
                  scaler: PriceScaler, features: tuple[str, ...] = ("relative",)) -> dict[str, np.ndarray]:
  """The records of the windows anchored at ``anchors`` (see the module docstring)."""
  span = lookback + (1 if "returns" in features else 0)
  inputs_idx = anchors[:, None] + np.arange(-span + 1, 1)[None, :]  # (W, L')
  target_idx = anchors[:, None] + np.arange(1, horizon + 1)[None, :]  # (W, H)
  last = closes[anchors]
  return {
      "inputs": scaler.features(closes[inputs_idx], features, lookback).astype(np.float32),  # (W, L, F)
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


def _feature_names(value, transform: str) -> tuple[str, ...]:
  if value is None:
    return TRANSFORM_DEFAULTS[transform][1]
  names = (value,) if isinstance(value, str) else tuple(value)
  bad = [n for n in names if n not in FEATURES]
  if not names or bad or len(set(names)) != len(names):
    raise ConfigError(f"config.dataset_kwargs.features: expected a name or a tuple of distinct names of "
                      f"{FEATURES}, got {value!r}")
  return names


@datasets.register_dataset("prices")
def build_prices(config) -> datasets.Dataset:
  kw = datasets.check_kwargs(dict(config.get("dataset_kwargs", {}) or {}), DEFAULTS, dataset="prices")
  for key in ("lookback", "horizon"):
    if not isinstance(kw[key], int) or isinstance(kw[key], bool) or kw[key] < 1:
      raise ConfigError(f"config.dataset_kwargs.{key}: expected an int >= 1, got {kw[key]!r}")
  if kw["transform"] not in TRANSFORMS:
    raise ConfigError(f"config.dataset_kwargs.transform: expected one of {TRANSFORMS}, got {kw['transform']!r}")
  if kw["target"] is not None and kw["target"] not in TARGETS:
    raise ConfigError(f"config.dataset_kwargs.target: expected one of {TARGETS} (or None: the transform's "
                      f"default), got {kw['target']!r}")
  features = _feature_names(kw["features"], kw["transform"])
  if config.get("augment", "none") != "none":
    raise ConfigError(f"config.augment: the prices dataset has no augmentation; set 'none', "
                      f"got {config.augment!r}")
  path = price_file(kw, config.get("data_dir"))
  dates, closes = read_price_csv(path, positive=kw["transform"] == "log_return")
  n, lookback, horizon = len(closes), kw["lookback"], kw["horizon"]
  span = lookback + (1 if "returns" in features else 0)  # rows of input a window reads
  b1, b2 = split_bounds(n, kw["split"])
  scaler = PriceScaler.fit(closes[:b1], kw["transform"], horizon=horizon, target=kw["target"])
  ranges = {"train": (0, b1), "val": (b1, b2), "test": (b2, n)}
  splits = {}
  for name, (lo, hi) in ranges.items():
    anchors = window_anchors(lo, hi, lookback=span, horizon=horizon)
    if name != "val" and len(anchors) == 0:
      raise ConfigError(f"config.dataset_kwargs: the {name} split of {path.name} (rows {lo}..{hi - 1}) holds "
                        f"no window of lookback {lookback} and horizon {horizon}; lower them or change split")
    splits[name] = sources.ArraySource(
        price_windows(closes, anchors, lookback=lookback, horizon=horizon, scaler=scaler, features=features),
        name=f"prices/{path.stem}/{name}")
  evals = {"test": splits["test"]}
  if len(splits["val"]):
    evals["val"] = splits["val"]
  example = _to_float32({k: v[:1] for k, v in splits["train"].arrays.items()})
  info = {"scaler": scaler, "features": features, "file": str(path), "rows": n, "bounds": (b1, b2),
          "dates": (str(dates[0]), str(dates[b1 - 1]) if b1 else None, str(dates[-1])),
          "windows": {k: len(v) for k, v in splits.items()}}
  return datasets.Dataset(name="prices", train=splits["train"], eval=evals, preprocess=_to_float32,
                          example=example, model_kwargs={"num_classes": horizon}, info=info)
