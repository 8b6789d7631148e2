r"""Other ways of writing the weighted sum over depth, for timing the GPU compiler on them (``bench/compile_time.py``
specs with ``mix=NAME``).

Every variant computes :func:`aila_jax.attention.depth.mix_depth`'s function (``sum_i w_i x_i`` over the slots,
the same values and gradients: ``tests/attention/test_mix_variants.py`` checks them against numpy); they differ
only in the graph XLA sees:

* ``reduce``: ``impl='reduce'`` without the barrier, the library's default until these measurements (the
  slots stacked into one ``[T, B, ...]`` array, a float32 product with the broadcast weights summed over
  ``T``); its backward slices the stack's ``[T, B, ...]`` cotangent into per-slot ones.
* ``barrier_slots``: the slots pass through ``lax.optimization_barrier`` before they are stacked, so XLA can
  fuse no slot's producer (the block's add + ReLU, its BatchNorm) into the stack-and-sum, nor the cotangents'
  consumers into its backward: the library's default since (``mix_depth(barrier=None)``).
* ``barrier_stack``: the stacked array passes through the barrier (the stack is materialised once, and the
  sum reads it).
* ``vjp``: a ``jax.custom_vjp`` whose backward gives each slot its cotangent ``w_i g`` directly (no
  ``[T, B, ...]`` cotangent to slice) and each weight ``sum(g * x_i)``; the forward is ``reduce``'s.
* ``vjp_barrier``: ``vjp`` with the slots behind the barrier.

On the GPU the AILA-1 ResNet-56 step spent 33.9 of its 45.5 s of compilation in XLA's ``priority-fusion``
pass (one H100, ``bench/compile_time.py --passes``); these variants test which part of the graph that pass
stalls on. Measured (one H100, ResNet-56 b128 bf16, one process, two runs,
``bench/results/compile_time_NVIDIA-H100-80GB-HBM3_mixvariants*.json``): AILA-1 compiled in 25.8 / 25.6 s
(``reduce``), 13.3 / 13.5 s (``barrier_slots``), 10.2 / 9.8 s (``vjp_barrier``), 43.6 s (``vjp``) and
53.3 s (``barrier_stack``), at 5.55-5.65, 5.72-5.78, 5.82-5.86, 5.61 and 5.98 ms a step.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from aila_jax.attention import depth as depth_attn

_LIBRARY_MIX = depth_attn.mix_depth  # the library's function, kept for 'reduce' and for restoring


def _reduce(weights: jax.Array, slots: Sequence[jax.Array]) -> jax.Array:
  return _LIBRARY_MIX(weights, tuple(slots), impl="reduce", barrier=False)


def _reduce_barrier_stack(weights: jax.Array, slots: Sequence[jax.Array]) -> jax.Array:
  xs = jax.lax.optimization_barrier(jnp.stack(slots, axis=0))  # (T, B, *F)
  w = jnp.moveaxis(weights, -1, 0)
  return depth_attn._reduce_stacked(w.reshape(w.shape + (1,) * (xs.ndim - w.ndim)), xs)


@jax.custom_vjp
def _mix_vjp(weights, slots):
  return _reduce(weights, slots)


def _mix_vjp_fwd(weights, slots):
  return _reduce(weights, slots), (weights, slots)


def _mix_vjp_bwd(res, g):
  weights, slots = res
  g32 = g.astype(jnp.float32)
  axes = tuple(range(weights.ndim - 1, g.ndim))  # [T]: every axis; [B, T]: all but the batch
  dw = jnp.stack([jnp.sum(g32 * x.astype(jnp.float32), axis=axes) for x in slots], axis=-1)
  dx = tuple((depth_attn._slot_weight(weights, i, g32) * g32).astype(x.dtype) for i, x in enumerate(slots))
  return dw.astype(weights.dtype), dx


_mix_vjp.defvjp(_mix_vjp_fwd, _mix_vjp_bwd)


def _variant(core, slot_barrier: bool):
  """A stand-in for ``mix_depth(weights, buffer, *, impl, barrier)``: ``core(weights, slots)`` on the slots,
  behind the barrier or not (the variant fixes both; the caller's ``impl`` and ``barrier`` are ignored)."""

  def mix(weights, buffer, *, impl=None, barrier=None):
    del impl, barrier
    slots = tuple(buffer) if isinstance(buffer, (tuple, list)) else tuple(depth_attn._unstack(buffer))
    return core(weights, jax.lax.optimization_barrier(slots) if slot_barrier else slots)

  return mix


VARIANTS = {"reduce": _variant(_reduce, False), "barrier_slots": _variant(_reduce, True),
            "barrier_stack": _variant(_reduce_barrier_stack, False), "vjp": _variant(_mix_vjp, False),
            "vjp_barrier": _variant(_mix_vjp, True)}


class using:
  """``with using('vjp'): ...`` traces the mixers with that variant of ``mix_depth`` (restored on exit)."""

  def __init__(self, name: str | None):
    if name is not None and name not in VARIANTS:
      raise ValueError(f"mix={name!r}: expected one of {sorted(VARIANTS)}")
    self.name = name

  def __enter__(self):
    if self.name is not None:
      depth_attn.mix_depth = VARIANTS[self.name]
    return self

  def __exit__(self, *exc):
    depth_attn.mix_depth = _LIBRARY_MIX
