r"""Several Multi30k En->De recipes trained side by side on one GPU, each scored with BLEU.

Runs ``bench/multi30k_bleu.py`` once per variant, all at the same time (small
models leave most of an H100 idle; each process gets
``XLA_PYTHON_CLIENT_MEM_FRACTION`` = 0.9 / number of variants and its own
vocabulary cache), then merges their JSON into ``multi30k_sweep_<device>.json``
in ``--out``: per variant the overrides, the steps reached in the shared
``--train_seconds``, BLEU (cased and case-insensitive) of the last checkpoint
with greedy and beam-4 search and of the average of the last checkpoints with
beam 4, and beam-4 BLEU of the last checkpoint on val (choose recipes by that
one). The variants share the GPU, so a variant's steps/s here is below what
it gets alone: compare BLEU at equal wall-clock, not throughput.

  AILA_DATA_DIR=../shared/data python bench/multi30k_sweep.py --out=bench/results \
      --train_seconds=360 --variants=tiny,small
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results_io import load_result, save_result  # noqa: E402  (JSON summary + .curves.npz)

_TINY = ["model.preset=transformer_small", "model.d_model=128", "model.num_heads=4", "model.d_ff=256",
         "model.num_encoder_layers=4", "model.num_decoder_layers=4", "model.dropout_rate=0.3",
         "optimizer.learning_rate=0.005", "schedule.warmup_steps=2000"]
_SMALL = ["model.preset=transformer_small", "model.d_model=256", "model.num_heads=4", "model.d_ff=1024",
          "model.num_encoder_layers=3", "model.num_decoder_layers=3", "model.dropout_rate=0.3"]
# name -> config overrides of configs/multi30k_transformer.py; each names every size and switch it
# relies on, so that a variant does not change when the config's defaults do.
VARIANTS: dict[str, list[str]] = {
    # Transformer-tiny of Wu et al. 2021 (arXiv 2105.14462), the strong text-only Multi30k
    # baseline: 4 + 4 layers, d_model 128, 4 heads, FFN 256, dropout 0.3, lr 5e-3, warm-up 2000;
    # post-LN as in the paper.
    "tiny": _TINY + ["model.pre_ln=False"],
    # The same with pre-LN sub-layers (the config's default recipe).
    "tiny_preln": _TINY + ["model.pre_ln=True"],
    # d_model 256, 3 + 3 layers, dropout 0.3, post-LN.
    "small": _SMALL + ["model.pre_ln=False", "optimizer.learning_rate=0.001", "schedule.warmup_steps=1000"],
    # d_model 256, FFN 512, 4 + 4 layers, dropout 0.3, attention and ReLU dropout 0.1, post-LN.
    "small4": _SMALL + ["model.d_ff=512", "model.num_encoder_layers=4", "model.num_decoder_layers=4",
                        "model.attention_dropout_rate=0.1", "model.relu_dropout_rate=0.1",
                        "model.pre_ln=False", "optimizer.learning_rate=0.002", "schedule.warmup_steps=2000"],
    # The paper's base sizes with dropout 0.3, post-LN, lr 7e-4.
    "base": ["model.preset=transformer_base"] + [f"model.{k}=None" for k in (
        "d_model", "num_heads", "d_ff", "num_encoder_layers", "num_decoder_layers")] + [
            "model.dropout_rate=0.3", "model.pre_ln=False", "optimizer.learning_rate=0.0007",
            "schedule.warmup_steps=1000"],
}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--out", default="bench/results")
  ap.add_argument("--workdir", default="/tmp/multi30k_sweep")
  ap.add_argument("--variants", default="tiny,tiny_preln,small,small4",
                  help=f"comma-separated, from {sorted(VARIANTS)}")
  ap.add_argument("--train_seconds", type=float, default=360.0)
  ap.add_argument("--num_train_steps", type=int, default=100000,
                  help="config.num_train_steps (warmup_rsqrt does not depend on it; the timer stops training)")
  ap.add_argument("--checkpoint_every", type=int, default=1000)
  ap.add_argument("--greedy_every", type=int, default=4000)
  ap.add_argument("--average_last", type=int, default=5)
  ap.add_argument("--limit", type=int, default=0)
  ap.add_argument("--set", default="", help="extra overrides for every variant, comma-separated")
  args = ap.parse_args()
  names = [v for v in args.variants.split(",") if v]
  unknown = [v for v in names if v not in VARIANTS]
  if unknown:
    sys.exit(f"--variants: unknown {unknown}; expected names from {sorted(VARIANTS)}")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  work = pathlib.Path(args.workdir)
  work.mkdir(parents=True, exist_ok=True)
  procs = {}
  t0 = time.perf_counter()
  for name in names:
    overrides = VARIANTS[name] + [s for s in args.set.split(",") if s]
    env = {**os.environ, "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / len(names):.3f}"}
    cmd = [sys.executable, str(REPO / "bench" / "multi30k_bleu.py"), f"--out={work / name / 'out'}",
           f"--workdir={work / name / 'run'}", f"--cache_dir={work / name / 'cache'}",
           f"--train_seconds={args.train_seconds}", f"--num_train_steps={args.num_train_steps}",
           f"--checkpoint_every={args.checkpoint_every}", f"--eval_every={args.checkpoint_every * 4}",
           f"--greedy_every={args.greedy_every}", f"--average_last={args.average_last}",
           f"--limit={args.limit}"] + ([f"--set={','.join(overrides)}"] if overrides else [])
    log = open(work / f"{name}.log", "w")
    procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env), log, overrides)
    print(f"started {name}: {' '.join(overrides) or '(base recipe)'}", flush=True)
  report = {"script": "bench/multi30k_sweep.py", "argv": sys.argv[1:], "variants": {}}
  for name, (proc, log, overrides) in procs.items():
    rc = proc.wait()
    log.close()
    result_file = work / name / "out" / "multi30k_bleu.json"
    row = {"overrides": overrides, "returncode": rc}
    if result_file.exists():
      res = load_result(result_file)
      report.setdefault("device", res.get("device"))
      last = res["checkpoints"][0] if res["checkpoints"] else {}
      row.update({
          "final_step": res["final_step"], "train_wall_seconds": res["train_wall_seconds"],
          "greedy_bleu": last.get("greedy_bleu"), "greedy_bleu_lowercase": last.get("greedy_bleu_lowercase"),
          "beam4_bleu": last.get("beam4_bleu"), "beam4_bleu_lowercase": last.get("beam4_bleu_lowercase"),
          "val_beam4_bleu": last.get("val_beam4_bleu"),
          "averaged": res.get("averaged"),
          "greedy_curve": [(c["step"], c.get("train_seconds_at_save"), c.get("greedy_bleu"))
                           for c in reversed(res["checkpoints"])],
          "eval_rows": res.get("eval_rows"), "examples": last.get("examples"),
          "config": res.get("config"),
      })
    else:
      row["log_tail"] = (work / f"{name}.log").read_text()[-3000:]
    report["variants"][name] = row
    print(name, json.dumps({k: v for k, v in row.items()
                            if k not in ("eval_rows", "examples", "config", "greedy_curve", "log_tail")}),
          flush=True)
  report["wall_seconds"] = time.perf_counter() - t0
  device = (report.get("device") or "unknown").replace(" ", "-")
  path = out / f"multi30k_sweep_{device}.json"
  save_result(path, report, indent=2, ensure_ascii=False)
  print(f"wrote {path}", flush=True)


if __name__ == "__main__":
  main()
