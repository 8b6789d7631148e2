r"""Glimpse paths of a trained RAM / WS-RAM from its saved checkpoint (issue 18 item 4).

For each ``--workdir`` (a folder ``aila_jax.train.train_and_evaluate`` wrote: ``config.json``,
``checkpoints/``, ``metrics.jsonl``) it rebuilds the model and the test split of the run's own
dataset (translated or cluttered MNIST, ...), restores the parameters of the latest (or
``--step``) checkpoint and draws ``--n`` test digits in two rows:

* **mean**: the glimpse path with every location the prior's mean (the deterministic policy the
  test error is measured with). Each glimpse's highest-resolution patch is a solid box coloured
  by time (t = 1 dark ... T bright), the path joins the centres, and the last glimpse also shows
  its coarser patches as dashed boxes: the sensor's squares of side
  :math:`g\,2^k,\ k = 0, \dots, S-1`, top-left pixel :math:`c - \lfloor g 2^k / 2 \rfloor`
  with :math:`c` the centre pixel of :func:`aila_jax.attention.glimpse.locations_to_pixels`
  (what :func:`aila_jax.attention.glimpse.extract_glimpses` reads). Title: the prediction and label.
* **sampled**: ``--samples`` glimpse paths drawn from the prior :math:`a \sim p(a \mid x)`
  (locations clipped to the image as the sensor clips them), one colour each. Title: each path's
  prediction and the prediction averaging their class probabilities (``eval/accuracy_sampled``'s rule).

The figure's heading gives the model, dataset, checkpoint step (and the config's total, so a
partly trained model says so) and the test error the trainer logged at that step (mean locations,
and sampled when the run evaluated it).

  python3 bench/glimpse_paths.py --workdir runs/ram_translated --workdir runs/ram_cluttered60 \
      --data_dir ../shared/data --out docs/figures/glimpse_paths.png

Checkpoints written on another machine load here (they are restored onto this process's
first device); ``--data_dir`` replaces the run's ``config.data_dir``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from aila_jax import models  # noqa: E402
from aila_jax.data import datasets  # noqa: E402
from aila_jax.errors import ConfigError  # noqa: E402
from aila_jax.train import metrics as metrics_lib  # noqa: E402
from aila_jax.train.checkpoint import load_checkpoint  # noqa: E402

GLIMPSE_MODELS = ("ram", "wsram")


def centre_pixels(locations, height: int, width: int) -> np.ndarray:
  r"""numpy twin of :func:`aila_jax.attention.glimpse.locations_to_pixels` (no per-shape compiles):
  :math:`\lfloor (\mathrm{clip}(l, -1, 1) + 1) / 2 \odot (H, W) \rfloor` in float32, ``[..., 2]`` int."""
  loc = np.clip(np.nan_to_num(np.asarray(locations, np.float32), nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
  return np.floor((loc + np.float32(1.0)) * np.float32(0.5) * np.asarray([height, width], np.float32)).astype(int)


def glimpse_boxes(location, height: int, width: int, size: int, num_scales: int) -> list[tuple[int, int, int]]:
  r"""The sensor's patches around one location: ``[(top_row, left_col, side)]`` for scale 0 .. S-1.

  .. math:: s_k = g\,2^k, \qquad (r_k, c_k) = c - \lfloor s_k / 2 \rfloor

  with :math:`c` = :func:`centre_pixels` of the location (pixels outside the image read zero).
  """
  centre = centre_pixels(location, height, width)
  boxes = []
  for k in range(num_scales):
    side = size * 2**k
    boxes.append((int(centre[0]) - side // 2, int(centre[1]) - side // 2, side))
  return boxes


def logged_errors(workdir, step: int) -> dict:
  """The last test evaluation the trainer logged at or before ``step``: its step and errors."""
  evals = [r for r in metrics_lib.read_metrics(workdir) if "eval/accuracy" in r and r["step"] <= step]
  if not evals:
    return {}
  last = evals[-1]
  out = {"step": int(last["step"]), "error": 1.0 - float(last["eval/accuracy"])}
  if "eval/accuracy_sampled" in last:
    out["error_sampled"] = 1.0 - float(last["eval/accuracy_sampled"])
  return out


def load_run(workdir, *, data_dir=None, step=None) -> dict:
  """Config, dataset, model and checkpointed parameters of a RAM / WS-RAM workdir."""
  workdir = pathlib.Path(workdir)
  config_path = workdir / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(f"--workdir {workdir}: no config.json (not a folder written by train_and_evaluate)")
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  if config.get("model_name") not in GLIMPSE_MODELS:
    raise ConfigError(f"config.model_name of {workdir}: expected one of {GLIMPSE_MODELS} (a glimpse model), "
                      f"got {config.get('model_name')!r}")
  if data_dir is not None:
    config.data_dir = str(data_dir)
  dataset = datasets.build_dataset(config)
  model = models.get_model(config.model_name, **dataset.model_kwargs, **config.model)
  if step is not None and not (workdir / "checkpoints" / str(step)).is_dir():
    saved = sorted(int(d.name) for d in (workdir / "checkpoints").glob("*") if d.name.isdigit())
    raise FileNotFoundError(f"--step {step}: no checkpoint at that step in {workdir}; saved steps: {saved}")
  ckpt_step, state, _ = load_checkpoint(workdir, step)
  variables = {"params": state["params"], **(state.get("model_state") or {})}
  return {"workdir": workdir, "config": config, "dataset": dataset, "model": model, "step": int(ckpt_step),
          "variables": variables, "errors": logged_errors(workdir, int(ckpt_step))}


def trajectories(run: dict, indices, *, num_samples: int = 3, seed: int = 0) -> dict:
  """Mean-location and sampled glimpse paths of test records ``indices``, with the predictions.

  Returns numpy arrays: ``images`` (B, H, W) uint8, ``labels`` (B,), ``mean_locations`` (B, T, 2),
  ``mean_pred`` (B,), and with ``num_samples`` = K > 0 ``sampled_locations`` (K, B, T, 2),
  ``sampled_pred`` (K, B) and ``sampled_avg_pred`` (B,) (argmax of the mean class probability).
  """
  test = run["dataset"].eval["test"]
  raw = {"image": np.stack([np.asarray(test[int(i)]["image"]) for i in indices]),
         "label": np.asarray([int(test[int(i)]["label"]) for i in indices], np.int64)}
  batch = run["dataset"].preprocess(raw)
  model = run["model"]

  @jax.jit  # both paths in one compiled function (eager flax runs op by op)
  def paths(variables, images, labels, key):
    logits, inter = model.apply(variables, images, labels, sample="mean")
    out = {"mean_locations": inter["locations"], "mean_pred": logits.argmax(-1)}
    if num_samples > 0:
      s_logits, s_inter = model.apply(variables, images, labels, sample="prior", num_samples=num_samples,
                                      rngs={"glimpse": key})
      probs = jax.nn.softmax(s_logits.astype(jnp.float32), axis=-1)  # (K, B, C)
      out.update(sampled_locations=s_inter["locations"], sampled_pred=probs.argmax(-1),
                 sampled_avg_pred=probs.mean(0).argmax(-1))
    return out

  out = jax.tree_util.tree_map(np.asarray, paths(run["variables"], batch["image"], batch["label"],
                                                 jax.random.PRNGKey(seed)))
  out.update(images=raw["image"][..., 0], labels=raw["label"])
  return out


def _heading(run: dict) -> str:
  c, e = run["config"], run["errors"]
  total = int(c.get("num_train_steps", 0))
  part = f"step {run['step']:,} of {total:,}: partly trained" if run["step"] < total else f"step {run['step']:,}"
  m = c.model
  text = (f"{c.model_name.upper()} on {c.dataset}, {m.num_glimpses} glimpses of {m.num_scales}x{m.glimpse_size}x"
          f"{m.glimpse_size} ({part})")
  if e:
    at = "" if e["step"] == run["step"] else f" (logged at step {e['step']:,})"
    text += f"; test error {e['error']:.2%} with mean locations"
    if "error_sampled" in e:
      text += f", {e['error_sampled']:.2%} averaging {c.task_kwargs.get('eval_samples')} sampled paths"
    text += at
  else:
    text += "; no test evaluation logged"
  return text


def draw(runs: list[dict], paths: list[dict], out, *, dpi: int = 80, note: str = ""):
  """One figure: per run a 'mean' row and (when sampled) a 'sampled' row of the paths' digits."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  rows_per = [2 if "sampled_locations" in p else 1 for p in paths]
  n = max(len(p["labels"]) for p in paths)
  # fixed layout in inches: per run a two-line heading, then its rows of square panels with a title each
  panel, gap, title, heading, margin = 1.7, 0.08, 0.3, 0.45, 0.3
  width = margin + n * (panel + gap)
  lines = (note.split("\n") if note else []) + ["x" * 170]  # the note and the fixed caption (~170 characters)
  caption_h = 0.14 * (1 + sum(len(line) // int(width * 17) + 1 for line in lines))
  height = sum(heading + r * (panel + title) for r in rows_per) + caption_h + 0.1
  fig = plt.figure(figsize=(width, height))
  axes = np.empty((sum(rows_per), n), dtype=object)
  top, row = height - 0.05, 0
  for nrows in rows_per:
    top -= heading
    for r in range(nrows):
      top -= title + panel
      for j in range(n):
        axes[row + r, j] = fig.add_axes(((margin + j * (panel + gap)) / width, top / height, panel / width,
                                         panel / height))
    row += nrows
  row = 0
  for run, p, nrows in zip(runs, paths, rows_per):
    m = run["config"].model
    size, scales, steps = int(m.glimpse_size), int(m.num_scales), int(m.num_glimpses)
    h, w = p["images"].shape[1:3]
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, steps))
    for j in range(n):
      for r in range(nrows):
        ax = axes[row + r, j]
        ax.set_xticks([]), ax.set_yticks([])
        if j >= len(p["labels"]):
          ax.axis("off")
          continue
        ax.imshow(p["images"][j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xlim(-0.5, w - 0.5), ax.set_ylim(h - 0.5, -0.5)
      y = int(p["labels"][j])
      ax = axes[row, j]
      centres = centre_pixels(p["mean_locations"][j], h, w)  # (T, 2) row, col
      ax.plot(centres[:, 1], centres[:, 0], "-", color="white", lw=0.8, alpha=0.8)
      for t in range(steps):
        boxes = glimpse_boxes(p["mean_locations"][j, t], h, w, size, scales)
        shown = boxes if t == steps - 1 else boxes[:1]
        for k, (top, left, side) in enumerate(shown):
          ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), side, side, fill=False, color=colours[t],
                                     lw=1.2 if k == 0 else 0.9, ls="-" if k == 0 else "--"))
        ax.plot(centres[t, 1], centres[t, 0], "o", ms=2.5, color=colours[t])
      pred = int(p["mean_pred"][j])
      ax.set_title(f"mean: pred {pred}, label {y}", fontsize=7.5, color="green" if pred == y else "red")
      if nrows == 2:
        ax = axes[row + 1, j]
        k_colours = plt.cm.autumn(np.linspace(0.0, 0.8, len(p["sampled_locations"])))
        for s, locs in enumerate(p["sampled_locations"][:, j]):
          cs = centre_pixels(locs, h, w)
          ax.plot(cs[:, 1], cs[:, 0], "-o", color=k_colours[s], lw=0.8, ms=2)
          top, left, side = glimpse_boxes(locs[-1], h, w, size, scales)[0]
          ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), side, side, fill=False, color=k_colours[s], lw=0.8))
        preds = ",".join(str(int(v)) for v in p["sampled_pred"][:, j])
        avg = int(p["sampled_avg_pred"][j])
        ax.set_title(f"sampled: {preds} -> {avg}", fontsize=7.5, color="green" if avg == y else "red")
    axes[row, 0].set_ylabel("mean", fontsize=8)
    if nrows == 2:
      axes[row + 1, 0].set_ylabel(f"{len(p['sampled_locations'])} sampled", fontsize=8)
    axes[row, 0].annotate(_heading(run).replace("; test error", ";\ntest error"), (0, 1),
                          xycoords="axes fraction", xytext=(0, 16),
                          textcoords="offset points", fontsize=8.5, ha="left", va="bottom", weight="bold")
    row += nrows
  caption = ("boxes: each glimpse's finest patch (colour = time, dark first); dashed: the last glimpse's coarser "
             "patches; sampled row: paths from the prior, the last glimpse's finest patch")
  caption = "\n".join(textwrap.fill(line, int(width * 17)) for line in (note.split("\n") if note else []) + [caption])
  fig.text(margin / width, 0.05 / height, caption, fontsize=7, ha="left", va="bottom")
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=dpi)
  plt.close(fig)
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", action="append", required=True, help="a RAM / WS-RAM workdir (repeatable)")
  parser.add_argument("--out", required=True, help="PNG to write")
  parser.add_argument("--data_dir", default=None, help="replaces config.data_dir of every run")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
  parser.add_argument("--n", type=int, default=6, help="test digits per run")
  parser.add_argument("--indices", default=None, help="comma-separated test indices (default: 0..n-1)")
  parser.add_argument("--samples", type=int, default=3, help="paths sampled from the prior per digit (0: none)")
  parser.add_argument("--seed", type=int, default=0, help="RNG of the sampled paths")
  parser.add_argument("--dpi", type=int, default=80)
  parser.add_argument("--note", default="", help="an extra line under the figure")
  args = parser.parse_args(argv)
  if args.n < 1 or args.samples < 0:
    parser.error(f"--n must be >= 1 and --samples >= 0, got --n {args.n} --samples {args.samples}")
  indices = ([int(i) for i in args.indices.split(",")] if args.indices else list(range(args.n)))
  runs, paths = [], []
  for workdir in args.workdir:
    run = load_run(workdir, data_dir=args.data_dir, step=args.step)
    size = len(run["dataset"].eval["test"])
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
      parser.error(f"--indices {bad} outside the {size} test records of {workdir}")
    runs.append(run)
    paths.append(trajectories(run, indices, num_samples=args.samples, seed=args.seed))
    print(_heading(run), flush=True)
  out = draw(runs, paths, args.out, dpi=args.dpi, note=args.note)
  print("wrote", out, f"({out.stat().st_size / 1024:.0f} KiB)")
  return {"out": out, "runs": runs, "paths": paths}


if __name__ == "__main__":
  main()
