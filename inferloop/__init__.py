"""inferloop: classify a live Kafka stream with the champion of a Redis-backed registry.

This package is the shared core (settings, topic and key names, event schemas and
featurisation, connection helpers, the CLI). The worker, registry and retrain packages
install beside it as ``inferloop.worker``, ``inferloop.registry`` and
``inferloop.retrain``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("inferloop")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
