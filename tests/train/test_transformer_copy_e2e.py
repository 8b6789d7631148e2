"""configs/transformer_copy.py end to end: train_and_evaluate, checkpoint averaging, decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aila_jax import models
from aila_jax.data import datasets
from aila_jax.models import decoding
from aila_jax.train import train_and_evaluate
from aila_jax.train.averaging import average_checkpoints


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  from configs import transformer_copy  # pylint: disable=g-import-not-at-top
  config = transformer_copy.get_config()
  config.num_train_steps = 250
  config.checkpoint_every = 50
  config.dataset_kwargs.num_test = 200
  config.eval_batch_size = 200
  config.progress = False
  workdir = tmp_path_factory.mktemp("transformer_copy")
  result = train_and_evaluate(config, workdir)
  return config, workdir, result


def test_reverse_is_learned_through_the_trainer(trained):
  _, _, result = trained
  assert result["step"] == 250
  assert result["eval/accuracy"] >= 0.95, result  # token accuracy on the test strings


def test_averaged_checkpoints_decode_greedy_and_beam(trained):
  config, workdir, _ = trained
  dataset = datasets.build_dataset(config)
  model = models.get_model(config.model_name, **{**dataset.model_kwargs, **config.model})
  variables = {"params": jax.tree_util.tree_map(jnp.asarray, average_checkpoints(workdir, 3))}
  test = dataset.eval["test"].arrays
  x, want = test["inputs"][:64], test["targets"][:64]
  n = want.shape[1]
  greedy, greedy_lp = decoding.greedy_decode(model, variables, x, max_decode_len=n)
  g = np.asarray(greedy)
  assert (g == want).all(1).mean() >= 0.9
  # EOS handling: every row ends with EOS then zeros.
  first_eos = (g == 2).argmax(1)
  assert all((g[i, first_eos[i] + 1:] == 0).all() for i in range(len(g)) if (g[i] == 2).any())
  # The greedy log-probability equals the teacher-forced one of its tokens.
  logp = jax.nn.log_softmax(model.apply(variables, x, greedy)[0])
  tok = jnp.take_along_axis(logp, greedy[..., None], -1)[..., 0]
  np.testing.assert_allclose(greedy_lp, (tok * (greedy > 0)).sum(1), rtol=1e-4, atol=1e-4)
  # Beam 1 without length penalty is greedy search; beam 4 (alpha 0.6) does at least as well.
  beam1, _ = decoding.beam_search(model, variables, x, max_decode_len=n, beam_size=1, alpha=0.0)
  np.testing.assert_array_equal(beam1[:, 0], greedy)
  beam4, scores = decoding.beam_search(model, variables, x, max_decode_len=n)
  assert beam4.shape == (64, 4, n)
  assert (np.asarray(beam4[:, 0]) == want).all(1).mean() >= (g == want).all(1).mean()
  assert bool((jnp.diff(scores, axis=1) <= 1e-6).all())
