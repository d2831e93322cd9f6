"""The dead-letter topic's format, as its readers need it: header names and reasons.

The worker writes these (``worker/deadletter.py`` keeps the same names, and a test holds
the two together); the readers here never import the worker.
"""

from __future__ import annotations

from collections.abc import Sequence

REASON_TOO_LARGE = "too_large"

H_REASON = "dlq.reason"
H_DETAIL = "dlq.detail"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_TIME = "dlq.time"
H_NULL_VALUE = "dlq.null_value"
H_REDRIVEN_FROM = "dlq.redriven_from"
DLQ_HEADER_PREFIX = "dlq."


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    """The first header called ``name``, decoded, or None."""
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", errors="replace")
    return None
