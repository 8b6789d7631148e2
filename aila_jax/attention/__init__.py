"""Pure functions on arrays (no parameters): token, depth, redundancy and glimpse attention."""

from aila_jax.attention.glimpse import extract_glimpses, locations_to_pixels  # noqa: F401
