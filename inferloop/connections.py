"""Kafka and Redis clients built from the settings, with errors that name the address.

Every client inferloop creates comes from here, so security options, timeouts and the
"unreachable at ADDRESS" errors are the same everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from inferloop.errors import KafkaUnavailableError, RedisUnavailableError
from inferloop.settings import KafkaSettings, RedisSettings

log = logging.getLogger(__name__)

KAFKA_CONNECT_ERRORS = (KafkaConnectionError, KafkaTimeoutError)


def kafka_common_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Options every Kafka client shares: servers, identity, security, timeouts."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
        "bootstrap_timeout_ms": int(kafka.connect_timeout_s * 1000),
        "reconnect_backoff_max_ms": kafka.reconnect_backoff_max_ms,
    }
    if kafka.sasl_mechanism:
        config["sasl_mechanism"] = kafka.sasl_mechanism
        config["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            config["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    if kafka.ssl_cafile:
        config["ssl_cafile"] = str(kafka.ssl_cafile)
    if kafka.ssl_certfile:
        config["ssl_certfile"] = str(kafka.ssl_certfile)
    if kafka.ssl_keyfile:
        config["ssl_keyfile"] = str(kafka.ssl_keyfile)
    if kafka.ssl_password is not None:
        config["ssl_password"] = kafka.ssl_password.get_secret_value()
    return config


def _unreachable(kafka: KafkaSettings, exc: Exception) -> KafkaUnavailableError:
    return KafkaUnavailableError(f"Kafka unreachable at {kafka.bootstrap_servers}: {exc}")


def make_producer(kafka: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer for ``kafka``; ``overrides`` are kafka-python producer options."""
    config = kafka_common_config(kafka) | overrides
    try:
        return KafkaProducer(**config)
    except KAFKA_CONNECT_ERRORS as exc:
        raise _unreachable(kafka, exc) from exc


def make_consumer(kafka: KafkaSettings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A consumer for ``kafka``; never creates topics and never auto-commits unless told."""
    config = (
        kafka_common_config(kafka)
        | {"enable_auto_commit": False, "allow_auto_create_topics": False}
        | overrides
    )
    try:
        return KafkaConsumer(*topics, **config)
    except KAFKA_CONNECT_ERRORS as exc:
        raise _unreachable(kafka, exc) from exc


def make_admin(kafka: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    """An admin client for ``kafka``."""
    config = kafka_common_config(kafka) | overrides
    try:
        return KafkaAdminClient(**config)
    except KAFKA_CONNECT_ERRORS as exc:
        raise _unreachable(kafka, exc) from exc


@contextmanager
def admin_client(kafka: KafkaSettings) -> Iterator[KafkaAdminClient]:
    """An admin client that is closed on exit; connection errors name the address."""
    admin = make_admin(kafka)
    try:
        yield admin
    except KAFKA_CONNECT_ERRORS as exc:
        raise _unreachable(kafka, exc) from exc
    finally:
        admin.close()


def redis_address(settings: RedisSettings) -> str:
    """``host:port`` (or the socket path) of the configured Redis, without credentials."""
    pool = redis.ConnectionPool.from_url(settings.url)
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}"


def make_redis(settings: RedisSettings, *, decode_responses: bool = False) -> redis.Redis:
    """A Redis client; it connects lazily, and fails fast rather than hanging."""
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "decode_responses": decode_responses,
        "health_check_interval": 30,
    }
    if settings.username:
        kwargs["username"] = settings.username
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    if settings.ssl_ca_certs is not None:
        kwargs["ssl_ca_certs"] = str(settings.ssl_ca_certs)
    return redis.Redis.from_url(settings.url, **kwargs)


def redis_unavailable(settings: RedisSettings, exc: Exception) -> RedisUnavailableError:
    """The error to raise when Redis could not be reached."""
    return RedisUnavailableError(f"Redis unreachable at {redis_address(settings)}: {exc}")


def check_redis(settings: RedisSettings) -> redis.Redis:
    """A Redis client that has answered a PING, or :class:`RedisUnavailableError`."""
    client = make_redis(settings)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        client.close()
        raise redis_unavailable(settings, exc) from exc
    return client
