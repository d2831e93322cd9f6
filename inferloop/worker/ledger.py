"""The worker's delivery bookkeeping: which offsets are in flight, acknowledged and
committed, per partition, with no Kafka in it.

Batches enter in poll order when their outputs are sent, and leave the head of the
line as their sends are acknowledged (or all at once when one fails: the consumer goes
back to the first offset not acknowledged). Acknowledged batches gather into one
commit; one commit is in flight at a time, so commits reach the coordinator in order.
When partitions go, what is acknowledged is taken to be committed by the revocation
and an answer to the commit in flight is no longer acted on; what was still in flight
is remembered, to be read again where the partitions stay. :class:`AtLeastOnce`
(``worker/delivery.py``) drives it from the loop, commit callbacks and the rebalance
listener, under its lock; the ledger itself is not thread-safe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from kafka import TopicPartition


class HasOffsets(Protocol):
    """A batch as the ledger sees it: where it starts and ends in each partition."""

    @property
    def first_offsets(self) -> Mapping[TopicPartition, int]:
        """The first offset of the batch in each of its partitions."""

    @property
    def next_offsets(self) -> Mapping[TopicPartition, int]:
        """The offset after the batch in each of its partitions (what commits it)."""


B = TypeVar("B", bound=HasOffsets)


@dataclass(eq=False)
class Commit(Generic[B]):
    """Acknowledged batches, oldest first, and the offsets that commit them all."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    batches: list[B] = field(default_factory=list)

    def add(self, batch: B) -> None:
        """Add ``batch`` (after those already in)."""
        self.batches.append(batch)
        for tp, offset in batch.next_offsets.items():
            self.offsets[tp] = max(self.offsets.get(tp, offset), offset)

    def extend(self, other: Commit[B]) -> None:
        """Add every batch of ``other``, in its order."""
        for batch in other.batches:
            self.add(batch)


def _earliest(into: dict[TopicPartition, int], offsets: Mapping[TopicPartition, int]) -> None:
    for tp, offset in offsets.items():
        into[tp] = min(into.get(tp, offset), offset)


class DeliveryLedger(Generic[B]):
    """Batches in flight (sent, not acknowledged), acknowledged (not committed), the one
    commit in flight, the offsets committed, and where forgotten batches start."""

    def __init__(self) -> None:
        self._in_flight: deque[B] = deque()
        self._acked: Commit[B] = Commit()
        self._committing: Commit[B] | None = None
        self._reread: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    # -- reading ----------------------------------------------------------------------------
    def oldest(self) -> B | None:
        """The batch in flight the longest, or None."""
        return self._in_flight[0] if self._in_flight else None

    def in_flight(self) -> int:
        """Batches sent and not yet committed (in flight, acknowledged or committing)."""
        committing = len(self._committing.batches) if self._committing is not None else 0
        return len(self._in_flight) + len(self._acked.batches) + committing

    def unacknowledged(self) -> int:
        """Batches sent and not yet acknowledged."""
        return len(self._in_flight)

    def committing(self) -> bool:
        """Whether a commit is in flight."""
        return self._committing is not None

    # -- the batch's way: sent, acknowledged or failed -------------------------------------
    def sent(self, batch: B) -> None:
        """``batch``'s outputs were sent (it follows every batch already in)."""
        self._in_flight.append(batch)

    def acknowledged(self) -> B:
        """The oldest batch in flight is acknowledged: it waits to be committed."""
        batch = self._in_flight.popleft()
        self._acked.add(batch)
        return batch

    def failed(self) -> dict[TopicPartition, int]:
        """The oldest batch in flight failed: it and every batch behind it are dropped.
        Returns the first offset of each of their partitions, where to read again."""
        back: dict[TopicPartition, int] = {}
        for batch in self._in_flight:
            _earliest(back, batch.first_offsets)
        self._in_flight.clear()
        return back

    # -- commits ----------------------------------------------------------------------------
    def start_commit(self) -> Commit[B] | None:
        """Every acknowledged batch as one commit now in flight; None when nothing is
        acknowledged or a commit is in flight already."""
        if not self._acked.batches or self._committing is not None:
            return None
        commit, self._acked = self._acked, Commit()
        self._committing = commit
        return commit

    def commit_succeeded(self, commit: Commit[B]) -> bool:
        """``commit`` was answered with success. False when it is no longer the commit in
        flight (taken over by :meth:`take_acknowledged` or dropped by :meth:`lost`):
        then nothing is to be done with the answer."""
        if commit is not self._committing:
            return False
        self._committing = None
        self._record(commit.offsets)
        return True

    def commit_failed(self, commit: Commit[B]) -> bool:
        """``commit`` failed: its batches wait to be committed again, before those
        acknowledged since. False (and nothing changes) when the answer is stale."""
        if commit is not self._committing:
            return False
        self._committing = None
        commit.extend(self._acked)
        self._acked = commit
        return True

    def take_acknowledged(self) -> Commit[B]:
        """Every acknowledged batch not known to be committed, the commit in flight's
        included (committing an offset again changes nothing), to be committed by the
        caller now: the answer to the commit in flight is no longer acted on."""
        commit = self._committing or Commit()
        commit.extend(self._acked)
        self._acked, self._committing = Commit(), None
        return commit

    def committed_now(self, commit: Commit[B]) -> None:
        """``commit``, taken with :meth:`take_acknowledged`, was committed."""
        self._record(commit.offsets)

    def _record(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self.committed[tp] = max(self.committed.get(tp, offset), offset)

    # -- rebalances -------------------------------------------------------------------------
    def forget(self) -> int:
        """The partitions go with batches still in flight: drop them, and remember where
        they start to read them again if the partitions stay. Returns how many."""
        dropped = len(self._in_flight)
        for batch in self._in_flight:
            _earliest(self._reread, batch.first_offsets)
        self._in_flight.clear()
        return dropped

    def lost(self) -> int:
        """The partitions are gone already: nothing in hand may be committed (nor an
        answer to the commit in flight acted on); what was in flight is forgotten.
        Returns how many batches were in flight."""
        self._acked, self._committing = Commit(), None
        return self.forget()

    def reread(self, assigned: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to seek each of the ``assigned`` partitions to read its forgotten batches
        again (the consumer kept its position past them); the rest are no longer ours."""
        mine = set(assigned)
        back = {tp: offset for tp, offset in self._reread.items() if tp in mine}
        self._reread.clear()
        return back
