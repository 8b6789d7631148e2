"""Errors raised by aila_jax with a message that names what to change."""


class ConfigError(ValueError):
  """A config value is missing, of the wrong type, or out of range.

  The message always names the config key (``config.a.b``), what was expected
  and what came, so that the fix is one ``--config.a.b=...`` away.
  """


class DataError(ValueError):
  """A data file or source does not hold what the config says it should."""


def config_error(key: str, expected: str, got) -> ConfigError:
  return ConfigError(f"config.{key}: expected {expected}, got {got!r}")
