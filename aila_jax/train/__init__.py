"""Train state, steps, sharding, checkpoints, metric writers and the trainer."""

from aila_jax.train.trainer import NonFiniteLossError, eval_step, train_and_evaluate, train_step

__all__ = ["NonFiniteLossError", "eval_step", "train_and_evaluate", "train_step"]
