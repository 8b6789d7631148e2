r"""Attention over depth: how layer :math:`t` reads the outputs of layers :math:`< t`.

Pure functions on arrays (no parameters) for the depth mixers of
:mod:`aila_jax.nn.depth`: AILA architectures 1 and 2 (Claster et al. 2025,
arXiv 2503.22742) and MRLA-base / MRLA-light (Fang et al., "Cross-Layer
Retrospective Retrieving via Layer Attention", ICLR 2023).

**Depth buffers: per-slot sequences or one padded array.** Earlier layers'
representations are numbered by *slot* (slot ``0`` = the stage's input
embedding :math:`x_0`, slot ``i`` = layer :math:`i`'s output). Layer :math:`t`
may read slots ``0 .. t-1`` (or ``1 .. t`` for MRLA, whose cache also holds the
current block). The functions here take the readable layers in either form:

* a **sequence** of per-slot arrays ``[x_i for i in V_t]``, each ``[B, *feature]``:
  what the mixers of :mod:`aila_jax.nn.depth` use. Their backbones unroll
  each stage in Python, so :math:`t` is static when tracing and the buffer is a
  tuple that grows by one slot per layer (per-stage unrolling). The weighted
  sum :math:`\sum_i w_i x_i` of a layer stacks its :math:`|V_t|` readable
  slots into one ``[|V_t|, B, ...]`` array and sums it against the weights as a
  float32 broadcast product reduced over the stacked axis (``impl='reduce'``,
  the default: no ``dot``; on a GPU each distinct ``einsum`` shape, one per
  layer, is a matrix product the compiler autotunes, a reduction is not);
  ``impl='stacked'`` contracts the stack with one ``einsum`` and
  ``impl='slots'`` writes a Python sum of per-slot products. The same
  function, tested equal with gradients. Measured with
  ``bench/compile_time.py --impls reduce,stacked`` on one H100 (ResNet-56 b128
  bf16, one process, ``compile_time_NVIDIA-H100-80GB-HBM3_reduce.json``): the
  AILA-1 step's first step took 48.2 s with ``'reduce'`` against 106.7 s
  with ``'stacked'`` (compiled after it), at 12.8 against 13.7 ms a step; on
  the CPU (ResNet-56 b8, ``compile_time_cpu_resnet56_impls.json``) 11.4
  against 20.7 s, and less for AILA-2 and MRLA-base too. No layer writes
  into, or differentiates through, a padded ``[B, T, ...]`` array.

  Why stacked: with per-slot sums, every slot of a stage feeds a scalar
  product in every later layer, forward and backward, and XLA's GPU fusion
  pass (``priority-fusion``) spent minutes on that graph: on an H200 the
  dense-mixer ResNet-20 step compiled in 29.5 s, 26.6 s of it in
  ``priority-fusion`` (0.45 s for the residual network), and a dense
  ResNet-56 took up to 195 s. Stacked, the same ResNet-20 step compiled in
  9.6 s (``bench/results/compile_ab_NVIDIA-H200.json``). Since then the
  slots also pass through ``lax.optimization_barrier`` before each sum
  (:data:`SLOT_BARRIER`): with ``'reduce'`` alone the AILA-1 ResNet-56 step
  still spent 19.7 of its 25.7 s of compilation in ``priority-fusion`` (one
  H100); behind the barrier 7.6 of 13.4 s, at 2-4% more step time
  (``compile_time_NVIDIA-H100-80GB-HBM3_mixvariants*.json``).
* one **padded array** ``[B, T, *feature]`` (``T`` = the largest number of
  layers a stage holds) with a boolean mask: :func:`depth_mask` turns
  ``(t, T)`` into the readable slots, so every layer's computation has the same
  shapes under ``jax.jit`` and ``t`` may be a traced integer (e.g. inside
  ``lax.scan``). Masked slots get exactly zero weight.

Both forms compute the same function (the tests check it). Weights over depth
are returned over the slots given; :func:`pad_depth` pads them back to all
``T`` slots (the mixers sow and plot them that way).

**AILA-1** (linear mixing). Layer :math:`t` holds one learned logit
:math:`w_{t,i}` per slot and mixes

.. math::

   m_t = \sum_{i \in V_t} a_{t,i}\, x_i, \qquad
   a_{t,\cdot} = \mathrm{normalize}(w_{t,\cdot}; V_t)

with :func:`normalize_depth_weights` (``softmax``: positive weights summing to
one; ``sum``: :math:`w_i / \sum_j w_j` over the valid slots; ``l1``:
:math:`|w_i| / \sum_j |w_j|`; ``none``: the raw weights).

**AILA-2** (query/key attention over layers, multi-head). With a query
:math:`q_t` from the current block and keys :math:`k_i` from the earlier
layers,

.. math::

   \alpha_{t,i}^{(n)} = \mathrm{softmax}_{i \in V_t}\!\Big(
     \frac{q_t^{(n)} \cdot k_i^{(n)}}{\sqrt{d}}\Big), \qquad
   m_t^{(n)} = \sum_i \alpha_{t,i}^{(n)}\, v_i^{(n)}

for each head :math:`n` (a slice of the channels). ``per_token`` attention
computes one distribution per position (token or pixel), the function
:func:`aila_jax.attention.dot_product_attention` computes with the layers as
the key axis (:func:`per_token_depth_attention`); ``pooled`` attention
computes one distribution per example from
globally averaged features (:func:`pooled_depth_attention`) and applies it to
every position.

**MRLA-base** (Fang et al. 2023, eq. 6) is pooled multi-head depth attention
over the per-stage cache of keys and values, the current block included.
**MRLA-light** (eq. 8) is its recurrent approximation, :func:`mrla_light_step`:

.. math::

   o_t = \lambda_t \odot o_{t-1} + \sigma\!\Big(\frac{q_t \cdot k_t}{\sqrt d}\Big)\, v_t .

References:
  Claster, K M, Gundechia, "AILA: Attention-based Inter-Layer Aggregation"
  (arXiv 2503.22742, 2025). Fang, Wang, Ren, Zhang, Chen, "Cross-Layer
  Retrospective Retrieving via Layer Attention", ICLR 2023,
  https://arxiv.org/abs/2302.03985 (official code: github.com/joyfang1106/MRLA).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Sequence

import jax
import jax.numpy as jnp


__all__ = [
    "NORMALIZATIONS",
    "depth_mask",
    "readable_slots",
    "pad_depth",
    "normalize_depth_weights",
    "mix_depth",
    "per_token_depth_attention",
    "pooled_depth_attention",
    "mrla_light_step",
    "mrla_light_unrolled_weights",
    "eca_kernel_size",
]

NORMALIZATIONS = ("softmax", "sum", "l1", "none")


def _check_index(fn: str, index: int, depth: int, include_current: bool) -> None:
  if not 1 <= index <= depth - int(include_current):
    raise ValueError(f"{fn}: layer index {index} outside [1, {depth - int(include_current)}] "
                     f"for a depth buffer of {depth} slots")


def _masked_softmax(logits: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
  """Softmax over ``axis`` restricted to ``mask`` (broadcastable to ``logits``); exactly 0 elsewhere."""
  weights = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=axis)
  return jnp.where(mask, weights, jnp.zeros((), weights.dtype))


def depth_mask(index, depth: int, *, include_input: bool = True, include_current: bool = False) -> jax.Array:
  r"""Boolean ``[depth]`` mask of the slots layer ``index`` may read.

  .. math::

     V_t = \{ i : i_0 \le i < t + [\text{include\_current}] \},
     \qquad i_0 = 0 \text{ if include\_input else } 1

  Args:
    index: the layer index :math:`t \ge 1` (int or traced int scalar).
    depth: the buffer's static number of slots ``T``.
    include_input: whether slot 0 (the input embedding) is readable.
    include_current: whether slot ``t`` (the current block, MRLA's cache) is readable.

  >>> depth_mask(2, 5).tolist()
  [True, True, False, False, False]
  >>> depth_mask(2, 5, include_input=False, include_current=True).tolist()
  [False, True, True, False, False]
  """
  if isinstance(index, int):
    _check_index("depth_mask", index, depth, include_current)
  slots = jnp.arange(depth)
  hi = index + (1 if include_current else 0)
  lo = 0 if include_input else 1
  return (slots >= lo) & (slots < hi)


def readable_slots(index: int, depth: int, *, include_input: bool = True,
                   include_current: bool = False) -> slice:
  r"""The slots :func:`depth_mask` marks readable, as a ``slice`` (for a static layer index).

  Backbones that unroll their layers in Python know :math:`t` when tracing:
  the mixers hold their buffer as a tuple of per-slot arrays and read
  ``buffer[readable_slots(t, T)]`` (a slice of the tuple) instead of masking
  a whole padded buffer, so layer :math:`t` touches :math:`|V_t|` slots
  rather than :math:`T` (the same function: masked slots have zero weight).

  >>> readable_slots(2, 5)
  slice(0, 2, None)
  >>> readable_slots(2, 5, include_input=False, include_current=True)
  slice(1, 3, None)
  """
  _check_index("readable_slots", index, depth, include_current)
  return slice(0 if include_input else 1, index + (1 if include_current else 0))


def pad_depth(weights: jax.Array, slots: slice, depth: int) -> jax.Array:
  """Weights over the slots ``slots`` (last axis) zero-padded back to all ``depth`` slots.

  >>> pad_depth(jnp.array([0.5, 0.5]), slice(1, 3), 4).tolist()
  [0.0, 0.5, 0.5, 0.0]
  """
  pad = [(0, 0)] * (weights.ndim - 1) + [(slots.start, depth - slots.stop)]
  return jnp.pad(weights, pad)


def normalize_depth_weights(logits: jax.Array, mask: jax.Array, normalization: str = "softmax",
                            eps: float = 1e-6) -> jax.Array:
  r"""AILA-1 weights from learned logits ``[..., T]`` over the valid slots ``mask`` ``[T]``.

  .. math::

     \mathrm{softmax}: a_i = \frac{e^{w_i}}{\sum_{j \in V} e^{w_j}}, \quad
     \mathrm{sum}: a_i = \frac{w_i}{\sum_{j\in V} w_j}, \quad
     \mathrm{l1}: a_i = \frac{|w_i|}{\epsilon + \sum_{j \in V} |w_j|}, \quad
     \mathrm{none}: a_i = w_i ,

  and :math:`a_i = 0` for :math:`i \notin V`. ``sum`` can divide by a
  sum near zero; it is the reading "weights normalised to sum to one" with no
  sign constraint and is kept as an option, ``softmax`` is the default.

  >>> w = normalize_depth_weights(jnp.zeros(4), depth_mask(3, 4))
  >>> [round(float(a), 4) for a in w]
  [0.3333, 0.3333, 0.3333, 0.0]
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization: expected one of {NORMALIZATIONS}, got {normalization!r}")
  logits = jnp.asarray(logits)
  if mask.shape != logits.shape[-1:]:
    raise ValueError(f"normalize_depth_weights: mask shape {mask.shape} does not match the depth "
                     f"axis of logits {logits.shape} (expected ({logits.shape[-1]},))")
  if normalization == "softmax":
    return _masked_softmax(logits, mask, axis=-1)
  w = jnp.where(mask, logits, jnp.zeros((), logits.dtype))
  if normalization == "sum":
    return w / jnp.sum(w, axis=-1, keepdims=True)
  if normalization == "l1":
    w = jnp.abs(w)
    return w / (eps + jnp.sum(w, axis=-1, keepdims=True))
  return w


def _is_sequence(x) -> bool:
  return isinstance(x, (tuple, list))


def _unstack(x: jax.Array) -> list[jax.Array]:
  """A stacked ``[B, T, ...]`` array as its ``T`` slots ``[B, ...]`` (one code path for both forms)."""
  return [x[:, i] for i in range(x.shape[1])]


SUM_IMPLS = ("stacked", "slots", "reduce")
DEFAULT_SUM_IMPL = "reduce"  # module default of the weighted sums' ``impl`` (benchmarks switch it)
SLOT_BARRIER = True  # module default of mix_depth's ``barrier`` (the slots behind lax.optimization_barrier)


def _impl(impl: str | None) -> str:
  impl = DEFAULT_SUM_IMPL if impl is None else impl
  if impl not in SUM_IMPLS:
    raise ValueError(f"impl: expected one of {SUM_IMPLS} (or None: DEFAULT_SUM_IMPL), got {impl!r}")
  return impl


def _sum_slots(terms) -> jax.Array:
  """``t_0 + t_1 + ...``: a Python sum over the slots (no zero start), which XLA fuses into one loop."""
  return functools.reduce(operator.add, terms)


def _reduce_stacked(weights: jax.Array, xs: jax.Array) -> jax.Array:
  """``sum_t weights[t] * xs[t]`` as a broadcast product and a sum over the leading axis, accumulated in
  float32 (``impl='reduce'``): an elementwise fusion and a reduction, never a ``dot``. Products and sum are
  float32, so float32 weights are not rounded to bfloat16 slots' precision first.

  ``weights`` has ``xs``'s rank (size-1 axes where it broadcasts); the result has ``xs``'s dtype.
  """
  return jnp.sum(weights.astype(jnp.float32) * xs.astype(jnp.float32), axis=0).astype(xs.dtype)


def _slot_weight(weights: jax.Array, i: int, like: jax.Array) -> jax.Array:
  """``weights[..., i]`` cast to ``like.dtype``, with trailing axes to broadcast against ``like``."""
  w = weights[..., i].astype(like.dtype)
  return w.reshape(w.shape + (1,) * (like.ndim - w.ndim))


def mix_depth(weights: jax.Array, buffer: jax.Array | Sequence[jax.Array], *, impl: str | None = None,
              barrier: bool | None = None) -> jax.Array:
  r"""``sum_i weights[..., i] * x_i``: the weighted sum of the buffered layers.

  .. math:: m = \sum_{i=0}^{T-1} w_i\, x_i

  Args:
    weights: ``[T]`` (one mix for the batch) or ``[B, T]`` (one per example).
    buffer: a sequence of ``T`` arrays ``[B, *feature]`` (what the mixers use)
      or one stacked array ``[B, T, *feature]``.
    impl: ``'reduce'`` (default, :data:`DEFAULT_SUM_IMPL`): the slots stacked
      into one ``[T, B, *feature]`` array times the broadcast weights, summed
      over ``T`` in float32 (no ``dot``: nothing for the GPU compiler to
      autotune per shape); ``'stacked'``: the same stack and one ``einsum``
      over ``T``; ``'slots'``: a Python sum of per-slot products, fused by XLA
      into one loop. Same function; ``'reduce'`` compiled fastest on a GPU
      and ``'slots'`` slowest (see the module docstring).
    barrier: pass a sequence buffer's slots through ``jax.lax.optimization_barrier``
      before they are summed (``None``: :data:`SLOT_BARRIER`, True). Same values
      and gradients; XLA then fuses no slot's producer into the sum (nor, in the
      backward pass, the slots' cotangents into their consumers). On the GPU
      this halved the compile of the AILA-1 and dense ResNet-56 steps (AILA-1
      25.7 -> 13.4 s, ``priority-fusion`` 19.7 -> 7.6 s; dense 22.6 -> 11.8 s)
      at 2-4% more step time (one H100,
      ``bench/results/compile_time_NVIDIA-H100-80GB-HBM3_mixvariants*.json``).

  Returns:
    ``[B, *feature]``.

  >>> mix_depth(jnp.array([0.25, 0.75]), jnp.ones((2, 2, 3))).tolist()
  [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
  >>> mix_depth(jnp.array([0.25, 0.75]), (jnp.zeros((2, 3)), jnp.ones((2, 3)))).tolist()
  [[0.75, 0.75, 0.75], [0.75, 0.75, 0.75]]
  """
  stacked_input = not _is_sequence(buffer)
  if stacked_input:
    if weights.shape[-1] != buffer.shape[1]:
      raise ValueError(f"mix_depth: weights {weights.shape} and buffer {buffer.shape} disagree on the "
                       "depth axis (weights[..., T] vs buffer[B, T, ...])")
    buffer = _unstack(buffer)
  n = len(buffer)
  if not n or weights.shape[-1] != n or weights.ndim > 2 or any(x.shape != buffer[0].shape for x in buffer) \
      or (weights.ndim == 2 and weights.shape[0] != buffer[0].shape[0]):
    raise ValueError(f"mix_depth: weights {weights.shape} and a buffer of {n} slots "
                     f"{[tuple(x.shape) for x in buffer]} disagree (expected weights [T] or [B, T] and T "
                     "slots [B, *feature] of one shape)")
  impl = _impl(impl)
  if (SLOT_BARRIER if barrier is None else barrier) and not stacked_input:
    buffer = jax.lax.optimization_barrier(tuple(buffer))
  if impl == "stacked":
    xs = jnp.stack(buffer, axis=0)  # (T, B, *F)
    w = weights.astype(xs.dtype)
    return jnp.einsum("t,t...->...", w, xs) if w.ndim == 1 else jnp.einsum("bt,tb...->b...", w, xs)
  if impl == "reduce":
    xs = jnp.stack(buffer, axis=0)  # (T, B, *F)
    w = jnp.moveaxis(weights, -1, 0)  # (T,) or (T, B)
    return _reduce_stacked(w.reshape(w.shape + (1,) * (xs.ndim - w.ndim)), xs)
  return _sum_slots(_slot_weight(weights, i, x) * x for i, x in enumerate(buffer))


def _split_heads(x: jax.Array, num_heads: int, name: str) -> jax.Array:
  if x.shape[-1] % num_heads:
    raise ValueError(f"{name}: width {x.shape[-1]} is not divisible by num_heads={num_heads}")
  return x.reshape(x.shape[:-1] + (num_heads, x.shape[-1] // num_heads))


def _split_queries(fn: str, query: jax.Array, num_heads: int, key_kernel, projection: str = "dot") -> jax.Array:
  """float32 queries per head: ``[..., N, d]``, or ``[..., N, D]`` with a ``[D, D]`` ``key_kernel`` folded
  in (:func:`fold_key_projection`)."""
  if key_kernel is None:
    return _split_heads(query, num_heads, "query").astype(jnp.float32)
  width = query.shape[-1]
  if jnp.ndim(key_kernel) != 2 or tuple(jnp.shape(key_kernel)) != (width, width):
    raise ValueError(f"{fn}: key_kernel: expected the [D, D] = ({width}, {width}) key projection of the query's "
                     f"width, got shape {tuple(jnp.shape(key_kernel))}")
  return fold_key_projection(query, key_kernel, num_heads, projection=projection).astype(jnp.float32)


def _check_mask(fn: str, mask, t: int) -> jax.Array:
  if mask is None:
    return jnp.ones((t,), bool)
  mask = jnp.asarray(mask)
  if mask.shape != (t,):
    raise ValueError(f"{fn}: mask {mask.shape} does not match the {t} layers given (expected ({t},))")
  return mask


def _slot_logits(q: jax.Array, keys: jax.Array | Sequence[jax.Array], num_heads: int, scale: float,
                 folded: bool = False) -> jax.Array:
  """``[..., N, T]`` float32 logits ``scale * q . k_i`` per head, for split queries ``q`` ``[..., N, d]`` and
  keys as ``T`` arrays ``[..., D]`` (one product per slot) or one array ``[T, ..., D]`` (one for all).

  ``folded``: ``q`` is ``[..., N, C]``, the key projection folded into each head's query
  (:func:`fold_key_projection`), and the keys ``[..., C]`` are the projection's inputs, shared by the heads."""
  def logits(q, k):  # k (..., D) -> (..., N)
    k = k[..., None, :] if folded else _split_heads(k, num_heads, "keys")
    return jnp.sum(q * k.astype(jnp.float32), axis=-1)
  if not _is_sequence(keys):
    return jnp.moveaxis(logits(q[None], keys), 0, -1) * scale  # keys (T, ..., D)
  return jnp.stack([logits(q, k) for k in keys], axis=-1) * scale


PROJECTION_IMPLS = ("dot", "reduce")


def _check_projection(projection: str) -> None:
  if projection not in PROJECTION_IMPLS:
    raise ValueError(f"projection: expected one of {PROJECTION_IMPLS}, got {projection!r}")


def project(x: jax.Array, kernel: jax.Array, *, projection: str = "dot") -> jax.Array:
  r"""``x @ kernel`` (``[..., C] x [C, F] -> [..., F]``, a bias-free ``Dense``) in ``x``'s dtype.

  ``projection='dot'``: one matrix product (``nn.Dense``'s computation). ``'reduce'``: the same sum
  :math:`\sum_c x_c W_{cf}` written as a float32 broadcast product reduced over :math:`c` (its gradients
  likewise), so the compiled step holds no ``dot``: on a GPU every distinct matrix-product shape is a
  kernel XLA generates and autotunes at compile time, a reduction is not. Same values to rounding (the
  products of bfloat16 inputs are exact in float32, as in a product that accumulates in float32).
  """
  _check_projection(projection)
  kernel = kernel.astype(x.dtype)
  if projection == "dot":
    return jnp.matmul(x, kernel, preferred_element_type=jnp.float32).astype(x.dtype)
  return jnp.sum(x[..., :, None].astype(jnp.float32) * kernel.astype(jnp.float32), axis=-2).astype(x.dtype)


def fold_key_projection(query: jax.Array, key_kernel: jax.Array, num_heads: int, *,
                        projection: str = "dot") -> jax.Array:
  r"""Each head's query carried back through the key projection: ``[..., D]`` -> ``[..., N, C]``.

  .. math:: \tilde q^{(n)}_c = \sum_{j \in \text{head } n} W_{c j}\, q_j,
     \qquad q^{(n)} \cdot (W^\top x)^{(n)} = \tilde q^{(n)} \cdot x ,

  so the logits of every slot :math:`x_i` need one product per layer (this one, ``C x D`` per position)
  instead of one key projection per slot. ``key_kernel`` is ``[C, D]`` (a ``Dense`` kernel: keys
  ``x @ key_kernel``); the product runs in ``query``'s dtype, accumulates in float32 and is returned in
  ``query``'s dtype (as the keys it stands for would be); the logits are then summed in float32.
  ``projection='reduce'``: the same sum as a float32 broadcast product and a reduction, no ``dot``
  (:func:`project`).
  """
  c, width = key_kernel.shape
  if query.shape[-1] != width or width % num_heads:
    raise ValueError(f"fold_key_projection: expected query [..., {width}] (the key kernel [C, D] = "
                     f"{tuple(key_kernel.shape)}) and num_heads dividing D; got query {query.shape}, "
                     f"num_heads={num_heads}")
  q = _split_heads(query, num_heads, "query")  # (..., N, d)
  kernel = key_kernel.astype(query.dtype).reshape(c, num_heads, width // num_heads)
  _check_projection(projection)
  if projection == "reduce":  # (..., N, 1, d) * (N, C, d), summed over d
    return jnp.sum(q[..., None, :].astype(jnp.float32) * jnp.swapaxes(kernel, 0, 1).astype(jnp.float32),
                   axis=-1).astype(query.dtype)
  return jnp.einsum("...nd,cnd->...nc", q, kernel, preferred_element_type=jnp.float32).astype(query.dtype)


def per_token_depth_attention(query: jax.Array, keys: jax.Array | Sequence[jax.Array],
                              values: jax.Array | Sequence[jax.Array], mask: jax.Array | None = None, *,
                              num_heads: int, impl: str | None = None, key_kernel: jax.Array | None = None,
                              projection: str = "dot") -> tuple[jax.Array, jax.Array]:
  r"""Multi-head attention over layers, one distribution per position.

  Each position :math:`p` (token or pixel) of the current layer queries the
  same position of every readable earlier layer:

  .. math::

     \alpha_{p,i}^{(n)} = \mathrm{softmax}_{i \in V}\big(q_p^{(n)} \cdot k_{i,p}^{(n)} / \sqrt{d}\big),
     \qquad m_p^{(n)} = \sum_i \alpha_{p,i}^{(n)}\, v_{i,p}^{(n)} .

  This is :func:`aila_jax.attention.dot_product_attention` with batch
  ``B * P``, one query and the ``T`` layers as keys (the tests check the two
  agree), written as broadcast products and sums over the head and depth
  axes: one query against a handful of keys per position is a reduction, not
  a matrix product, and needs no transpose into a ``[B * P, T, ...]`` batch.
  With sequences of per-slot keys and values, the logits are computed per
  slot, stacked into the small ``[B, *P, N, T]`` array for the softmax, and
  the output is the Python sum :math:`\sum_i \alpha_i v_i` over the slots.

  Args:
    query: ``[B, *positions, D]``.
    keys: ``T`` arrays ``[B, *positions, D]``, or one ``[B, T, *positions, D]``.
    values: like ``keys``.
    mask: boolean ``[T]``, the readable slots (:func:`depth_mask`); ``None``: all.
    num_heads: heads; must divide ``D``.
    key_kernel: ``None``, or a ``[D, D]`` key projection ``W`` not yet applied: the keys are then
      ``keys_i @ W``, computed as :func:`fold_key_projection` of the query against ``keys_i`` (same
      logits, one product per call instead of one per slot).
    projection: how ``key_kernel`` is folded into the query: ``'dot'`` or ``'reduce'`` (no ``dot``;
      :func:`project`).

  Returns:
    ``(mixed [B, *positions, D], weights [B, *positions, heads, T])`` (weights float32).
  """
  fn = "per_token_depth_attention"
  if not _is_sequence(keys):
    if _is_sequence(values) or keys.shape != values.shape or keys.shape[:1] + keys.shape[2:] != query.shape:
      raise ValueError(f"{fn}: expected query [B, *P, D] and keys/values [B, T, *P, D]; "
                       f"got query {query.shape}, keys {keys.shape}, values {jnp.shape(values)}")
    stacked_keys = jnp.moveaxis(keys, 1, 0)  # (T, B, *P, D): every slot's logits in one product
    keys, values = _unstack(keys), _unstack(values)
  else:
    stacked_keys = None
  t = len(keys)
  if not t or not _is_sequence(values) or len(values) != t \
      or any(a.shape != query.shape for a in tuple(keys) + tuple(values)):
    raise ValueError(f"{fn}: expected query [B, *P, D] and keys/values sequences of T arrays [B, *P, D]; got "
                     f"query {query.shape}, keys {[tuple(a.shape) for a in keys]}, values "
                     f"{[tuple(a.shape) for a in values] if _is_sequence(values) else values.shape}")
  mask = _check_mask(fn, mask, t)
  q = _split_queries(fn, query, num_heads, key_kernel, projection)  # (B, *P, N, d), or (B, *P, N, D) folded
  logits = _slot_logits(q, keys if stacked_keys is None else stacked_keys, num_heads,
                        1.0 / math.sqrt(query.shape[-1] // num_heads), folded=key_kernel is not None)
  weights = _masked_softmax(logits, mask, axis=-1)  # (B, *P, N, T)
  values = [_split_heads(v, num_heads, "values") for v in values]  # T x (B, *P, N, d)
  impl = _impl(impl)
  if impl == "stacked":  # (B, *P, N, T) x (T, B, *P, N, d) -> (B, *P, N, d)
    out = jnp.einsum("b...nt,tb...nd->b...nd", weights.astype(values[0].dtype), jnp.stack(values, axis=0))
  elif impl == "reduce":  # (T, B, *P, N, 1) * (T, B, *P, N, d), summed over T
    out = _reduce_stacked(jnp.moveaxis(weights, -1, 0)[..., None], jnp.stack(values, axis=0))
  else:
    out = _sum_slots(weights[..., i, None].astype(v.dtype) * v for i, v in enumerate(values))
  return out.reshape(query.shape), weights


def pooled_depth_attention(query: jax.Array, keys: jax.Array | Sequence[jax.Array],
                           values: jax.Array | Sequence[jax.Array], mask: jax.Array | None = None, *,
                           num_heads: int, scale: float | None = None, impl: str | None = None,
                           key_kernel: jax.Array | None = None, projection: str = "dot"
                           ) -> tuple[jax.Array, jax.Array]:
  r"""Multi-head attention over layers with one distribution per example (MRLA-base, pooled AILA-2).

  .. math::

     \alpha_i^{(n)} = \mathrm{softmax}_{i \in V}\big(\alpha\, q^{(n)} \cdot k_i^{(n)}\big), \qquad
     m^{(n)} = \sum_i \alpha_i^{(n)}\, v_i^{(n)},

  where :math:`q, k_i \in \mathbb{R}^C` are pooled descriptors, head :math:`n`
  owns channels :math:`[nC/N, (n+1)C/N)` of the values :math:`v_i` (any
  spatial shape), and :math:`\alpha = 1/\sqrt{C/N}` by default. This is
  MRLA-base's ``softmax(Q K^T / sqrt(d)) V`` with ``V`` flattened per head.
  With sequences of per-slot keys and values the output is the Python sum
  :math:`\sum_i \alpha_i v_i` over the slots (no stacked values).

  Args:
    query: ``[B, C]``.
    keys: ``T`` arrays ``[B, C]``, or one ``[B, T, C]``.
    values: ``T`` arrays ``[B, *positions, C]``, or one ``[B, T, *positions, C]``.
    mask: boolean ``[T]``; ``None``: all slots.
    num_heads: heads; must divide ``C``.
    scale: logits scale; default ``1 / sqrt(C / num_heads)``.
    key_kernel: ``None``, or a ``[C, C]`` key projection not yet applied to ``keys`` (as in
      :func:`per_token_depth_attention`).
    projection: as in :func:`per_token_depth_attention`.

  Returns:
    ``(mixed [B, *positions, C], weights [B, heads, T])`` (weights float32).
  """
  fn = "pooled_depth_attention"
  if not _is_sequence(keys):
    b, t, c = keys.shape
    if query.shape != (b, c) or _is_sequence(values) or values.shape[:2] != (b, t) or values.shape[-1] != c:
      raise ValueError(f"{fn}: expected query [B, C], keys [B, T, C], values [B, T, *P, C]; "
                       f"got query {query.shape}, keys {keys.shape}, values {jnp.shape(values)}")
    keys, values = _unstack(keys), _unstack(values)
  t = len(keys)
  if not t or query.ndim != 2 or not _is_sequence(values) or len(values) != t \
      or any(k.shape != query.shape for k in keys) \
      or any(v.shape[:1] + v.shape[-1:] != query.shape or v.shape != values[0].shape for v in values):
    raise ValueError(f"{fn}: expected query [B, C] and sequences of T keys [B, C] and T values [B, *P, C]; got "
                     f"query {query.shape}, keys {[tuple(k.shape) for k in keys]}, values "
                     f"{[tuple(v.shape) for v in values] if _is_sequence(values) else values.shape}")
  mask = _check_mask(fn, mask, t)
  c = query.shape[-1]
  q = _split_queries(fn, query, num_heads, key_kernel, projection)  # (B, N, d), or (B, N, C) folded
  scale = 1.0 / math.sqrt(c // num_heads) if scale is None else scale
  weights = _masked_softmax(_slot_logits(q, keys, num_heads, scale, folded=key_kernel is not None),
                            mask, axis=-1)  # (B, N, T)
  values_shape = values[0].shape
  values = [_split_heads(v, num_heads, "values") for v in values]  # T x (B, *P, N, d)
  per_slot = weights.reshape(weights.shape[:1] + (1,) * (values[0].ndim - 3) + weights.shape[1:])  # (B, *1, N, T)
  impl = _impl(impl)
  if impl == "stacked":  # (B, N, T) x (T, B, *P, N, d) -> (B, *P, N, d)
    out = jnp.einsum("bnt,tb...nd->b...nd", weights.astype(values[0].dtype), jnp.stack(values, axis=0))
  elif impl == "reduce":  # (T, B, *1, N, 1) * (T, B, *P, N, d), summed over T
    out = _reduce_stacked(jnp.moveaxis(per_slot, -1, 0)[..., None], jnp.stack(values, axis=0))
  else:
    out = _sum_slots(per_slot[..., i, None].astype(v.dtype) * v for i, v in enumerate(values))
  return out.reshape(values_shape), weights


def mrla_light_step(prev: jax.Array, query: jax.Array, key: jax.Array, value: jax.Array, lam: jax.Array, *,
                    num_heads: int) -> tuple[jax.Array, jax.Array]:
  r"""One MRLA-light recurrence step (Fang et al. 2023, eq. 8).

  .. math::

     o_t^{(n)} = \lambda_t^{(n)} \odot o_{t-1}^{(n)}
       + \sigma\!\Big(\frac{q_t^{(n)} \cdot k_t^{(n)}}{\sqrt{d}}\Big)\, v_t^{(n)}

  with per-channel :math:`\lambda_t` and one sigmoid gate per head (the
  official code's ``mrla_light_layer`` plus ``lambda_t * o_{t-1}``).

  Args:
    prev: :math:`o_{t-1}`, ``[B, *positions, C]``.
    query, key: pooled descriptors ``[B, C]``.
    value: ``[B, *positions, C]``.
    lam: ``[C]``.
    num_heads: heads; must divide ``C``.

  Returns:
    ``(o_t [B, *positions, C], gates [B, heads])``.
  """
  b, c = query.shape
  if key.shape != (b, c) or value.shape != prev.shape or value.shape[0] != b or value.shape[-1] != c \
      or lam.shape != (c,):
    raise ValueError(f"mrla_light_step: expected query/key [B, C], value and prev [B, *P, C], lam [C]; got "
                     f"query {query.shape}, key {key.shape}, value {value.shape}, prev {prev.shape}, "
                     f"lam {lam.shape}")
  q = _split_heads(query, num_heads, "query").astype(jnp.float32)  # (B, N, d)
  k = _split_heads(key, num_heads, "key").astype(jnp.float32)
  gates = jax.nn.sigmoid(jnp.einsum("bnd,bnd->bn", q, k) / math.sqrt(c // num_heads))  # (B, N)
  v = _split_heads(value, num_heads, "value")  # (B, *P, N, d)
  g = gates.reshape((b,) + (1,) * (value.ndim - 2) + (num_heads, 1)).astype(value.dtype)
  gated = (g * v).reshape(value.shape)
  return lam.astype(value.dtype) * prev + gated, gates


def mrla_light_unrolled_weights(gates: jax.Array, lams: jax.Array) -> jax.Array:
  r"""The weight each step's value carries in the last MRLA-light output.

  Unrolling :func:`mrla_light_step` from :math:`o_0 = 0`,

  .. math::

     o_T = \sum_{i=1}^{T} \Big(\prod_{j=i+1}^{T} \lambda_j\Big) g_i\, v_i ,

  so the implied (unnormalised) attention of layer :math:`T` on layer
  :math:`i` is :math:`\beta_i = g_i \prod_{j>i} \lambda_j` (per channel).

  Args:
    gates: ``[T, C]`` per-channel gates (a head's gate repeated over its channels).
    lams: ``[T, C]``.

  Returns:
    ``[T, C]``.
  """
  # reverse cumulative product of lambdas over j > i
  after = jnp.concatenate([jnp.cumprod(lams[::-1], axis=0)[::-1][1:], jnp.ones_like(lams[:1])], axis=0)
  return gates * after


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
  r"""ECA's adaptive 1-D kernel size, used by MRLA for :math:`W_q, W_k`.

  .. math::

     k = \mathrm{odd}\big(\lfloor |(\log_2 C + b) / \gamma| \rfloor\big)

  (rounded up to the next odd number; Wang et al., ECA-Net, CVPR 2020).

  >>> [eca_kernel_size(c) for c in (16, 32, 64, 256, 2048)]
  [3, 3, 3, 5, 7]
  """
  t = int(abs((math.log(channels, 2) + b) / gamma))
  return t if t % 2 else t + 1
