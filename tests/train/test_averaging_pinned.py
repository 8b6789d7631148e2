"""average_checkpoints: accumulation in float64 (hand-computed bfloat16 case) and numeric order of the steps."""
import jax
import jax.numpy as jnp
import numpy as np

from aila_jax.train import checkpoint
from aila_jax.train.averaging import average_checkpoints, checkpoint_steps


def _save(workdir, params_by_step):
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=10)
  for k, params in params_by_step.items():
    ckpt.save(k, {"step": jnp.asarray(k), "params": params, "opt_state": {}, "model_state": {},
                  "rng": jax.random.PRNGKey(0)}, {"iterator": {}})
  ckpt.close()


def test_bfloat16_parameters_are_averaged_in_float64(tmp_path):
  # (256 + 1 + 1) / 3 = 86, exact in bfloat16. Summing in bfloat16 loses both 1s (256 + 1 rounds to 256 with
  # 8 significant bits) and gives 256 / 3 -> 85.5.
  values = {1: 256.0, 2: 1.0, 3: 1.0}
  _save(tmp_path, {k: {"w": jnp.full((2,), v, jnp.bfloat16)} for k, v in values.items()})
  avg = average_checkpoints(tmp_path, 3)
  assert avg["w"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(avg["w"], np.float32), [86.0, 86.0])


def test_last_n_means_the_highest_step_numbers_not_names(tmp_path):
  _save(tmp_path, {9: {"w": jnp.full((2,), 9.0)}, 10: {"w": jnp.full((2,), 10.0)},
                   100: {"w": jnp.full((2,), 100.0)}})
  assert checkpoint_steps(tmp_path) == [9, 10, 100]
  np.testing.assert_allclose(average_checkpoints(tmp_path, 1)["w"], 100.0)
  np.testing.assert_allclose(average_checkpoints(tmp_path, 2)["w"], 55.0)
