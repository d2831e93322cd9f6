"""JSON Lines in and out, chunk by chunk: a file (gzip by its ``.gz`` name) or ``-``.

Only one chunk of lines is held at a time, and one line is never read past the largest
valid event (``schemas.MAX_EVENT_BYTES``): a longer line is kept as its first bytes,
which validation rejects as ``oversize_event``, and the rest of it is skipped unread into
memory. So a file of any size, or one broken line of gigabytes, reads in bounded memory.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from inferloop.batch.errors import InputError, OutputError
from inferloop.domains.schemas import MAX_EVENT_BYTES

STDIO = "-"
RECORD = "record"
# One more byte than any valid event, so that an over-long line is recognised as one.
LINE_LIMIT_BYTES = MAX_EVENT_BYTES + 2
WRITE_BUFFER_BYTES = 1 << 20
# Level 6 (gzip's command-line default) writes several times faster than Python's 9,
# for a file a few per cent larger.
GZIP_LEVEL = 6


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk of raw values and where each came from; ``done`` is the progress reached
    (bytes of the input read, or records of a topic range)."""

    values: list[bytes | None]
    origins: list[Any]  # line numbers, or the consumed records (origin_key RECORD)
    origin_key: str
    done: int

    def origin(self, index: int) -> dict[str, Any]:
        """Where value ``index`` came from, as the rejects file records it: its line
        number, or a consumed record's topic, partition, offset and timestamp."""
        where = self.origins[index]
        if self.origin_key != RECORD:
            return {self.origin_key: where}
        return {
            "topic": where.topic,
            "partition": where.partition,
            "offset": where.offset,
            "timestamp_ms": where.timestamp,
        }


def _is_gzip(path: str) -> bool:
    return path.endswith(".gz")


def _opened(path: str, mode: str, buffering: int = -1) -> IO[bytes]:
    try:
        return Path(path).open(mode, buffering=buffering)
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror or exc}") from exc


class LinesReader:
    """The lines of a JSON Lines file (or standard input) in chunks of ``chunk_size``."""

    def __init__(self, path: str, chunk_size: int) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self._stack = ExitStack()
        self._raw: IO[bytes]
        self._lines: IO[bytes] | gzip.GzipFile
        if path == STDIO:
            self._raw = self._lines = sys.stdin.buffer
            self.total: int | None = None
        else:
            self._raw = self._stack.enter_context(_opened(path, "rb"))
            self.total = os.fstat(self._raw.fileno()).st_size
            self._lines = self._raw
        if _is_gzip(path):
            unzipped = gzip.GzipFile(fileobj=self._raw, mode="rb")
            self._stack.callback(unzipped.close)
            self._lines = unzipped

    def close(self) -> None:
        """Close the file (standard input is left open)."""
        self._stack.close()

    def __enter__(self) -> LinesReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _position(self) -> int:
        try:
            return self._raw.tell() if self.total is not None else 0
        except (OSError, ValueError):
            return 0

    def __iter__(self) -> Iterator[Chunk]:
        values: list[bytes | None] = []
        lines: list[int] = []
        try:
            for number, line in self._numbered_lines():
                values.append(line)
                lines.append(number)
                if len(values) >= self.chunk_size:
                    yield Chunk(values, lines, "line", self._position())
                    values, lines = [], []
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"cannot read {self.path}: {exc}") from exc
        if values:
            yield Chunk(values, lines, "line", self._position())

    def _numbered_lines(self) -> Iterator[tuple[int, bytes]]:
        readline = self._lines.readline
        number = 0
        while line := readline(LINE_LIMIT_BYTES):
            number += 1
            if len(line) == LINE_LIMIT_BYTES and not line.endswith(b"\n"):
                while (rest := readline(LINE_LIMIT_BYTES)) and not rest.endswith(b"\n"):
                    pass  # the rest of a line longer than any event: skipped
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line


class LinesWriter:
    """Writes lines to a file (gzip for ``.gz``) or standard output, a chunk at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stack = ExitStack()
        self._out: IO[bytes] | gzip.GzipFile
        if path == STDIO:
            self._out = sys.stdout.buffer
        elif _is_gzip(path):
            raw = self._stack.enter_context(_opened(path, "wb"))
            zipped = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL)
            self._stack.callback(zipped.close)
            self._out = zipped
        else:
            self._out = self._stack.enter_context(_opened(path, "wb", WRITE_BUFFER_BYTES))

    def write(self, keys: list[bytes], values: list[bytes]) -> None:
        """Append ``values``, one a line (keys are the event ids inside them)."""
        if values:
            try:
                self._out.write(b"\n".join(values) + b"\n")
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Flush, and close the file (standard output is flushed, left open)."""
        try:
            self._out.flush()
        finally:
            self._stack.close()
