r"""Compact benchmark results: a small JSON summary beside the per-step curves as compressed arrays.

A result is a JSON-able dict. ``save_result`` moves every long *table* in it (a list of at least
``min_rows`` dicts whose values are all numbers: ``bool``, ``int`` or ``float``, NaN and infinities
included) into ``NAME.curves.npz`` next to ``NAME.json`` (``numpy.savez_compressed``: one array per
column), and leaves in the JSON, in the table's place, a marker::

  {"$curves": "NAME.curves.npz", "table": "t0", "rows": 4500, "columns": ["step", "train/loss", ...]}

Everything else (config, command, evaluations, summary numbers) stays in the JSON as it was, so the
summary is readable on its own and keeps its file name. ``load_result`` puts the tables back and
returns a dict equal to the one saved: same keys in the same order, same types (``1`` stays an
``int``, ``1.0`` a ``float``, ``True`` a ``bool``), the same float64 bits. A plain JSON result (one
without markers) loads as ``json.loads`` would read it, so ``load_result`` reads every file in
``bench/results``.

Column ``j`` of table ``t{i}`` is the array ``t{i}_c{j}`` (``bool``, ``int64`` or ``float64``);
``t{i}_c{j}_isint`` marks the integers of a column that mixes ``int`` and ``float`` (stored as float64,
where every such integer is exact), ``t{i}_c{j}_present`` the rows that have the column when some
rows lack it. A table whose rows do not list their keys in one common order, or hold anything but
numbers, stays in the JSON.

Converting existing results in place (each file is checked: the converted form loads back equal to
the original JSON, else the original is left untouched)::

  python -m bench.results_io convert bench/results/*.json
  python -m bench.results_io expand bench/results/NAME.json   # the full original JSON on stdout
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import sys
from typing import Any

import numpy as np

MARKER = "$curves"
CURVES_SUFFIX = ".curves.npz"
MIN_ROWS = 64
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_EXACT_INT_IN_FLOAT = 2 ** 53
_ABSENT = object()  # a row without the column (JSON null is a value, None, and stays in the JSON)
REPO = pathlib.Path(__file__).resolve().parents[1]


def portable(obj: Any, repo: pathlib.Path = REPO) -> Any:
  """``obj`` with every absolute path into this checkout or the folder beside it written relative to the
  checkout (``/home/u/aila_jax/x`` -> ``x``, ``/home/u/shared/data`` -> ``../shared/data``), inside longer
  strings too (a recorded command line): a stored result names no folder of the machine it ran on."""
  if isinstance(obj, str):
    return obj.replace(f"{repo}/", "").replace(f"{repo.parent}/", "../")
  if isinstance(obj, dict):
    return {portable(k, repo): portable(v, repo) for k, v in obj.items()}
  if isinstance(obj, list):
    return [portable(v, repo) for v in obj]
  return obj


def curves_path(path) -> pathlib.Path:
  """``NAME.json`` -> ``NAME.curves.npz`` (the arrays' file beside a summary)."""
  path = pathlib.Path(path)
  stem = path.name[:-len(".json")] if path.name.endswith(".json") else path.name
  return path.with_name(stem + CURVES_SUFFIX)


def _column(values: list) -> dict[str, np.ndarray] | None:
  """The arrays of one column (``values`` with ``_ABSENT`` where a row lacks it), or None if not numeric."""
  present = [v is not _ABSENT for v in values]
  got = [v for v in values if v is not _ABSENT]
  kinds = {bool if isinstance(v, bool) else int if isinstance(v, int) else float if isinstance(v, float)
           else None for v in got}
  if None in kinds or not got:
    return None
  out: dict[str, np.ndarray] = {}
  if kinds == {bool}:
    out[""] = np.array([v if v is not _ABSENT else False for v in values], dtype=bool)
  elif kinds == {int}:
    if not all(_INT64[0] <= v <= _INT64[1] for v in got):
      return None
    out[""] = np.array([v if v is not _ABSENT else 0 for v in values], dtype=np.int64)
  elif kinds <= {int, float}:
    if not all(abs(v) < _EXACT_INT_IN_FLOAT for v in got if type(v) is int):
      return None
    out[""] = np.array([float(v) if v is not _ABSENT else 0.0 for v in values], dtype=np.float64)
    if int in kinds:
      out["_isint"] = np.array([type(v) is int for v in values], dtype=bool)
  else:  # bool mixed with numbers: keep it in the JSON
    return None
  if not all(present):
    out["_present"] = np.array(present, dtype=bool)
  return out


def _table(rows: list, min_rows: int):
  """(columns, arrays by suffix per column) when ``rows`` is a long list of flat numeric dicts."""
  if len(rows) < min_rows or not all(isinstance(r, dict) and r for r in rows):
    return None
  columns: list[str] = []
  seen: set[str] = set()
  for r in rows:
    for k in r:
      if k not in seen:
        seen.add(k)
        columns.append(k)
  # One common key order: every row lists its keys in the order of ``columns``.
  for r in rows:
    if list(r) != [c for c in columns if c in r]:
      return None
  arrays = []
  for c in columns:
    col = _column([r[c] if c in r else _ABSENT for r in rows])
    if col is None:
      return None
    arrays.append(col)
  return columns, arrays


def split_result(result: dict, curves_name: str, *, min_rows: int = MIN_ROWS):
  """(summary with markers, arrays for the ``.npz``): the long numeric tables taken out of ``result``."""
  arrays: dict[str, np.ndarray] = {}
  tables = [0]

  def walk(x):
    if isinstance(x, dict):
      if MARKER in x:
        raise ValueError(f"a result may not hold the key {MARKER!r} (used to mark the stored curves)")
      return {k: walk(v) for k, v in x.items()}
    if isinstance(x, list):
      table = _table(x, min_rows)
      if table is None:
        return [walk(v) for v in x]
      columns, cols = table
      tid = f"t{tables[0]}"
      tables[0] += 1
      for j, col in enumerate(cols):
        for suffix, arr in col.items():
          arrays[f"{tid}_c{j}{suffix}"] = arr
      return {MARKER: curves_name, "table": tid, "rows": len(x), "columns": columns}
    return x

  return walk(result), arrays


def _atomic_write(path: pathlib.Path, data: bytes):
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    tmp.write_bytes(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def save_result(path, result: dict, *, min_rows: int = MIN_ROWS, indent: int | None = 1,
                ensure_ascii: bool = True) -> list[pathlib.Path]:
  """Writes ``result`` as ``path`` (JSON summary) and, if it holds long tables, ``NAME.curves.npz``.

  Args:
    path: the summary's file name, ``NAME.json``.
    result: a JSON-able dict.
    min_rows: the shortest list of numeric dicts that goes into the arrays file.
    (Paths into the checkout or beside it are stored relative to the checkout: :func:`portable`.)
    indent, ensure_ascii: passed to ``json.dumps`` for the summary.

  Returns:
    the files written (the ``.npz`` first, then the JSON). A stale ``.npz`` of an earlier save with
    tables is removed when this result has none.
  """
  path = pathlib.Path(path)
  if not isinstance(result, dict):
    raise TypeError(f"save_result: result must be a dict, got {type(result).__name__}")
  npz = curves_path(path)
  summary, arrays = split_result(portable(result), npz.name, min_rows=min_rows)
  written = []
  if arrays:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_write(npz, buf.getvalue())
    written.append(npz)
  elif npz.exists():
    npz.unlink()
  _atomic_write(path, json.dumps(summary, indent=indent, ensure_ascii=ensure_ascii).encode())
  written.append(path)
  return written


def _rebuild(marker: dict, npz: dict[str, np.ndarray]) -> list[dict]:
  tid, n, columns = marker["table"], marker["rows"], marker["columns"]
  cols = []
  for j, _ in enumerate(columns):
    key = f"{tid}_c{j}"
    values = npz[key]
    if values.shape != (n,):
      raise ValueError(f"{key}: expected {n} rows, the arrays file has shape {values.shape}")
    values = values.tolist()  # Python bool / int / float, bit for bit
    if f"{key}_isint" in npz:
      values = [int(v) if i else v for v, i in zip(values, npz[f"{key}_isint"].tolist())]
    present = npz[f"{key}_present"].tolist() if f"{key}_present" in npz else None
    cols.append((values, present))
  rows = []
  for i in range(n):
    rows.append({c: vals[i] for c, (vals, present) in zip(columns, cols) if present is None or present[i]})
  return rows


def load_result(path) -> dict:
  """The result saved at ``path`` (``NAME.json``), with its tables read back from ``NAME.curves.npz``."""
  path = pathlib.Path(path)
  summary = json.loads(path.read_text())
  opened: dict[str, Any] = {}

  def walk(x):
    if isinstance(x, dict):
      if MARKER in x:
        name = x[MARKER]
        if name not in opened:
          file = path.parent / name
          if not file.exists():
            raise FileNotFoundError(f"{path} keeps its curves in {file}, which is missing")
          with np.load(file, allow_pickle=False) as npz:
            opened[name] = {k: npz[k] for k in npz.files}
        return _rebuild(x, opened[name])
      return {k: walk(v) for k, v in x.items()}
    if isinstance(x, list):
      return [walk(v) for v in x]
    return x

  return walk(summary)


def canonical(result) -> str:
  """A text equal for two results exactly when they are equal (key order, types and NaNs included)."""
  return json.dumps(result, allow_nan=True)


def convert(path, *, min_rows: int = MIN_ROWS) -> tuple[int, int]:
  """Rewrites the JSON result ``path`` in the compact form; checks it loads back equal, else restores it.

  Returns (bytes before, bytes after: the summary plus the arrays file).
  """
  path = pathlib.Path(path)
  text = path.read_text()
  original = json.loads(text)
  before = len(text.encode())
  if not split_result(original, curves_path(path).name, min_rows=min_rows)[1]:
    return before, before  # no long tables: the file stays as it is
  indent = _guess_indent(text)
  save_result(path, original, min_rows=min_rows, indent=indent, ensure_ascii=text.isascii())
  loaded = load_result(path)
  if canonical(loaded) != canonical(original):
    path.write_text(text)
    npz = curves_path(path)
    if npz.exists():
      npz.unlink()
    raise AssertionError(f"{path}: the converted result does not load back equal; original kept")
  npz = curves_path(path)
  after = path.stat().st_size + (npz.stat().st_size if npz.exists() else 0)
  return before, after


def _guess_indent(text: str) -> int | None:
  lines = text.splitlines()
  if len(lines) < 2:
    return None
  second = lines[1]
  return len(second) - len(second.lstrip(" ")) or None


def main(argv=None):
  ap = argparse.ArgumentParser(prog="python -m bench.results_io", description=__doc__.split("\n")[0])
  sub = ap.add_subparsers(dest="cmd", required=True)
  c = sub.add_parser("convert", help="rewrite JSON results in place in the compact form (checked)")
  c.add_argument("paths", nargs="+")
  c.add_argument("--min_rows", type=int, default=MIN_ROWS)
  e = sub.add_parser("expand", help="print a result's full JSON (curves included)")
  e.add_argument("path")
  e.add_argument("--indent", type=int, default=1)
  args = ap.parse_args(argv)
  if args.cmd == "expand":
    print(json.dumps(load_result(args.path), indent=args.indent))
    return
  total_before = total_after = 0
  for p in args.paths:
    before, after = convert(p, min_rows=args.min_rows)
    total_before += before
    total_after += after
    print(f"{p}: {before:,} -> {after:,} bytes, loads back equal", flush=True)
  print(f"total {total_before:,} -> {total_after:,} bytes", file=sys.stderr)


if __name__ == "__main__":
  main()
