r"""Building blocks of the Recurrent Attention Model (RAM) and of WS-RAM, as linen modules.

"Recurrent Models of Visual Attention" (Mnih, Heess, Graves and Kavukcuoglu,
NIPS 2014, arXiv 1406.6247), section 4 and appendix, and "Learning Wake-Sleep
Recurrent Attention Models" (Ba, Grosse, Salakhutdinov and Frey, NIPS 2015,
arXiv 1509.06812). The modules are thin holders of parameters; the glimpse
sensor is the pure function :func:`aila_jax.attention.glimpse.extract_glimpses`
and the estimators live in :mod:`aila_jax.stochastic`.

* :class:`GlimpseNetwork` :math:`f_g`: the "what" and the "where" of a glimpse,

  .. math::
     h_g = \mathrm{ReLU}(W_1 \rho(x, l) + b_1),\quad
     h_l = \mathrm{ReLU}(W_2 l + b_2),\quad
     g = \mathrm{ReLU}(W_3 h_g + W_4 h_l + b),

  with :math:`|h_g| = |h_l| = 128` and :math:`|g| = 256` in the paper;
* :class:`CoreRNN` :math:`f_h`: :math:`h_t = \mathrm{ReLU}(W_h h_{t-1} + W_g g_t + b)`
  (the paper's classification core) or an LSTM (its dynamic-environment core);
* :class:`LocationNetwork`: the location policy, WS-RAM's prior
  :math:`p(a_t \mid a_{<t}, x) = \mathcal N(a_t;\ \tanh(W h_{t-1} + b),\ \sigma^2 I)`,
  :math:`\sigma` fixed (the paper) or learned;
* :class:`InferenceNetwork`: WS-RAM's proposal
  :math:`q(a_t \mid a_{<t}, y, x) = \mathcal N(a_t;\ \mu_q(h_{t-1}, y[, x]),\ \sigma_q(h_{t-1}, y[, x])^2 I)`,
  a learned residual on the prior, optionally reading a code of the whole image
  (:class:`ImageCode`);
* :class:`ClassifierHead` :math:`p(y \mid a, x) = \mathrm{softmax}(W h_T + b)`;
* :class:`BaselineNetwork`: the learned baseline :math:`b_t = w^\top h_{t-1} + c` of REINFORCE.

The location, inference and baseline networks read ``stop_gradient(h)``: their
score-function / regression signals train only their own parameters, and the
glimpse and core networks are trained by the classification likelihood alone
(the convention of the PyTorch ports, e.g. kevinzakka/recurrent-visual-attention).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from aila_jax.attention.glimpse import extract_glimpses

__all__ = [
    "BaselineNetwork",
    "ClassifierHead",
    "CoreRNN",
    "Gaussian",
    "GlimpseNetwork",
    "ImageCode",
    "InferenceNetwork",
    "LocationNetwork",
    "gaussian_log_prob",
]

CELLS = ("relu", "lstm")


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
  r"""Log density of a diagonal Gaussian, summed over the last axis.

  .. math::
     \log \mathcal N(x; \mu, \sigma^2 I) = -\sum_i \Bigl[\frac{(x_i - \mu_i)^2}{2\sigma_i^2}
        + \log \sigma_i + \tfrac12 \log 2\pi\Bigr]

  Args:
    x: ``[..., D]`` points.
    mean: ``[..., D]`` means.
    log_std: log standard deviations, broadcasting with ``mean``.

  Returns:
    ``[...]`` float32 log densities.
  """
  x, mean, log_std = (jnp.asarray(a, jnp.float32) for a in (x, mean, log_std))
  z = (x - mean) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


class GlimpseNetwork(nn.Module):
  """:math:`g = \\mathrm{ReLU}(W_3 h_g + W_4 h_l + b)` from the retina's patches and the location.

  Attributes:
    size: side of each glimpse patch (pixels).
    num_scales: number of patches, each twice as wide as the previous one.
    glimpse_hidden: :math:`|h_g|`.
    location_hidden: :math:`|h_l|`.
    features: :math:`|g|`.
  """
  size: int
  num_scales: int
  glimpse_hidden: int = 128
  location_hidden: int = 128
  features: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, locations: jax.Array) -> jax.Array:
    patches = extract_glimpses(images, locations, size=self.size, num_scales=self.num_scales)
    patches = patches.reshape((patches.shape[0], -1)).astype(self.dtype)  # (B, S*g*g*C)
    h_g = nn.relu(nn.Dense(self.glimpse_hidden, dtype=self.dtype, name="what")(patches))  # (B, Hg)
    h_l = nn.relu(nn.Dense(self.location_hidden, dtype=self.dtype, name="where")(
        locations.astype(self.dtype)))  # (B, Hl)
    what = nn.Dense(self.features, dtype=self.dtype, name="what_out")(h_g)
    where = nn.Dense(self.features, use_bias=False, dtype=self.dtype, name="where_out")(h_l)
    return nn.relu(what + where)  # (B, G)


class CoreRNN(nn.Module):
  """One step of the core network: ``(carry, g) -> (carry, h)``.

  ``cell='relu'``: :math:`h_t = \\mathrm{ReLU}(W_h h_{t-1} + W_g g_t + b)`, the carry is :math:`h`;
  ``cell='lstm'``: an LSTM whose carry is :math:`(c, h)`.
  """
  hidden: int = 256
  cell: str = "relu"
  dtype: Any = jnp.float32

  def initial_carry(self, batch: int):
    zeros = jnp.zeros((batch, self.hidden), self.dtype)
    return (zeros, zeros) if self.cell == "lstm" else zeros

  @nn.compact
  def __call__(self, carry, g: jax.Array):
    if self.cell == "lstm":
      carry, h = nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype, name="lstm")(carry, g)
      return carry, h
    if self.cell != "relu":
      raise ValueError(f"CoreRNN.cell must be one of {CELLS}, got {self.cell!r}")
    h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="h2h")(carry)
                + nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, name="i2h")(g))  # (B, H)
    return h, h


class Gaussian(NamedTuple):
  """A diagonal Gaussian over locations: ``mean`` and ``log_std`` ``(B, 2)`` float32, and the
  pre-``tanh`` mean ``preactivation`` (``mean = tanh(preactivation)``)."""
  mean: jax.Array
  log_std: jax.Array
  preactivation: jax.Array


class LocationNetwork(nn.Module):
  r"""Gaussian location policy / prior :math:`p(a_t \mid h_{t-1})`.

  Mean :math:`\mu = \tanh(z)`, :math:`z = W\,\mathrm{sg}(h) + b` (so
  :math:`\mu \in [-1, 1]`); standard deviation ``std`` fixed, or learned (one
  free log-std per coordinate, initialised at ``log(std)``) when ``learn_std``.
  Returns a :class:`Gaussian`.
  """
  std: float = 0.1
  learn_std: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array) -> Gaussian:
    h = jax.lax.stop_gradient(h)
    z = nn.Dense(2, dtype=self.dtype, name="mean")(h).astype(jnp.float32)  # (B, 2)
    if self.learn_std:
      log_std = self.param("log_std", lambda _: jnp.full((2,), math.log(self.std), jnp.float32))
    else:
      log_std = jnp.full((2,), math.log(self.std), jnp.float32)
    return Gaussian(jnp.tanh(z), jnp.broadcast_to(log_std, z.shape), z)


class ImageCode(nn.Module):
  r"""A code of the whole image for the inference network: :math:`c = \mathrm{ReLU}(W_c\, \mathrm{pool}(x) + b_c)`.

  :math:`\mathrm{pool}` averages non-overlapping ``f x f`` blocks, with
  :math:`f = \lceil \max(H, W) / \text{side} \rceil` (``SAME`` zero padding, split between the two edges
  of an axis, the extra row or column at the bottom/right; each block's sum is divided by :math:`f^2`, padding
  included), so a 28x28 image becomes 14x14, a 60x60 one 12x12 and a 100x100 one 13x13 with
  ``side=14``; the pooled pixels are flattened. Only :math:`q`, which is used
  in training alone, reads it: the prior and the classifier still see the
  image through their glimpses only.
  """
  features: int = 256
  side: int = 14
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    _, height, width, _ = images.shape
    f = max(1, -(-max(height, width) // self.side))
    x = nn.avg_pool(images.astype(jnp.float32), (f, f), strides=(f, f), padding="SAME")  # (B, H/f, W/f, C)
    x = x.reshape((x.shape[0], -1)).astype(self.dtype)
    return nn.relu(nn.Dense(self.features, dtype=self.dtype, name="code")(x))  # (B, U)


class InferenceNetwork(nn.Module):
  r"""WS-RAM's inference network :math:`q(a_t \mid a_{<t}, y, x)`, a residual on the prior.

  Architecture (our choice; see :mod:`aila_jax.models.ram`): it reads the same
  glimpse history as the prior, through the core state :math:`h_{t-1}` (held
  constant), and the label through a learned embedding :math:`E_y`, and
  corrects the prior's pre-``tanh`` mean :math:`z_p` (held constant) and
  standard deviation :math:`\sigma_p`:

  .. math::
     u = \mathrm{ReLU}(W_u\,\mathrm{sg}(h_{t-1}) + E_y + b_u),\qquad
     \mu_q = \tanh\bigl(\mathrm{sg}(z_p) + W_\mu u + b_\mu\bigr),

     \log\sigma_q = \mathrm{clip}\bigl(\mathrm{sg}(\log\sigma_p) + W_\sigma u + b_\sigma,\
        \log\sigma_{\min},\ \log\sigma_{\max}\bigr),

  with :math:`W_\mu, b_\mu, W_\sigma, b_\sigma` initialised at zero, so that
  :math:`q` starts equal to the prior (all importance weights then equal
  :math:`p(y \mid a_k, x)` up to a constant, and the effective sample size
  starts high) and learns where the label should move the glimpses. With an
  image code :math:`c` (:class:`ImageCode`, ``model.inference_input='image'``)
  the hidden layer is :math:`u = \mathrm{ReLU}(W_u\,\mathrm{sg}(h_{t-1}) + E_y + W_c' c + b_u)`:
  :math:`q` can then look where the prior has not yet looked.
  ``init_log_std_offset`` is added to :math:`b_\sigma` at initialisation
  (0: :math:`q = p`; e.g. :math:`\log 2`: :math:`q` starts twice as wide).
  """
  num_classes: int
  hidden: int = 256
  min_std: float = 1e-3
  max_std: float = 1.0
  init_log_std_offset: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, labels: jax.Array, prior: Gaussian,
               image_code: jax.Array | None = None) -> Gaussian:
    h = jax.lax.stop_gradient(h)
    e = nn.Embed(self.num_classes, self.hidden, dtype=self.dtype, name="label_embed")(labels)  # (B, U)
    pre = nn.Dense(self.hidden, dtype=self.dtype, name="hidden")(h) + e  # (B, U)
    if image_code is not None:
      pre = pre + nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, name="image")(image_code)
    u = nn.relu(pre)
    zeros = nn.initializers.zeros
    offset = self.init_log_std_offset
    dz = nn.Dense(2, dtype=self.dtype, kernel_init=zeros, name="mean")(u).astype(jnp.float32)
    ds = nn.Dense(2, dtype=self.dtype, kernel_init=zeros, name="log_std",
                  bias_init=lambda key, shape, dtype: jnp.full(shape, offset, dtype))(u).astype(jnp.float32)
    z = jax.lax.stop_gradient(prior.preactivation) + dz  # (B, 2)
    log_std = jnp.clip(jax.lax.stop_gradient(prior.log_std) + ds, math.log(self.min_std),
                       math.log(self.max_std))
    return Gaussian(jnp.tanh(z), log_std, z)


class ClassifierHead(nn.Module):
  """:math:`p(y \\mid a, x) = \\mathrm{softmax}(W h_T + b)`; returns float32 logits ``(B, classes)``."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    return nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(h).astype(jnp.float32)


class BaselineNetwork(nn.Module):
  """Learned baseline :math:`b_t = w^\\top \\mathrm{sg}(h_{t-1}) + c`, float32 ``(B,)``."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    h = jax.lax.stop_gradient(h)
    return nn.Dense(1, dtype=self.dtype, name="baseline")(h)[:, 0].astype(jnp.float32)
