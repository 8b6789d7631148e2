r"""Proof that PyTorch DLA weights load: timm's model and ours with the converted weights agree.

For each variant (default ``dla34 dla60x_c dla102x2``): timm's model built
without pretrained weights (random PyTorch init, then every BatchNorm's
weight, bias, running mean and running variance redrawn at random, so a
swapped or dropped BN tensor cannot hide behind the identity statistics),
evaluated in eval mode in float32 on PyTorch's CPU (the reference) on a fixed
random batch at ``--size``; its state dict goes through
``aila_jax.models.dla.params_from_torch`` and our model runs in eval mode
(float32, ``jax_default_matmul_precision='highest'``, so no TF32 on a GPU) on
the same batch. Reported: ``max |ours - timm| / max |timm|`` over the logits
(the target: <= 1e-4) and the same for every level output. The state dict is
then loaded again in the official file's form (``--official``: the unused
``project`` tensors of levels > 1 trees added, with ``num_batches_tracked``),
which must give identical variables.

Parameter counts (weights + biases + BN scale/bias) of all ten variants are
compared with timm's (``sum(p.numel() for p in model.parameters())``).

  python bench/dla_port_check.py --out bench/results                 # GPU machine (timm installed)
  python bench/dla_port_check.py --size 224      # any CPU machine with torch and timm installed

Prints one JSON object and writes it to ``--out/dla_port_check_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

from bench.results_io import save_result  # noqa: E402  (atomic; long tables into NAME.curves.npz)
from aila_jax.models import dla  # noqa: E402
param_count = lambda params: int(sum(x.size for x in jax.tree_util.tree_leaves(params)))  # no aila_jax.train: grain is not on the GPU machine

ALL = ("dla34", "dla46_c", "dla46x_c", "dla60x_c", "dla60", "dla60x", "dla102", "dla102x", "dla102x2", "dla169")


def randomize_bn(model, seed: int) -> None:
  """Draws every BatchNorm's affine parameters and running statistics at random (in place)."""
  import torch
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(0.5 + torch.rand(n, generator=g))
        m.bias.copy_(0.2 * torch.randn(n, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
        m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def official_extras(state_dict: dict, variant: str, seed: int = 0) -> dict:
  """The official file's extra tensors: a ``project`` (1x1 conv + BN) in every levels > 1 Tree whose
  channels change (built, never used), plus ``num_batches_tracked``."""
  rng = np.random.default_rng(seed)
  spec = dla.VARIANTS[variant]
  extra = {}

  def tree(prefix, levels, cin, cout):
    if levels == 1:
      return
    if cin != cout:
      extra[f"{prefix}.project.0.weight"] = rng.standard_normal((cout, cin, 1, 1)).astype(np.float32)
      for k in ("weight", "bias", "running_mean", "running_var"):
        extra[f"{prefix}.project.1.{k}"] = rng.random(cout).astype(np.float32)
      extra[f"{prefix}.project.1.num_batches_tracked"] = np.array(0)
    tree(f"{prefix}.tree1", levels - 1, cin, cout)
    tree(f"{prefix}.tree2", levels - 1, cout, cout)

  c = spec["channels"]
  for i in range(2, 6):
    tree(f"level{i}", spec["levels"][i], c[i - 1], c[i])
  return {**state_dict, **extra}


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


def compare(variant: str, size: int, batch: int, seed: int) -> dict:
  import timm
  import torch
  torch.manual_seed(seed)
  tm = timm.create_model(variant, pretrained=False).eval()
  randomize_bn(tm, seed)
  x = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
  with torch.no_grad():
    ref = tm(torch.from_numpy(x)).numpy()
    try:  # timm >= 1.0
      ref_levels = tm.forward_intermediates(torch.from_numpy(x), intermediates_only=True)
    except AttributeError:
      ref_levels = []
  sd = {k: v.numpy() for k, v in tm.state_dict().items()}
  t0 = time.perf_counter()
  variables = dla.params_from_torch(sd, variant)
  model = dla.DLA_MODELS[variant](num_classes=ref.shape[1])
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  out, inter = apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  out = np.asarray(out)
  row = {"variant": variant, "size": size, "batch": batch, "logits_rel_err": rel_err(out, ref),
         "levels_rel_err": [rel_err(np.asarray(l).transpose(0, 3, 1, 2), r.numpy())
                            for l, r in zip(inter["levels"], ref_levels)],
         "logits_max_abs": float(np.abs(ref).max()), "seconds_ours": time.perf_counter() - t0}
  official = dla.params_from_torch(official_extras(sd, variant, seed), variant)
  same = jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool((a == b).all()), official, variables))
  row["official_form_loads_identically"] = bool(same)
  row["official_extra_tensors"] = len(official_extras(sd, variant, seed)) - len(sd)
  row["pass"] = row["logits_rel_err"] <= 1e-4 and row["official_form_loads_identically"]
  return row


def counts() -> list[dict]:
  import timm
  rows = []
  for v in ALL:
    tm = timm.create_model(v, pretrained=False)
    theirs = sum(p.numel() for p in tm.parameters())
    shapes = jax.eval_shape(dla.DLA_MODELS[v](num_classes=1000).init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 32, 32, 3)))
    ours = param_count(shapes["params"])
    rows.append({"variant": v, "ours": ours, "timm": theirs, "equal": ours == theirs})
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--variants", nargs="+", default=["dla34", "dla60x_c", "dla102x2"])
  ap.add_argument("--size", type=int, default=224)
  ap.add_argument("--batch", type=int, default=2)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", default="")
  args = ap.parse_args()
  import timm
  import torch
  device = jax.devices()[0]
  res = {"device": getattr(device, "device_kind", device.platform), "jax": jax.__version__,
         "torch": torch.__version__, "timm": timm.__version__, "reference": "timm on PyTorch CPU, float32",
         "rows": [compare(v, args.size, args.batch, args.seed) for v in args.variants],
         "param_counts": counts()}
  res["all_pass"] = all(r["pass"] for r in res["rows"]) and all(r["equal"] for r in res["param_counts"])
  print(json.dumps(res, indent=1))
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    name = res["device"].replace(" ", "-")
    save_result(pathlib.Path(args.out, f"dla_port_check_{name}.json"), res, indent=1)


if __name__ == "__main__":
  main()
