"""Gradient estimators for stochastic (hard-attention) models, as pure functions."""

from aila_jax.stochastic.control_variates import apply_control_variate, baseline_loss, leave_one_out_baseline, leave_one_out_optimal_scale, optimal_coefficient  # noqa: F401
from aila_jax.stochastic.importance import effective_sample_size, importance_log_weights, log_marginal_estimate, normalized_log_weights  # noqa: F401
from aila_jax.stochastic.reinforce import RAMLoss, ram_hybrid_loss, reinforce_baseline_loss, reinforce_loss, returns_to_go  # noqa: F401
from aila_jax.stochastic.variance import GradientVariance, gradient_variance  # noqa: F401
from aila_jax.stochastic.wake_sleep import RWSWake, rws_sleep_loss, rws_wake_losses  # noqa: F401
