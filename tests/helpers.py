"""Shared test helpers."""
import pathlib
import tempfile

import ml_collections

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_testing_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  """configs/testing.py with ``data_dir`` set and dotted-key overrides applied."""
  from configs import testing  # pylint: disable=g-import-not-at-top
  config = testing.get_config()
  config.data_dir = str(data_dir)
  config.progress = False
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def machine_folders(*, temp_and_home: bool = True) -> tuple[str, ...]:
  """Folder prefixes that would name the machine a committed file was written on: the checkout's parent, the
  usual home roots, and (``temp_and_home``) this machine's temp and home folders."""
  folders = {str(REPO.parent).rstrip("/") + "/", "/home/", "/Users/"}
  if temp_and_home:
    folders |= {tempfile.gettempdir().rstrip("/") + "/", str(pathlib.Path.home()).rstrip("/") + "/"}
  return tuple(sorted(folders))



def np_conv(x, k, stride: int = 1, pad=0):
  """numpy cross-correlation, NHWC x HWIO (one group), in float64. ``pad``: zeros on every spatial side (an int),
  or ``'SAME'``: XLA's padding for ``ceil(size / stride)`` outputs, the odd extra row/column at the end."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  x, k = np.asarray(x, np.float64), np.asarray(k, np.float64)
  kh, kw = k.shape[:2]
  if pad == "SAME":
    pads = []
    for size, kk in ((x.shape[1], kh), (x.shape[2], kw)):
      total = max((-(-size // stride) - 1) * stride + kk - size, 0)
      pads.append((total // 2, total - total // 2))
  else:
    pads = [(pad, pad)] * 2
  x = np.pad(x, ((0, 0), *pads, (0, 0)))
  ho, wo = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, k.shape[3]))
  for i in range(kh):
    for j in range(kw):
      out += np.einsum("bhwc,co->bhwo", x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride],
                       k[i, j])
  return out


def random_variables(model, *args, seed: int = 0):
  """Variables of ``model`` (structure from ``jax.eval_shape(model.init, ...)``: no initialiser runs) filled with
  random values: kernels N(0, 1/fan_in), BN/LN scales and running variances U(0.5, 1.5), biases and running means
  N(0, 0.1), AILA-1 depth logits 0 (uniform weights). Non-trivial BN statistics pin the eval-mode BN too."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, size=leaf.shape)
    if name in ("bias", "mean"):
      return 0.1 * rng.normal(size=leaf.shape)
    assert name == "depth_logits", path
    return np.zeros(leaf.shape)

  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), *args)
  return jax.tree_util.tree_map_with_path(lambda pa, l: jnp.asarray(fill(pa, l), jnp.float32), shapes)


class RecordSource:
  """A data source without ``get_batch``/``arrays`` (like ``tfds.data_source``): read one record at a time."""

  def __init__(self, inner):
    self._inner = inner

  def __len__(self):
    return len(self._inner)

  def __getitem__(self, index):
    return self._inner[index]


class FakeTorchTensor:
  """A stand-in torch tensor over a numpy array ``.a`` (for bench scripts timed against PyTorch, without it)."""

  def __init__(self, a):
    import numpy as np  # pylint: disable=g-import-not-at-top
    self.a = np.asarray(a)

  def to(self, *_):
    return self

  def requires_grad_(self):
    return self

  def float(self):
    return self

  def cpu(self):
    return self

  def numpy(self):
    return self.a

  def transpose(self, i, j):
    import numpy as np  # pylint: disable=g-import-not-at-top
    return FakeTorchTensor(np.swapaxes(self.a, i, j))
