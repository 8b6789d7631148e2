"""device_augment.step_key: the documented key, fold_in(fold_in(rng, AUGMENT_STREAM), step), distinct from the
model's per-step key fold_in(rng, step) (trainer.step_rngs), so crops and dropout never share a key."""
import jax
import numpy as np

from aila_jax.data import device_augment


def test_step_key_is_the_documented_stream_and_not_the_model_key():
  rng = jax.random.PRNGKey(4)
  for step in (0, 1, 17):
    want = jax.random.fold_in(jax.random.fold_in(rng, 0xA06), step)
    got = device_augment.step_key(rng, step)
    np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(want))
    assert not np.array_equal(jax.random.key_data(got), jax.random.key_data(jax.random.fold_in(rng, step)))
