"""bench/results_io.py pinned where the round-trip test left gaps: what keeps a table in the JSON (ints beyond
int64, ints a float64 cannot hold exactly beside floats, bools mixed with ints, rows whose keys come in another
order) and how ``convert`` rewrites the summary (the file's own indent and its non-ASCII text kept)."""
import json

from bench import results_io

N = 64  # results_io.MIN_ROWS: the shortest table that goes into the arrays file


def _save_load(tmp_path, result):
  path = tmp_path / "r.json"
  results_io.save_result(path, result)
  return json.loads(path.read_text()), results_io.load_result(path)


def _marker(columns, rows=N, table="t0"):
  return {"$curves": "r.curves.npz", "table": table, "rows": rows, "columns": columns}


def test_ints_beyond_int64_keep_the_table_in_the_json_and_its_bounds_go_to_the_arrays(tmp_path):
  over = [{"step": i, "n": 2 ** 63 + i} for i in range(N)]          # 2**63 > int64's largest
  under = [{"step": i, "n": -(2 ** 63) - 1 - i} for i in range(N)]  # below int64's smallest
  bounds = [{"n": 2 ** 63 - 1 if i % 2 else -(2 ** 63)} for i in range(N)]
  summary, back = _save_load(tmp_path, {"over": over, "under": under, "bounds": bounds})
  assert summary["over"] == over and summary["under"] == under  # stays as it was
  assert summary["bounds"] == _marker(["n"])
  assert back == {"over": over, "under": under, "bounds": bounds}
  assert [r["n"] for r in back["bounds"]][:2] == [-9223372036854775808, 9223372036854775807]


def test_ints_a_float64_cannot_hold_beside_floats_keep_the_table_in_the_json(tmp_path):
  big = [{"x": 2 ** 53 + 1 if i == 3 else 0.5 * i} for i in range(N)]  # 9007199254740993 is no float64
  edge = [{"x": 2 ** 53 - 1 if i == 3 else 0.5 * i} for i in range(N)]  # 9007199254740991 is one
  summary, back = _save_load(tmp_path, {"big": big, "edge": edge})
  assert summary["big"] == big and summary["edge"] == _marker(["x"])
  assert back["big"][3]["x"] == 9007199254740993 and type(back["big"][3]["x"]) is int
  assert back["edge"][3]["x"] == 9007199254740991 and type(back["edge"][3]["x"]) is int
  assert type(back["edge"][2]["x"]) is float and back["edge"][2]["x"] == 1.0


def test_bools_mixed_with_ints_or_floats_keep_the_table_in_the_json(tmp_path):
  with_int = [{"f": True if i == 0 else i} for i in range(N)]
  with_float = [{"f": False if i == 0 else 0.25 * i} for i in range(N)]
  only_bools = [{"f": i % 3 == 0} for i in range(N)]
  summary, back = _save_load(tmp_path, {"a": with_int, "b": with_float, "c": only_bools})
  assert summary["a"] == with_int and summary["b"] == with_float and summary["c"] == _marker(["f"])
  assert back["a"][0]["f"] is True and back["b"][0]["f"] is False and type(back["a"][1]["f"]) is int
  assert [r["f"] for r in back["c"]][:4] == [True, False, False, True]


def test_rows_listing_their_keys_in_another_order_keep_the_table_in_the_json(tmp_path):
  rows = [{"a": i, "b": 1.5} if i % 2 else {"b": 1.5, "a": i} for i in range(N)]
  summary, back = _save_load(tmp_path, {"t": rows})
  assert summary["t"] == rows
  assert [list(r) for r in back["t"][:2]] == [["b", "a"], ["a", "b"]]
  assert results_io.canonical(back) == results_io.canonical({"t": rows})
  # one common order with keys missing from some rows is fine: it goes into the arrays
  gaps = [{"b": 1.5, "a": i} if i % 2 else {"b": 1.5} for i in range(N)]
  summary, back = _save_load(tmp_path, {"t": gaps})
  assert summary["t"] == _marker(["b", "a"]) and back["t"] == gaps
  assert [list(r) for r in back["t"][:2]] == [["b"], ["b", "a"]]


def _convert(tmp_path, text):
  path = tmp_path / "r.json"
  path.write_text(text, encoding="utf-8")
  results_io.convert(path)
  return path.read_text(encoding="utf-8")


def test_convert_keeps_the_files_indent_and_its_non_ascii_text(tmp_path):
  rows = [{"step": i, "loss": 0.5 * i} for i in range(N)]
  result = {"name": "é", "train": rows}
  summary = {"name": "é", "train": _marker(["step", "loss"])}
  for indent in (2, 4, 1):
    text = _convert(tmp_path, json.dumps(result, indent=indent, ensure_ascii=False))
    assert text == json.dumps(summary, indent=indent, ensure_ascii=False), indent
  # one line (no indent) stays one line; an escaped file stays escaped
  assert _convert(tmp_path, json.dumps(result)) == json.dumps(summary) == (
      '{"name": "\\u00e9", "train": {"$curves": "r.curves.npz", "table": "t0", "rows": 64, '
      '"columns": ["step", "loss"]}}')
  assert _convert(tmp_path, json.dumps(result, indent=2)) == json.dumps(summary, indent=2)
  assert '"name": "é"' in _convert(tmp_path, json.dumps(result, ensure_ascii=False))


def test_guess_indent_reads_the_second_line():
  assert results_io._guess_indent('{\n  "a": 1\n}') == 2
  assert results_io._guess_indent('{\n    "a": [\n        1\n    ]\n}') == 4
  assert results_io._guess_indent('{"a": 1}') is None
