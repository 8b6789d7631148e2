"""Pure functions on arrays (no parameters): token, depth, redundancy and glimpse attention."""
