"""aila_jax: attention over tokens, over depth, and over glimpses, in pure functional Flax."""

__version__ = "0.1.0"
