"""What a replay has had acknowledged, and the resume file that carries it over a stop.

The ledger holds no Kafka: the replayer tells it what it sent and the producer's
callbacks (on kafka-python's sender thread, hence the lock) what was acknowledged or
failed. A position (an event's index in the time-ordered data set) is *done* once its
event is acknowledged, or its labelled example in a labels-only replay. A resume starts
at the lowest position not done and skips the done ones above it, so no acknowledged
event is sent twice; sends in flight when replay stopped may have been written without
their acknowledgement arriving, and are sent again (at-least-once).

Labels wait in replay's memory for their delay; those of done positions that are not
acknowledged yet are written to the resume file with their due time, so a resume sends
each of them (late ones at once). Labels of positions not done are made again when
their event is re-sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inferloop.domains.errors import DomainError

RESUME_VERSION = 1


class ResumeFileError(DomainError): ...


@dataclass(frozen=True)
class PendingLabel:
    """A labelled example waiting for its delay or its acknowledgement."""

    position: int
    due_ms: int
    key: bytes
    value: bytes


@dataclass
class Counts:
    """Sends and acknowledgements of one replay run."""

    events_sent: int = 0
    events_acknowledged: int = 0
    labels_sent: int = 0
    labels_acknowledged: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ResumeState:
    """Where a stopped replay goes on from: its plan, the done positions, its labels."""

    dataset: str
    domain: str
    events_topic: str
    labels_topic: str
    plan: dict[str, Any]
    next_position: int
    done_beyond: tuple[int, ...] = ()
    labels: tuple[PendingLabel, ...] = ()
    # Totals over every run of this replay so far, for the summary.
    events_acknowledged: int = 0
    labels_acknowledged: int = 0

    def write(self, path: Path) -> None:
        """Write the state as JSON (atomically: a crash leaves the old file or the new)."""
        body = asdict(self) | {
            "version": RESUME_VERSION,
            "done_beyond": list(self.done_beyond),
            "labels": [
                {"position": x.position, "due_ms": x.due_ms,
                 "key": x.key.decode(), "value": x.value.decode()}
                for x in self.labels
            ],
        }  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(body, indent=1))
        scratch.replace(path)

    @classmethod
    def read(cls, path: Path) -> ResumeState:
        """The state written to ``path``."""
        try:
            body = json.loads(path.read_text())
            if body.pop("version") != RESUME_VERSION:
                raise ResumeFileError(f"{path}: not a version {RESUME_VERSION} resume file")
            labels = tuple(
                PendingLabel(x["position"], x["due_ms"], x["key"].encode(), x["value"].encode())
                for x in body.pop("labels")
            )
            done = tuple(body.pop("done_beyond"))
            return cls(**body, done_beyond=done, labels=labels)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ResumeFileError(f"cannot read resume file {path}: {exc}") from exc


@dataclass
class Ledger:
    """Positions done, sends in flight, labels waiting; safe to call from two threads."""

    next_position: int
    done_beyond: set[int] = field(default_factory=set)
    labels_only: bool = False
    counts: Counts = field(default_factory=Counts)
    in_flight: int = 0
    in_flight_bytes: int = 0
    first_error: str | None = None
    last_progress: float = field(default_factory=time.monotonic)
    waiting: dict[int, PendingLabel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def is_done(self, position: int) -> bool:
        """Whether ``position`` needs no sending."""
        with self._lock:
            return position < self.next_position or position in self.done_beyond

    def event_sent(self, size: int) -> None:
        """An event of ``size`` bytes was handed to the producer."""
        with self._lock:
            self.counts.events_sent += 1
            self._start_flight(size)

    def label_queued(self, label: PendingLabel) -> None:
        """A label waits for its delay (and then for its acknowledgement)."""
        with self._lock:
            self.waiting[label.position] = label

    def label_sent(self, size: int) -> None:
        """A waiting label of ``size`` bytes was handed to the producer."""
        with self._lock:
            self.counts.labels_sent += 1
            self._start_flight(size)

    def event_acknowledged(self, position: int, size: int) -> None:
        """The broker acknowledged the event at ``position`` (of ``size`` bytes)."""
        with self._lock:
            self.counts.events_acknowledged += 1
            self._progress(size)
            self._done(position)

    def label_acknowledged(self, position: int, size: int) -> None:
        """The broker acknowledged the label of ``position`` (of ``size`` bytes)."""
        with self._lock:
            self.counts.labels_acknowledged += 1
            self._progress(size)
            self.waiting.pop(position, None)
            if self.labels_only:
                self._done(position)

    def label_withheld(self, position: int) -> None:
        """The label of ``position`` never comes back: in a labels-only replay there is
        nothing to send there, so the position is done (else the next position would
        never move past it, and the done ones above it would pile up)."""
        with self._lock:
            if self.labels_only:
                self._done(position)

    def failed(self, size: int, error: BaseException) -> None:
        """A send of ``size`` bytes failed (its position stays not done; a resume sends
        it again)."""
        with self._lock:
            self.counts.failed += 1
            self.in_flight -= 1
            self.in_flight_bytes -= size
            self.first_error = self.first_error or repr(error)

    def stalled_s(self) -> float:
        """Seconds since the last acknowledgement while sends are in flight, else 0."""
        with self._lock:
            return time.monotonic() - self.last_progress if self.in_flight else 0.0

    def resume_labels(self) -> tuple[PendingLabel, ...]:
        """The waiting labels a resume must send: those of done positions, by due time."""
        with self._lock:
            labels = [
                x
                for x in self.waiting.values()
                if x.position < self.next_position or x.position in self.done_beyond
            ]
        return tuple(sorted(labels, key=lambda x: (x.due_ms, x.position)))

    def _start_flight(self, size: int) -> None:
        # A stall is counted from the first send that waits, not from the last
        # acknowledgement before an idle spell (labels waiting for their delay).
        if not self.in_flight:
            self.last_progress = time.monotonic()
        self.in_flight += 1
        self.in_flight_bytes += size

    def _progress(self, size: int) -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= size
        self.last_progress = time.monotonic()

    def _done(self, position: int) -> None:
        if position != self.next_position:
            self.done_beyond.add(position)
            return
        self.next_position += 1
        while self.next_position in self.done_beyond:
            self.done_beyond.remove(self.next_position)
            self.next_position += 1
