"""Where a jitted step's device time goes: a summary of a ``jax.profiler`` Perfetto trace.

``summarize(trace_dir, steps)`` reads ``perfetto_trace.json.gz`` (written by
``jax.profiler.trace(dir, create_perfetto_trace=True)``) and, over the
complete events ("X") of the device processes (name matching ``process``,
default ``/device:GPU``), ``summarize_torch(path, steps)`` the same from a
``torch.profiler`` Chrome trace (a PyTorch peer's kernels, to set beside ours):

* ``span_ms``: first kernel start to last kernel end; ``busy_ms``: the union
  of the kernels' intervals (time a kernel was running); ``idle_fraction`` =
  1 - busy / span: the share of the span in which no kernel ran (launch gaps:
  a launch-bound step has a large one);
* per step (divided by ``steps``): ``busy_ms_per_step``, ``span_ms_per_step``,
  ``kernels_per_step``;
* ``categories``: kernel time by kind (convolution / GEMM kernels of cuDNN,
  cuBLAS and CUTLASS; XLA reduction fusions; other XLA fusions; copies and
  memsets; the rest), and the 25 kernels with the most total time.
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import shutil
import tempfile

CATEGORIES = (
    ("conv_gemm", re.compile(r"conv|xmma|cudnn|implicit|gemm|cutlass|sm\d\d_|wgrad|dgrad|fprop|winograd", re.I)),
    # XLA's reduction fusions; Inductor's reduction and persistent-reduction kernels (triton_red_ / triton_per_);
    # eager PyTorch's batch-norm statistics kernels
    ("reduce_fusion", re.compile(r"reduce|reduction|triton_red_|triton_per_|batch_norm_collect|bn_fw|bn_bw", re.I)),
    ("copy_memset", re.compile(r"memcpy|memset|copy", re.I)),
    ("fusion", re.compile(r"fusion|loop_|input_|triton|transpose|concatenate|slice|pad", re.I)),
)


def category(name: str) -> str:
  for label, pattern in CATEGORIES:
    if pattern.search(name):
      return label
  return "other"


def find_trace(trace_dir) -> pathlib.Path:
  paths = sorted(pathlib.Path(trace_dir).glob("**/perfetto_trace.json.gz"))
  if not paths:
    raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir} (jax.profiler.trace(..., "
                            "create_perfetto_trace=True) writes it)")
  return paths[-1]


def summarize(trace_dir, steps: int, process: str = "/device:GPU", top: int = 25) -> dict:
  with gzip.open(find_trace(trace_dir), "rt") as f:
    events = json.load(f)["traceEvents"]
  pids = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
          and str(e.get("args", {}).get("name", "")).startswith(process)}
  kernels = [e for e in events if e.get("ph") == "X" and e.get("pid") in pids and e.get("dur", 0) > 0]
  return summarize_kernels(kernels, steps, process, top)


TORCH_DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


def summarize_torch(trace_path, steps: int, top: int = 25) -> dict:
  """:func:`summarize` for a PyTorch profile: the Chrome trace ``torch.profiler.profile(...).export_chrome_trace``
  writes (plain or ``.gz``), whose device events are the complete events of ``cat`` ``kernel``, ``gpu_memcpy``
  and ``gpu_memset`` (the same summary, ``process`` ``'torch'``)."""
  path = pathlib.Path(trace_path)
  if not path.exists():
    raise FileNotFoundError(f"no PyTorch trace at {path} (torch.profiler's export_chrome_trace writes it)")
  with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as f:
    events = json.load(f)["traceEvents"]
  kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in TORCH_DEVICE_CATEGORIES
             and e.get("dur", 0) > 0]
  return summarize_kernels(kernels, steps, "torch", top)


def profile_torch(run, steps: int, *, cuda: bool, keep=None, top: int = 25) -> dict:
  """``run(steps)`` under ``torch.profiler`` (CPU activity, and CUDA's with ``cuda``), summarised by
  :func:`summarize_torch`; ``keep``: a path where the Chrome trace is also written, gzipped."""
  import torch  # pylint: disable=import-outside-toplevel  (only the PyTorch peers' benchmarks call this)
  activity = torch.profiler.ProfilerActivity
  with tempfile.TemporaryDirectory() as d:
    path = pathlib.Path(d) / "trace.json"
    with torch.profiler.profile(activities=[activity.CPU] + ([activity.CUDA] if cuda else [])) as prof:
      run(steps)
    prof.export_chrome_trace(str(path))
    if keep is not None:
      with open(path, "rb") as src, gzip.open(keep, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return summarize_torch(path, steps, top)


def summarize_kernels(kernels, steps: int, process: str, top: int = 25) -> dict:
  """The summary of the module docstring over ``kernels``: complete trace events with ``name``, ``ts`` and
  ``dur`` (microseconds)."""
  if not kernels:
    return {"process": process, "kernels": 0, "note": "no device events in the trace"}
  intervals = sorted((e["ts"], e["ts"] + e["dur"]) for e in kernels)  # microseconds
  busy, (cur_start, cur_end) = 0.0, intervals[0]
  for start, end in intervals[1:]:
    if start > cur_end:
      busy += cur_end - cur_start
      cur_start, cur_end = start, end
    else:
      cur_end = max(cur_end, end)
  busy += cur_end - cur_start
  span = intervals[-1][1] - intervals[0][0]
  by_name, by_cat = collections.Counter(), collections.Counter()
  for e in kernels:
    by_name[e["name"]] += e["dur"]
    by_cat[category(e["name"])] += e["dur"]
  total = sum(by_cat.values())
  return {"process": process, "steps": steps, "kernels": len(kernels), "kernels_per_step": len(kernels) / steps,
          "span_ms": span / 1e3, "busy_ms": busy / 1e3, "idle_fraction": 1 - busy / span if span else 0.0,
          "span_ms_per_step": span / 1e3 / steps, "busy_ms_per_step": busy / 1e3 / steps,
          "kernel_ms_per_step": total / 1e3 / steps,
          "categories": {k: {"ms_per_step": v / 1e3 / steps, "fraction": v / total} for k, v in by_cat.most_common()},
          "top_kernels": [{"name": n[:160], "ms_per_step": v / 1e3 / steps, "category": category(n)}
                          for n, v in by_name.most_common(top)]}


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+) = (\S+) ([\w\-]+)\(")
_COMPUTATION = re.compile(r"^%([\w.\-]+) \(.*\) -> .*\{\s*$")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def kernel_name(instruction: str) -> str:
  """The GPU kernel name XLA gives an HLO instruction (``input_reduce_fusion.8`` -> ``input_reduce_fusion_8``)."""
  return re.sub(r"[.\-]", "_", instruction)


def hlo_sources(hlo_text: str, kernels, max_ops: int = 12) -> dict[str, dict]:
  """Where the trace's kernels come from in the program: for each kernel name of ``kernels`` that is an
  instruction of the compiled HLO ``hlo_text`` (``jitted.lower(...).compile().as_text()``), its opcode and
  shape, its ``op_name`` (the jaxpr path, with Flax module names) and, for a fusion, the distinct ``op_name``\\ s
  of the ops fused into it (at most ``max_ops``). Kernels that are not HLO instructions (cuDNN / cuBLAS
  kernels, named by the library) are left out."""
  instructions, bodies, current = {}, {}, None
  for line in hlo_text.splitlines():
    header = _COMPUTATION.match(line)
    if header:
      current = bodies.setdefault(header.group(1), [])
      continue
    if line.startswith("}"):
      current = None
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    if current is not None:
      current.append(line)
    calls = _CALLS.search(line)
    op = _OP_NAME.search(line)
    instructions.setdefault(kernel_name(m.group(1)), {
        "instruction": m.group(1), "opcode": m.group(3), "shape": m.group(2),
        "op_name": op.group(1) if op else None, "calls": calls.group(1) if calls else None})
  out = {}
  for name in kernels:
    info = instructions.get(name)
    if info is None:
      continue
    row = {k: v for k, v in info.items() if k != "calls" and v is not None}
    if info["calls"] in bodies:
      ops = []
      for line in bodies[info["calls"]]:
        op = _OP_NAME.search(line)
        if op and op.group(1) not in ops:
          ops.append(op.group(1))
      row["fused_op_names"] = ops[:max_ops]
    out[name] = row
  return out
