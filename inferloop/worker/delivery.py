"""Delivery guarantees: how a batch's outputs are written and its offsets committed.

At-least-once (the default) pipelines: batch k's sends are in flight while batch k+1
is polled and scored. A batch's offsets are committed once every one of its sends is
acknowledged, as explicit ``{partition: last acknowledged offset + 1}``, batches in
order. When a batch's sends fail, the batches behind it are dropped and the consumer
seeks back to the first offset not acknowledged, so nothing is skipped.

Exactly-once wraps each batch in a Kafka transaction: predictions, dead letters and
the consumer offsets (``send_offsets_to_transaction`` with the consumer's group
metadata, KIP-447) commit together or not at all. A failure aborts the transaction
and the batch is read again; a transaction whose outcome is unknown, or a fenced
producer, is settled by a new producer and the committed offsets (see
:class:`ExactlyOnce`).
Downstream readers must use ``isolation_level=read_committed`` to see only committed
transactions.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    IllegalGenerationError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from inferloop.errors import KafkaUnavailableError
from inferloop.kafka_internals import KafkaInternals
from inferloop.topics import DomainTopics
from inferloop.worker.batch import Batch
from inferloop.worker.committed import back_to_committed, describe
from inferloop.worker.errors import ProducerFencedOutError
from inferloop.worker.ledger import Commit, DeliveryLedger
from inferloop.worker.partitioning import partitions_of

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, OffsetAndMetadata]
FaultFn = Callable[[str], None]
CommittedFn = Callable[[Batch], None]
# Called with the offsets the consumer went back to, and why.
RewindFn = Callable[[dict[TopicPartition, int], BaseException], None]

# A producer fenced again this soon after starting over is not alone with its id.
FENCED_AGAIN_S = 60.0
# How long a start-over waits for the committed offsets before it tries again.
COMMITTED_TIMEOUT_MS = 10_000
# The header of the empty records a start-over writes, in a transaction it aborts, to
# reach every output partition (see ExactlyOnce._abort_hanging); no read_committed
# reader sees them (a read_uncommitted one does).
HANGING_SWEEP_HEADER = "inferloop-hanging-sweep"

# A commit that fails because the group moved on: the rebalance that follows settles it.
GROUP_MOVED_ERRORS = (
    CommitFailedError,
    FencedInstanceIdError,
    RebalanceInProgressError,
    IllegalGenerationError,
    UnknownMemberIdError,
)


def commit_offsets(next_offsets: dict[TopicPartition, int]) -> Offsets:
    """Explicit offsets to commit: the next offset to read, per partition."""
    return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in next_offsets.items()}


def seek_back(consumer: KafkaConsumer, first_offsets: dict[TopicPartition, int]) -> None:
    """Seek the partitions still assigned to ``first_offsets`` (the rest are gone)."""
    assigned = consumer.assignment()
    for tp, offset in first_offsets.items():
        if tp in assigned:
            try:
                consumer.seek(tp, offset)
            except (IllegalStateError, ValueError):
                log.debug("partition %s went away before the seek", tp)


def send_batch(
    producer: KafkaProducer, topics: DomainTopics, batch: Batch, internals: KafkaInternals
) -> list[Any]:
    """Send every prediction and dead letter of ``batch``, and its shadow records; the
    futures to wait on, in order."""
    predictions = topics.predictions
    # The default partitioner hashes one key per send in Python; a batch is hashed at once.
    partitions = partitions_of(batch.keys, len(producer.partitions_for(predictions)))
    futures = internals.append_records(
        producer, predictions, batch.keys, batch.predictions, partitions
    )
    dlq = topics.dlq
    futures.extend(
        producer.send(dlq, value=letter.value, key=letter.key, headers=letter.headers)
        for letter in batch.dead_letters
    )
    if batch.shadow is not None:
        # In the transaction under exactly-once; best effort (not waited on) otherwise.
        futures.extend(batch.shadow.send(producer, internals))
    return futures


class Delivery(Protocol):
    """What the loop needs of a delivery guarantee."""

    def deliver(self, batch: Batch) -> None:
        """Write the batch's outputs (and, when it can, commit its offsets)."""

    def settle(self) -> None:
        """Commit what has been acknowledged, without waiting."""

    def drain(self, timeout_s: float) -> bool:
        """Finish every batch in hand and commit it; False if time ran out."""

    def on_revoked(self) -> Offsets:
        """Partitions are going: finish the batches in hand, return offsets to commit."""

    def on_lost(self) -> None:
        """Partitions are already gone: forget the batches in hand."""

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions are (again) ours: read the forgotten batches of those kept again."""

    def in_flight(self) -> int:
        """Batches written but not yet committed."""

    def close(self, timeout_s: float) -> None:
        """Close the producer, waiting at most ``timeout_s`` for what it still sends."""


@dataclass
class _InFlight:
    batch: Batch
    futures: list[Any]
    error: BaseException | None = None
    sent_at: float = field(default_factory=time.monotonic)

    @property
    def first_offsets(self) -> dict[TopicPartition, int]:
        return self.batch.first_offsets

    @property
    def next_offsets(self) -> dict[TopicPartition, int]:
        return self.batch.next_offsets

    def done(self) -> bool:
        return all(f.is_done for f in self.futures)

    def wait(self, deadline: float) -> bool:
        """Wait for every send until ``deadline``; True when all are done."""
        for f in self.futures:
            if f.is_done:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(KafkaError):  # read below from the future itself
                f.get(timeout=remaining)
        return self.done()

    def failure(self) -> BaseException | None:
        for f in self.futures:
            if f.failed():
                exc: BaseException = f.exception
                return exc
        return None


class AtLeastOnce:
    """Pipelined delivery: a batch's offsets are committed once all its sends are
    acknowledged, asynchronously and at most every ``commit_interval_s``.

    The loop never waits for a commit: acknowledged batches gather offsets until the
    interval has passed and no commit is in flight, then one ``commit_async`` covers
    them all (one at a time, so commits reach the coordinator in order). A crash loses
    at most the commits of the last interval: those batches are read and written again,
    never skipped. Revocation and shutdown commit what is acknowledged synchronously.

    The bookkeeping (in flight, acknowledged, committing, to read again) is a
    :class:`~inferloop.worker.ledger.DeliveryLedger`; this class owns "flush, then
    commit": it watches the sends, asks the consumer to commit and seeks it back.
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        producer_factory: Callable[[], KafkaProducer],
        topics: DomainTopics,
        *,
        max_in_flight: int,
        ack_timeout_s: float,
        revoke_timeout_s: float,
        fault: FaultFn,
        on_committed: CommittedFn,
        on_rewind: RewindFn,
        commit_interval_s: float = 0.0,
        internals: KafkaInternals | None = None,
    ) -> None:
        self._internals = internals if internals is not None else KafkaInternals()
        self._consumer = consumer
        self._producer_factory = producer_factory
        self._producer: KafkaProducer | None = producer_factory()
        self._topics = topics
        self._max_in_flight = max_in_flight
        self._ack_timeout_s = ack_timeout_s
        self._revoke_timeout_s = revoke_timeout_s
        self._commit_interval_s = commit_interval_s
        self._fault = fault
        self._on_committed = on_committed
        self._on_rewind = on_rewind
        self.ledger: DeliveryLedger[_InFlight] = DeliveryLedger()
        # When the next asynchronous commit may go.
        self._next_commit_at = 0.0
        # Raised by the next settle: a commit failed in a way no retry mends.
        self._commit_error: BaseException | None = None
        # Commits failed in a row on an unreachable coordinator (logged once).
        self._commits_failing = 0
        # The rebalance listener runs on the consumer's IO thread while the loop is
        # blocked in poll(); the lock makes that hand-over explicit.
        self._lock = threading.RLock()

    def in_flight(self) -> int:
        """Batches sent but not yet committed."""
        with self._lock:
            return self.ledger.in_flight()

    def deliver(self, batch: Batch) -> None:
        """Send the batch; keep at most ``max_in_flight`` batches unacknowledged."""
        try:
            item = _InFlight(batch, send_batch(self._producer_(), self._topics, batch,
                                               self._internals))  # fmt: skip
        # Raised by send() itself (e.g. a metadata timeout), or no new producer could be
        # made (the broker is down): the batch fails like one whose sends failed.
        except (KafkaError, KafkaUnavailableError) as exc:
            item = _InFlight(batch, [], exc)
        with self._lock:
            self.ledger.sent(item)
        while self.ledger.unacknowledged() > self._max_in_flight:
            head = self.ledger.oldest()
            if head is None or not self._settle_head(head.sent_at + self._ack_timeout_s + 0.1):
                break

    def settle(self) -> None:
        """Take every acknowledged batch at the head (rewind at a failed or overdue one),
        and commit them when the interval has passed; never waits."""
        if self._commit_error is not None:
            error, self._commit_error = self._commit_error, None
            raise error
        while (head := self.ledger.oldest()) is not None and (
            head.error or head.done() or self._overdue(head)
        ):
            if not self._settle_head(time.monotonic()):
                break
        self._commit_async()

    def _overdue(self, item: _InFlight) -> bool:
        return time.monotonic() - item.sent_at > self._ack_timeout_s

    def drain(self, timeout_s: float) -> bool:
        """Wait for every batch in flight and commit it, until ``timeout_s`` runs out."""
        deadline = time.monotonic() + timeout_s
        while self.ledger.unacknowledged():
            if time.monotonic() >= deadline or not self._settle_head(deadline):
                break
        # What is acknowledged is committed even when a later batch ran out of time.
        return self._commit_now() and not self.ledger.unacknowledged()

    def _settle_head(self, deadline: float) -> bool:
        """Take the oldest batch once acknowledged, or rewind; False when it could not
        be settled by ``deadline``."""
        with self._lock:
            head = self.ledger.oldest()
            if head is None:
                return True
            if head.error is None and not head.wait(deadline):
                if not self._overdue(head):
                    return False
                # The producer owes an answer it should have given by now (its delivery
                # timeout has passed): count the batch as failed and send it again.
                head.error = KafkaTimeoutError(
                    f"sends not acknowledged within {self._ack_timeout_s:g} s"
                )
            error = head.error or head.failure()
            if error is not None:
                self._rewind(error)
            else:
                self.ledger.acknowledged()
        return True

    def _commit_async(self) -> None:
        """Send one commit of every acknowledged batch, unless one is in flight or the
        interval has not passed."""
        with self._lock:
            now = time.monotonic()
            if now < self._next_commit_at:
                return
            commit = self.ledger.start_commit()
            if commit is None:
                return
            self._next_commit_at = now + self._commit_interval_s
        self._fault("before_commit")

        def answered(_offsets: Offsets, response: Any) -> None:
            self._commit_answered(commit, response)

        self._consumer.commit_async(commit_offsets(commit.offsets), callback=answered)

    def _commit_answered(self, commit: Commit[_InFlight], response: Any) -> None:
        # kafka-python runs this inside a later poll() or commit, on the calling thread.
        # A stale answer (taken over by a revocation or a drain, which report these
        # batches, or dropped with partitions lost) is not acted on.
        with self._lock:
            if isinstance(response, BaseException):
                if self.ledger.commit_failed(commit):
                    self._commit_failed(response)
                return
            if not self.ledger.commit_succeeded(commit):
                return
            if self._commits_failing:
                log.info("commits succeed again, after %d failed", self._commits_failing)
                self._commits_failing = 0
        for item in commit.batches:
            self._on_committed(item.batch)
        self._fault("after_commit")

    def _commit_failed(self, error: BaseException) -> None:
        if isinstance(error, GROUP_MOVED_ERRORS):
            # The next poll rejoins; the revocation then commits these offsets.
            log.warning("commit deferred to the rebalance: %s", error)
        elif isinstance(error, KafkaError) and error.retriable:
            # The coordinator is out of reach (a broker restarting): tried again later,
            # every ~100 ms, and said once.
            if self._commits_failing == 0:
                log.warning("commit failed (%s: %s); trying again until it succeeds",
                            type(error).__name__, error)  # fmt: skip
            self._commits_failing += 1
        else:
            self._commit_error = error
        self._next_commit_at = time.monotonic() + max(self._commit_interval_s, 0.1)

    def _commit_now(self) -> bool:
        """Commit every acknowledged batch synchronously (also those of a commit still
        in flight: committing an offset again changes nothing); False if it failed."""
        with self._lock:
            commit = self.ledger.take_acknowledged()
        if not commit.batches:
            return True
        self._fault("before_commit")
        try:
            self._consumer.commit(commit_offsets(commit.offsets))
        except KafkaError as exc:
            log.warning("commit failed (%s: %s); those batches will be read again",
                        type(exc).__name__, exc)  # fmt: skip
            return False
        with self._lock:
            self.ledger.committed_now(commit)
        for item in commit.batches:
            self._on_committed(item.batch)
        self._fault("after_commit")
        return True

    def _rewind(self, error: BaseException) -> None:
        dropped = self.ledger.unacknowledged()
        first = self.ledger.failed()
        seek_back(self._consumer, first)
        log.error(
            "sends failed (%s: %s): dropped %d batches in flight, back to %s; new producer",
            type(error).__name__, error, dropped,
            {f"{tp.topic}/{tp.partition}": o for tp, o in sorted(first.items())},
        )  # fmt: skip
        # An idempotent producer whose batch failed can be stuck in a fatal state (every
        # later send fails at once): start over with a new one, made for the next batch
        # (the broker may be down now, and a new producer must first reach it).
        old, self._producer = self._producer, None
        if old is not None:
            self._internals.discard(old)
        self._on_rewind(first, error)

    def _producer_(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

    def on_revoked(self) -> Offsets:
        """The offsets of every batch in hand whose sends are all acknowledged (those
        acknowledged before included, committed or not).

        Runs on the consumer's IO thread, whose heartbeats wait meanwhile: a batch not
        acknowledged within ``revoke_timeout_s`` is left uncommitted (read again).
        """
        deadline = time.monotonic() + self._revoke_timeout_s
        with self._lock:
            while (item := self.ledger.oldest()) is not None:
                if item.error or not item.wait(deadline) or item.failure() is not None:
                    self.ledger.forget()
                    break
                self.ledger.acknowledged()
            commit = self.ledger.take_acknowledged()
        for acked in commit.batches:
            self._on_committed(acked.batch)
        return commit_offsets(commit.offsets)

    def on_lost(self) -> None:
        """Forget the batches in hand: their partitions belong to another member now."""
        with self._lock:
            dropped = self.ledger.lost()
        if dropped:
            log.warning("partitions lost: %d batches in flight left uncommitted", dropped)

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Seek each kept partition back to its first forgotten offset (the consumer
        keeps its position in a partition it is given again, past those batches)."""
        with self._lock:
            back = self.ledger.reread(assigned)
        if back:
            seek_back(self._consumer, back)
            where = {f"{tp.topic}/{tp.partition}": o for tp, o in sorted(back.items())}
            log.info("reading forgotten batches again from %s", where)

    def close(self, timeout_s: float) -> None:
        """Close the producer (what it has not sent by then is dropped: never committed)."""
        if self._producer is not None:
            self._internals.discard(self._producer, timeout_s)


class ExactlyOnce:
    """One Kafka transaction per batch: outputs and offsets commit together.

    A transaction whose offsets the group refused (it moved on) is aborted and the batch
    read again. Any other failure is settled by starting over: a new producer with the
    same transactional id, whose initialisation completes or aborts the transaction left
    open, and the partitions sought back to their committed offsets. That covers sends
    that failed (the idempotent producer's sequence numbers have a gap), a broker outage
    (an abort would wait it out), a commit whose outcome is unknown, and a producer
    fenced because the coordinator aborted a transaction that outlived its timeout. A
    producer fenced again within ``FENCED_AGAIN_S`` of the last start-over stops the
    worker: another process is using the same transactional id (``instance_id`` and
    slot must be unique). Committed offsets that a start-over cannot fetch (a
    transaction a stopping broker left hanging) are freed by aborting what this
    producer id left open (:meth:`_abort_hanging`).
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        producer_factory: Callable[[], KafkaProducer],
        topics: DomainTopics,
        *,
        fault: FaultFn,
        on_committed: CommittedFn,
        on_rewind: RewindFn,
        flush_timeout_s: float,
        should_stop: Callable[[], bool] = lambda: False,
        retry_s: float = 1.0,
        internals: KafkaInternals | None = None,
    ) -> None:
        self._internals = internals if internals is not None else KafkaInternals()
        self._consumer = consumer
        self._producer_factory = producer_factory
        self._producer: KafkaProducer | None = producer_factory()
        self._topics = topics
        self._fault = fault
        self._on_committed = on_committed
        self._on_rewind = on_rewind
        self._flush_timeout_s = flush_timeout_s
        self._should_stop = should_stop
        self._retry_s = retry_s
        self._fenced_at: float | None = None
        # The batch in its transaction, and the offsets committed.
        self.ledger: DeliveryLedger[Batch] = DeliveryLedger()

    def in_flight(self) -> int:
        """0 between batches: a batch's transaction completes before the next poll."""
        return self.ledger.in_flight()

    def deliver(self, batch: Batch) -> None:
        """Write and commit the batch in one transaction; on failure, abort or start
        over, and read the batch again."""
        producer = self._producer
        if producer is None:  # a start-over interrupted by a stop
            return
        step = "write"
        self.ledger.sent(batch)
        try:
            producer.begin_transaction()
            futures = send_batch(producer, self._topics, batch, self._internals)
            # Flushed first so the transaction commit waits on nothing but the marker.
            producer.flush(timeout=self._flush_timeout_s)
            # kafka-python fails a send that ran out of retries (a broker outage past the
            # delivery timeout) without marking the transaction as failed, and would then
            # commit the offsets without those records: check every send first.
            failed = _InFlight(batch, futures).failure()
            if failed is not None:
                raise failed if isinstance(failed, KafkaError) else KafkaError(str(failed))
            step = "offsets"
            producer.send_offsets_to_transaction(
                commit_offsets(batch.next_offsets), self._group_member()
            )
            self._fault("before_commit")
            step = "commit"
            producer.commit_transaction()
        except ProducerFencedError as exc:
            self._fenced(exc)
            self._on_rewind(self.ledger.failed(), exc)
            return
        except KafkaError as exc:
            log.warning("transaction failed at its %s (%s: %s)", step, type(exc).__name__, exc)
            if step == "offsets" and isinstance(exc, GROUP_MOVED_ERRORS):
                # The group moved on: the transaction is sound, only refused its offsets.
                self._abort(batch)
            else:
                # Sends that failed leave the producer's sequence numbers with a gap, an
                # abort would wait out an outage, and a commit may have gone through:
                # start over from what the committed offsets say.
                self._start_over()
            self._on_rewind(self.ledger.failed(), exc)
            return
        self.ledger.acknowledged()
        self.ledger.committed_now(self.ledger.take_acknowledged())
        self._on_committed(batch)
        self._fault("after_commit")

    def _group_member(self) -> Any:
        """The consumer's group membership, to commit the offsets as (KIP-447 fencing).

        kafka-python resets it to "no generation" as soon as its heartbeat learns that
        the group moved on, until the member rejoins; a broker accepts a transactional
        commit with no generation into a group left empty, as from a consumer outside
        any group: a member frozen past its session would write and commit, from the
        positions it had, events that its successor already committed.
        """
        member = self._consumer.group_metadata()
        if member.generation_id < 0 or not member.member_id:
            raise CommitFailedError(
                "the consumer is out of its group until it rejoins: the batch is read again"
            )
        return member

    def _abort(self, batch: Batch) -> None:
        try:
            self._producer_().abort_transaction()
        except ProducerFencedError as fenced:
            self._fenced(fenced)
        except KafkaError as error:
            log.warning("the abort failed too (%s: %s)", type(error).__name__, error)
            self._start_over()
        else:
            log.info("transaction aborted; reading the batch again")
            seek_back(self._consumer, batch.first_offsets)

    def _fenced(self, exc: ProducerFencedError) -> None:
        self._fenced_again(exc)
        log.error("producer fenced: the coordinator aborted the transaction (it outlived its "
                  "timeout) or a newer instance took over (%s)", exc)  # fmt: skip
        self._start_over()

    def _fenced_again(self, exc: ProducerFencedError) -> None:
        """Stop the worker when fenced twice within ``FENCED_AGAIN_S``; else note when."""
        now = time.monotonic()
        if self._fenced_at is not None and now - self._fenced_at < FENCED_AGAIN_S:
            raise ProducerFencedOutError(
                f"producer fenced twice within {FENCED_AGAIN_S:g} s: another process uses "
                f"this transactional id (instance_id and slot must be unique) ({exc})"
            ) from exc
        self._fenced_at = now

    def _start_over(self) -> None:
        """A new producer, and every partition back at its committed offset; retried
        until it succeeds or a stop is requested (the broker may be down).

        Committed offsets that do not come (a transactional commit still pending on them:
        kafka-python retries ``UNSTABLE_OFFSET_COMMIT`` until its timeout) are first taken
        for a transaction of this producer id left hanging, and aborted
        (:meth:`_abort_hanging`, once per start-over); if they still do not come, another
        producer's transaction holds them, which its coordinator ends within its timeout.
        """
        old, self._producer = self._producer, None
        if old is not None:
            self._internals.discard(old)
        log.warning("starting over: a new transactional producer, then the committed offsets")
        sweep, swept = False, False
        while not self._should_stop():
            step = "producer"
            try:
                if self._producer is None:
                    # Completes or aborts the transaction the old producer left open.
                    self._producer = self._producer_factory()
                if sweep:
                    step = "sweep"
                    self._abort_hanging(self._producer)
                    sweep, swept = False, True
                step = "committed"
                where = back_to_committed(self._consumer, self._consumer.assignment(),
                                          timeout_ms=COMMITTED_TIMEOUT_MS)  # fmt: skip
            except (KafkaError, KafkaUnavailableError) as exc:
                log.warning("starting over failed at the %s (%s: %s); trying again in %g s",
                            step, type(exc).__name__, exc, self._retry_s)  # fmt: skip
                if isinstance(exc, ProducerFencedError):
                    # Another producer took this transactional id while starting over:
                    # the same guard as a fence in a batch (never a new producer forever).
                    self._fenced_again(exc)
                if step == "sweep" and self._producer is not None:
                    # Its state is unknown: the next producer's initialisation aborts
                    # the sweep's transaction, and the sweep is tried again.
                    old, self._producer = self._producer, None
                    self._internals.discard(old)
                elif step == "committed" and isinstance(exc, KafkaTimeoutError):
                    if not swept:
                        sweep = True
                    else:
                        log.error("the committed offsets stay unavailable after this producer "
                                  "aborted what it left open: another producer's transaction "
                                  "holds them (`kafka-transactions.sh find-hanging` lists a "
                                  "hanging one)")  # fmt: skip
                time.sleep(self._retry_s)
                continue
            log.info("started over from the committed offsets: %s", describe(where))
            return

    def _abort_hanging(self, producer: KafkaProducer) -> None:
        """Abort, with ``producer``'s new epoch, whatever its producer id left open on the
        output partitions and the group's offsets.

        A broker that stops while a transaction commits can write the transaction's
        completion to its log without its markers (seen with Kafka 4.3.1 under SIGTERM:
        ``CompleteCommit`` recorded, no marker in the output partitions nor in
        ``__consumer_offsets``). Its offset commit then stays pending for good (every
        committed-offset fetch of those partitions fails with ``UNSTABLE_OFFSET_COMMIT``)
        and its records hold back what read_committed readers see. The new producer's
        initialisation does not touch them (its coordinator thinks that transaction is
        over), but a marker of the same producer id ends whatever that id has open on a
        partition: a transaction that adds every output partition (one empty record each,
        under ``HANGING_SWEEP_HEADER``) and the group's offsets (none), then aborts,
        drops the hanging records and offset commit together; the batch is read again
        from the offsets committed before it. Harmless where nothing hangs.
        """
        topics = [self._topics.predictions, self._topics.dlq]
        if self._topics.shadow and self._topics.shadow in self._consumer.topics():
            topics.append(self._topics.shadow)
        log.warning("the committed offsets did not come: aborting whatever this producer id "
                    "left open on %s and the group's offsets", ", ".join(topics))  # fmt: skip
        producer.begin_transaction()
        futures = []
        for topic in topics:
            for partition in sorted(producer.partitions_for(topic)):
                header = [(HANGING_SWEEP_HEADER, b"")]
                futures.append(producer.send(topic, value=b"", partition=partition,
                                             headers=header))  # fmt: skip
        producer.flush(timeout=self._flush_timeout_s)
        failed = next((f.exception for f in futures if f.failed()), None)
        if isinstance(failed, KafkaError):
            raise failed
        if failed is not None or not all(f.is_done for f in futures):
            raise KafkaTimeoutError(f"the sweep's sends did not complete ({failed})")
        # No offsets: only the group's offsets partition joins the transaction.
        producer.send_offsets_to_transaction({}, self._consumer.config["group_id"])
        producer.abort_transaction()
        log.info("aborted what this producer id left open (%d output partitions and the "
                 "group's offsets)", len(futures))  # fmt: skip

    def _producer_(self) -> KafkaProducer:
        assert self._producer is not None
        return self._producer

    def settle(self) -> None:
        """Nothing to do: every batch is settled by its own transaction."""

    def drain(self, timeout_s: float) -> bool:
        """Nothing in hand between two batches."""
        return True

    def on_revoked(self) -> Offsets:
        """Nothing in hand: the transaction of the last batch is complete."""
        return {}

    def on_lost(self) -> None:
        """Nothing in hand."""

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing forgotten: an aborted batch was sought back already."""

    def close(self, timeout_s: float) -> None:
        """Close the producer (an open transaction is dropped, i.e. aborted)."""
        if self._producer is not None:
            self._internals.discard(self._producer, timeout_s)
