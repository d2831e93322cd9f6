"""Where predictions and rejects go: a JSON Lines file, or a topic.

Predictions go to a file (``files.LinesWriter``) or to a named topic, keyed by event id
as the worker keys them. A topic is flushed after every chunk and each send checked, so
at most one chunk is ever waiting in memory and a failed send stops the run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any, Protocol

from kafka.errors import KafkaError

from inferloop.batch.errors import OutputError
from inferloop.batch.files import LinesWriter
from inferloop.connections import make_producer
from inferloop.settings import KafkaSettings

FLUSH_TIMEOUT_S = 120.0


class Sink(Protocol):
    """Takes predictions a chunk at a time."""

    def write(self, keys: list[bytes], values: list[bytes]) -> None:
        """Write one chunk's predictions (``keys`` are their event ids)."""

    def close(self) -> None:
        """Flush and close."""


class TopicSink:
    """Predictions produced to ``topic``, keyed by event id, acknowledged chunk by chunk."""

    def __init__(self, kafka: KafkaSettings, topic: str, *, max_request_size: int) -> None:
        self.topic = topic
        self._producer = make_producer(
            kafka, acks="all", linger_ms=20, max_request_size=max_request_size
        )

    def write(self, keys: list[bytes], values: list[bytes]) -> None:
        """Send the chunk and wait until Kafka has acknowledged every record of it."""
        send = self._producer.send
        futures = [send(self.topic, key=k, value=v) for k, v in zip(keys, values, strict=True)]
        self._producer.flush(timeout=FLUSH_TIMEOUT_S)
        for future in futures:
            try:
                future.get(timeout=0)
            except KafkaError as exc:
                raise OutputError(f"a prediction could not be sent to {self.topic}: {exc}") from exc

    def close(self) -> None:
        """Close the producer (everything was flushed chunk by chunk)."""
        self._producer.close(timeout=10)


def reject_line(
    value: bytes | None, reason: str, detail: str, origin: dict[str, Any], extra: dict[str, str]
) -> bytes:
    """One line of the rejects file: the reason and detail (the worker's dead-letter
    reasons), where the value came from, and the value itself (as text when it is UTF-8,
    else ``value_base64``; ``null`` for a record without a value)."""
    line: dict[str, Any] = {"reason": reason, "detail": detail, **origin, **extra}
    if value is None:
        line["value"] = None
    else:
        try:
            line["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            line["value_base64"] = base64.b64encode(value).decode()
    return json.dumps(line, ensure_ascii=False).encode()


class RejectsWriter:
    """The side file of invalid input (JSON Lines), or nothing but counts without one."""

    def __init__(self, path: str | None) -> None:
        self._writer = LinesWriter(path) if path else None

    def write(self, lines: Iterable[bytes]) -> None:
        """Append reject lines (dropped when no file was asked for)."""
        if self._writer is not None:
            self._writer.write([], list(lines))

    def close(self) -> None:
        """Flush and close the file."""
        if self._writer is not None:
            self._writer.close()
