"""Gradient estimators for stochastic (hard-attention) models, as pure functions."""
