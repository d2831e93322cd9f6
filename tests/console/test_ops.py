"""The shared operations module reads what the worker writes."""

from __future__ import annotations

from inferloop.ops import letters
from inferloop.worker import deadletter


def test_the_dead_letter_header_names_are_the_workers() -> None:
    names = [n for n in dir(letters) if n.startswith(("H_", "REASON_", "DLQ_"))]
    assert names
    for name in names:
        assert getattr(letters, name) == getattr(deadletter, name), name
