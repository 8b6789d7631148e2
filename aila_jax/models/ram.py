r"""RAM and WS-RAM: recurrent models of visual (hard) attention, by name ``'ram'`` and ``'wsram'``.

Mnih, Heess, Graves and Kavukcuoglu, "Recurrent Models of Visual Attention",
NIPS 2014 (arXiv 1406.6247); Ba, Grosse, Salakhutdinov and Frey, "Learning
Wake-Sleep Recurrent Attention Models", NIPS 2015 (arXiv 1509.06812).

The generative model of WS-RAM (RAM is the same network, trained differently):

.. math::
   p(y, a \mid x) = \prod_{t=1}^{T} p(a_t \mid h_{t-1})\; p(y \mid h_T),
   \qquad h_t = f_h\bigl(h_{t-1},\ f_g(\rho(x, \mathrm{clip}(a_t, -1, 1)),\ \mathrm{clip}(a_t, -1, 1))\bigr),
   \quad h_0 = 0,

with :math:`a_t \in \mathbb R^2` the (row, col) location of glimpse :math:`t`,
:math:`p(a_t \mid h_{t-1}) = \mathcal N(\mu_\theta(h_{t-1}), \sigma^2 I)` the
location network (RAM's policy, WS-RAM's prior; the first location has
:math:`h_0 = 0`, so its mean is a learned constant), :math:`\rho` the retina
(:func:`aila_jax.attention.glimpse.extract_glimpses`) and :math:`p(y \mid h_T)`
the classifier after the last glimpse. WS-RAM adds the inference network

.. math::
   q(a \mid y, x) = \prod_{t=1}^{T} \mathcal N\bigl(a_t;\ \mu_\eta(h_{t-1}, y),\ \sigma_\eta(h_{t-1}, y)^2 I\bigr).

**Locations.** A sample :math:`a_t` is a Gaussian draw and may leave
:math:`[-1, 1]`; the glimpse is taken at (and the glimpse network reads)
:math:`\mathrm{clip}(a_t, -1, 1)`, while the log-densities are those of the
unclipped draw (the clip is part of the environment, as in the PyTorch ports).
Samples are held constant (``stop_gradient``): no pathwise gradient.

**Inference network (our choice).** The WS-RAM paper conditions :math:`q` on
the label and the image; its exact architecture could not be consulted here.
We let :math:`q` read the image through the same glimpse history as the prior,
:math:`h_{t-1}` (so it needs no network over the full image and costs a few
small dense layers per step), plus a learned label embedding, and make it a
residual on the prior: its pre-``tanh`` mean and log standard deviation are
the prior's (held constant) plus corrections initialised at zero, so
:math:`q = p` at the start (:class:`aila_jax.nn.ram.InferenceNetwork`). The
core state and the prior's outputs are held constant in :math:`q`, so the
inference network's wake/sleep losses train only its own parameters. Two
switches widen that choice: ``inference_input='image'`` lets :math:`q` also
read a code of the whole (average-pooled) image, so that it can propose
locations the glimpse history has not reached (a :math:`q` that reads only
:math:`h_{t-1}` and the label can learn little more than a per-class shift,
and its importance weights then stay near uniform: the effective sample size
of our MNIST runs ends at 4.86-4.98 of 5, with either input); ``inference_std_scale`` starts
:math:`q` wider than the prior.

**Calling.** ``model.apply(variables, images, labels=None, train=..., sample=...,
num_samples=None, rngs={'glimpse': key})`` returns ``(logits, intermediates)``:

* ``sample='mean'``: every location is the prior mean (deterministic; no RNG);
* ``sample='prior'``: :math:`a \sim p(a \mid x)`;
* ``sample='proposal'``: :math:`a \sim q(a \mid y, x)` (WS-RAM, needs ``labels``).

With ``num_samples=K`` the trajectory is drawn K times (``flax.linen.vmap``
over the ``glimpse`` RNG stream, parameters shared) and every output gains a
leading ``K`` axis. ``intermediates`` holds ``locations`` ``(B, T, 2)`` (the
clipped glimpse centres, for plotting), ``samples`` (unclipped), ``prior_mean``,
``log_prior`` ``(B, T)`` (per-step :math:`\log p(a_t \mid h_{t-1})`),
``baseline`` ``(B, T)`` (RAM), and ``log_proposal`` / ``proposal_mean`` when
the model has an inference network and ``labels`` are given.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from aila_jax.errors import ConfigError
from aila_jax.nn.ram import (CELLS, BaselineNetwork, ClassifierHead, CoreRNN, GlimpseNetwork, ImageCode,
                             InferenceNetwork, LocationNetwork, gaussian_log_prob)

__all__ = ["RAM", "WSRAM", "SAMPLERS", "INFERENCE_INPUTS"]

SAMPLERS = ("mean", "prior", "proposal")
INFERENCE_INPUTS = ("history", "image")


def _positive_int(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
    raise ConfigError(f"config.model.{name}: expected a positive int, got {value!r}")


def _positive_float(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
    raise ConfigError(f"config.model.{name}: expected a number > 0, got {value!r}")


class _Spec(NamedTuple):
  """The fields of :class:`RAM` that a trajectory needs (a hashable, non-module value)."""
  num_classes: int
  glimpse_size: int
  num_scales: int
  num_glimpses: int
  glimpse_hidden: int
  location_hidden: int
  glimpse_features: int
  hidden: int
  cell: str
  std: float
  learn_std: bool
  inference: bool
  inference_hidden: int
  inference_input: str
  inference_std_scale: float
  baseline: bool
  dtype: Any


class _Trajectory(nn.Module):
  """One trajectory of T glimpses for the whole batch (see the module docstring)."""
  cfg: _Spec
  sample: str

  @nn.compact
  def __call__(self, images, labels):
    c = self.cfg
    batch = images.shape[0]
    glimpse = GlimpseNetwork(c.glimpse_size, c.num_scales, c.glimpse_hidden, c.location_hidden,
                             c.glimpse_features, dtype=c.dtype, name="glimpse")
    core = CoreRNN(c.hidden, c.cell, dtype=c.dtype, name="core")
    prior = LocationNetwork(c.std, c.learn_std, dtype=c.dtype, name="location")
    classifier = ClassifierHead(c.num_classes, dtype=c.dtype, name="classifier")
    baseline = BaselineNetwork(dtype=c.dtype, name="baseline") if c.baseline else None
    proposal = (InferenceNetwork(c.num_classes, c.inference_hidden,
                                 init_log_std_offset=math.log(c.inference_std_scale),
                                 dtype=c.dtype, name="inference")
                if c.inference else None)
    use_q = proposal is not None and (labels is not None or self.is_initializing())
    if use_q and labels is None:
      labels = jnp.zeros((batch,), jnp.int32)
    image_code = None
    if use_q and c.inference_input == "image":
      image_code = ImageCode(c.inference_hidden, dtype=c.dtype, name="inference_image")(images)  # (B, U)

    if self.sample == "mean":
      noise = None
    else:
      noise = jax.random.normal(self.make_rng("glimpse"), (c.num_glimpses, batch, 2), jnp.float32)

    carry = core.initial_carry(batch)
    h = jnp.zeros((batch, c.hidden), c.dtype)  # (B, H)
    out = {k: [] for k in ("locations", "samples", "prior_mean", "log_prior")}
    if baseline is not None:
      out["baseline"] = []
    if use_q:
      out["log_proposal"], out["proposal_mean"] = [], []
    for t in range(c.num_glimpses):
      p = prior(h)  # Gaussian, (B, 2) each
      p_mean, p_log_std = p.mean, p.log_std
      if use_q:
        q_mean, q_log_std, _ = proposal(h, labels, p, image_code)
      if self.sample == "proposal":
        a = q_mean + jnp.exp(q_log_std) * noise[t]
      elif self.sample == "prior":
        a = p_mean + jnp.exp(p_log_std) * noise[t]
      else:
        a = p_mean
      a = jax.lax.stop_gradient(a)  # (B, 2), no pathwise gradient
      out["samples"].append(a)
      out["prior_mean"].append(p_mean)
      out["log_prior"].append(gaussian_log_prob(a, p_mean, p_log_std))  # (B,)
      if use_q:
        out["proposal_mean"].append(q_mean)
        out["log_proposal"].append(gaussian_log_prob(a, q_mean, q_log_std))
      if baseline is not None:
        out["baseline"].append(baseline(h))
      loc = jnp.clip(a, -1.0, 1.0)
      out["locations"].append(loc)
      carry, h = core(carry, glimpse(images, loc.astype(c.dtype)))
    logits = classifier(h)  # (B, C)
    inter = {k: jnp.stack(v, axis=1) for k, v in out.items()}  # (B, T, ...) each
    return logits, inter


class RAM(nn.Module):
  """Recurrent Attention Model (Mnih et al. 2014); ``inference=True`` makes it WS-RAM's model.

  Attributes:
    num_classes: classes of :math:`p(y \\mid a, x)`.
    glimpse_size: side of the retina's first (highest-resolution) patch.
    num_scales: patches per glimpse, each twice as wide as the previous one.
    num_glimpses: T.
    glimpse_hidden, location_hidden, glimpse_features: :math:`|h_g|, |h_l|, |g|`.
    hidden: core state size.
    cell: ``'relu'`` (RAM's classification core) or ``'lstm'``.
    std: standard deviation of the location policy / prior (initial value if learned).
    learn_std: learn the prior's log standard deviation.
    channels: image channels the model accepts (checked on every call).
    inference: build WS-RAM's inference network :math:`q(a \\mid y, x)`.
    inference_hidden: its hidden width.
    inference_input: what :math:`q` reads besides the label: ``'history'`` (the
      prior's glimpse history :math:`h_{t-1}` alone) or ``'image'`` (also a code
      of the whole, average-pooled image, :class:`aila_jax.nn.ram.ImageCode`).
    inference_std_scale: :math:`q`'s initial standard deviation as a multiple of the prior's (1: q = p).
    baseline: build RAM's learned baseline network.
  """
  num_classes: int
  glimpse_size: int = 8
  num_scales: int = 1
  num_glimpses: int = 6
  glimpse_hidden: int = 128
  location_hidden: int = 128
  glimpse_features: int = 256
  hidden: int = 256
  cell: str = "relu"
  std: float = 0.1
  learn_std: bool = False
  channels: int = 1
  inference: bool = False
  inference_hidden: int = 256
  inference_input: str = "history"
  inference_std_scale: float = 1.0
  baseline: bool = True
  dtype: Any = jnp.float32

  def __post_init__(self):
    for name in ("num_classes", "glimpse_size", "num_scales", "num_glimpses", "glimpse_hidden",
                 "location_hidden", "glimpse_features", "hidden", "channels", "inference_hidden"):
      _positive_int(name, getattr(self, name))
    _positive_float("std", self.std)
    _positive_float("inference_std_scale", self.inference_std_scale)
    if self.inference_input not in INFERENCE_INPUTS:
      raise ConfigError(f"config.model.inference_input: expected one of {INFERENCE_INPUTS}, "
                        f"got {self.inference_input!r}")
    if self.cell not in CELLS:
      raise ConfigError(f"config.model.cell: expected one of {CELLS}, got {self.cell!r}")
    super().__post_init__()

  def _check_inputs(self, images, labels, sample, num_samples):
    shape = tuple(jnp.shape(images))
    if len(shape) != 4 or shape[-1] != self.channels:
      raise ValueError(
          f"images must have shape [batch, H, W, {self.channels}] (rank 4, channels = "
          f"config.model.channels = {self.channels}), got shape {shape}; set config.model.channels "
          "or give the images a channel axis.")
    if labels is not None and tuple(jnp.shape(labels)) != shape[:1]:
      raise ValueError(f"labels must have shape [batch] = ({shape[0]},), got {tuple(jnp.shape(labels))}.")
    if sample not in SAMPLERS:
      raise ValueError(f"sample must be one of {SAMPLERS}, got {sample!r}.")
    if sample == "proposal" and not (self.inference and labels is not None):
      raise ValueError("sample='proposal' needs a model with an inference network (model 'wsram', "
                       "config.model.inference=True) and labels.")
    if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                                    or num_samples < 1):
      raise ValueError(f"num_samples (K) must be an int >= 1 or None, got {num_samples!r}.")

  @nn.compact
  def __call__(self, images, labels=None, *, train: bool = False, sample: str = "mean",
               num_samples: int | None = None):
    del train  # no dropout / batch norm
    self._check_inputs(images, labels, sample, num_samples)
    images = jnp.asarray(images).astype(self.dtype)  # (B, H, W, C)
    if labels is not None:
      labels = jnp.asarray(labels).astype(jnp.int32)
    spec = _Spec(**{f: getattr(self, f) for f in _Spec._fields})
    if num_samples is None:
      return _Trajectory(spec, sample, name="trajectory")(images, labels)
    sampled = nn.vmap(_Trajectory, variable_axes={"params": None},
                      split_rngs={"params": False, "glimpse": True}, in_axes=(None, None),
                      out_axes=0, axis_size=num_samples)
    return sampled(spec, sample, name="trajectory")(images, labels)  # leading K axis


class WSRAM(RAM):
  """RAM with WS-RAM's inference network :math:`q(a \\mid y, x)` and no REINFORCE baseline."""
  inference: bool = True
  baseline: bool = False
