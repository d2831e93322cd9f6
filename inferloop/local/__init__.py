"""Kafka and Redis on this machine, without Docker."""
