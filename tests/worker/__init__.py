"""Tests of the streaming worker (``inferloop.worker``), against the real Kafka and Redis."""
