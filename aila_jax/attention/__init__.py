"""Pure functions on arrays (no parameters): token, depth, redundancy and glimpse attention."""

from aila_jax.attention.dot_product import dot_product_attention, make_causal_mask, make_padding_mask  # noqa: F401
from aila_jax.attention.glimpse import extract_glimpses, locations_to_pixels  # noqa: F401
