"""The package's one backoff: how long to wait before trying an unreachable service again."""

from __future__ import annotations


class Backoff:
    """Exponential backoff: ``first_s`` (0.5 s), doubling, up to ``max_s``; ``reset``
    after a success."""

    def __init__(self, max_s: float, first_s: float = 0.5) -> None:
        self._first = first_s
        self._max = max_s
        self._next = first_s

    def next(self) -> float:
        """How long to wait before the next attempt."""
        delay = self._next
        self._next = min(self._next * 2, self._max)
        return delay

    def reset(self) -> None:
        """Back to the first delay."""
        self._next = self._first
