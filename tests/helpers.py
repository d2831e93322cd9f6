"""Helpers for tests that talk to the real services."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, TopicPartition

from inferloop.connections import admin_client, make_consumer
from inferloop.settings import Settings

if TYPE_CHECKING:
    # Imported where used: the registry brings scikit-learn, which the xdist controller,
    # which imports this through tests/conftest.py, never needs.
    from inferloop.registry import Registry


def delete_topics_with_prefix(settings: Settings, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (a test's own topics)."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    with admin_client(settings.kafka) as admin:
        doomed = [t for t in admin.list_topics() if t.startswith(prefix)]
        if doomed:
            admin.delete_topics(doomed, raise_errors=False)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a subprocess needs to see ``settings``: this process's environment
    without its own ``INFERLOOP_*`` variables, plus those of ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERLOOP_")}
    return env | settings.to_env()


def read_topic(
    settings: Settings,
    topic: str,
    *,
    expect: int | None = None,
    timeout_s: float = 30.0,
    isolation_level: str = "read_uncommitted",
) -> list[Any]:
    """Every record of ``topic`` from the start, read without a group.

    With ``expect`` it waits until that many records have arrived (or the timeout);
    without it, it reads up to the end offsets seen at the start.
    """
    consumer: KafkaConsumer = make_consumer(
        settings.kafka, isolation_level=isolation_level, auto_offset_reset="earliest"
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if expect is not None:
                if len(records) >= expect:
                    break
            elif all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
        return records
    finally:
        consumer.close()


def json_values(records: Iterable[Any]) -> list[Any]:
    """The JSON-decoded values of ``records``."""
    return [json.loads(r.value) for r in records]


@contextlib.contextmanager
def untrusted_registry(settings: Settings, home: Path) -> Iterator[Registry]:
    """A registry on ``settings``' Redis that signs with a key of its own, under ``home``,
    which nothing ``settings`` verifies with trusts: what someone with write access to
    Redis, but not the signing key, could register."""
    from inferloop.registry import Registry
    from inferloop.registry.signing import generate_key_pair

    stranger = generate_key_pair(home / "stranger", "stranger")
    section = settings.registry.model_copy(update={"signing_key_path": stranger.private_path})
    with Registry.from_settings(settings.model_copy(update={"registry": section})) as registry:
        yield registry
