"""The root of every error inferloop raises on purpose.

The CLI prints an ``InferloopError`` as one line (its traceback only at DEBUG) and
exits with status 1; anything else is a bug and keeps its traceback. Each package
derives its own root from this one.
"""

from __future__ import annotations


class InferloopError(Exception):
    """Something the user can act on: the message says what and where."""


class ConfigError(InferloopError): ...


class UnknownSettingError(ConfigError): ...


class ServiceUnavailableError(InferloopError): ...


class KafkaUnavailableError(ServiceUnavailableError): ...


class RedisUnavailableError(ServiceUnavailableError): ...


class DataNotFoundError(InferloopError): ...
