"""Every use of kafka-python's private internals, each a switchable shortcut.

The worker's hot path goes around kafka-python's public API in five places, each for a
gain measured below. A minor release of kafka-python may rename or reshape what they
rely on (faust broke so on kafka-python 2.0 and on aiokafka's minor releases), so all of
them live here, and each one:

- can be switched off (``WorkerSettings.kafka_shortcuts``, env
  ``INFERLOOP_WORKER__KAFKA_SHORTCUTS=coordinator_known,top_up`` or ``none``): the
  worker then takes the public API for it;
- is checked before its first use: the private attributes and methods it needs must
  exist with the parameters it calls them with. Where they do not, the shortcut falls
  back to the public API, with one WARNING and
  ``inferloop_worker_kafka_shortcut_fallback_total{shortcut}`` counted, never a crash.

The shapes checked are those of kafka-python 3.0.12 (pinned to that release in
pyproject.toml); ``tests/worker/test_kafka_internals.py`` holds each shortcut to its
public path and checks the checks. The gains, from the commits that introduced each
shortcut (figures on this 2-core machine, against the local broker):

``coordinator_known`` (3001647)
    kafka-python 3.0's ``poll()`` asks its IO thread, and waits, whether the group's
    coordinator is known, though the consumer's own state says so. At the transactions
    half load (9,900 msg/s) the loop asked 45-100 times a second and waited 27-35 ms of
    every second for an answer that was always "known". The shortcut reads the
    coordinator's node and its connection on the caller's thread and asks only when the
    answer is not "known". Latency moved within its spread (p99 medians 165 and 126 ms
    without, 148 and 200 with); it is kept for the loop's time it frees (3 % of every
    second at half load) at the cost of two private reads.
``fetches_in_flight`` (3001647)
    Likewise ``poll()`` asks the IO thread to send fetches though one is in flight to
    every broker it reads from. Skipping that question when the fetcher's own state says
    so made a poll that finds nothing to read cost 273-383 us of CPU instead of 608-675
    (both handoff shortcuts together, three alternating rounds of 2,000 polls). It
    matters at low rates, where most polls find nothing (at 500 msg/s a worker keeps
    0.70-0.78 of a core busy mostly polling); at high rates the fetch a poll sent has
    always been answered by the next one. Kept for that CPU, the risk being one more
    private read (a stale read is harmless: see :meth:`KafkaInternals.spare_handoffs`).
    Measured again through this adapter on 2026-12-07 (both handoff shortcuts on or
    off, five alternating rounds of 2,000 idle polls, the process's CPU, on the 2-core
    machine at a load average of 10): 182-245 us a poll (median 231) against 285-393
    (median 331).
``top_up`` (754d0b8)
    kafka-python sends the next fetch as soon as ``poll()`` hands out records, and the
    broker answers at once, so what arrives while a batch is scored waits a loop turn
    more (about 2.5 loop turns of latency instead of 1.5). The shortcut takes that answer
    from the fetcher (``fetch_records``) right after the poll, with no group duties in
    between, so every record in hand still belongs to an assigned partition. The commit
    gave no separate figure. Public path: no top-up (a second ``poll()`` could run a
    rebalance between the two reads).
``batch_append`` (4ea0d13)
    ``send()`` checks and prepares each record on its own, though every answer is the
    same for a batch of predictions: they are settled once and each record handed to the
    accumulator. A send took 22-27 us, the append alone 16-19 us; one transactions worker
    went from 14,470 to 17,461 msg/s at-least-once and from 12,043 to 14,200
    exactly-once (medians of three alternating pairs; emails within the spread). Public
    path: ``send()`` per record, with its partition. Measured again on 2026-12-07 at a
    load average of 10 on 2 cores (five alternating rounds of 20,000 records, the
    process's CPU): 20.0-25.1 us a record (median 21.6) against 23.0-31.4 (median
    24.4), within each other's spread there; kept for the full-speed rates above.
``force_close`` (6130fd3)
    Not a speed-up: a fix. ``KafkaProducer.close()`` flushes first and raises
    ``KafkaTimeoutError`` when sends are still pending, before it stops its sender
    thread, which then retries them for good; a worker rewinding during a broker outage
    died of it. The shortcut stops the sender as ``close()`` does past its timeout.
    Public path: ``close()`` with that error suppressed: the old producer's sender thread
    lives on until its sends expire (``delivery_timeout_ms``), holding its buffers.
    Replay (``inferloop/domains/replay.py``) closes its producer this way too when it
    stops or fails before every send is acknowledged.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import crc32c
import kafka.record.util as record_util
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import IllegalStateError, KafkaTimeoutError
from prometheus_client import CollectorRegistry, Counter

from inferloop.settings import KAFKA_SHORTCUTS, KafkaShortcut

log = logging.getLogger(__name__)

Polled = dict[TopicPartition, list[Any]]


def _missing(obj: object, path: str, params: Sequence[str] | None = None) -> str | None:
    """What is wrong with ``obj.<path>`` (a dotted path), or None: it must exist and, with
    ``params``, be callable with those parameter names."""
    target: Any = obj
    for name in path.split("."):
        if not hasattr(target, name):
            return f"{type(obj).__name__}.{path}: no {name}"
        target = getattr(target, name)
    if params is None:
        return None
    if not callable(target):
        return f"{type(obj).__name__}.{path} is not callable"
    try:
        names = set(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return f"{type(obj).__name__}.{path}: no signature"
    if absent := [p for p in params if p not in names]:
        return f"{type(obj).__name__}.{path} takes no {', '.join(absent)}"
    return None


def _first(*problems: str | None) -> str | None:
    return next((p for p in problems if p is not None), None)


def _coordinator_known(consumer: Any) -> str | None:
    return _first(
        _missing(consumer, "_coordinator.ensure_coordinator_ready", ("timeout_ms",)),
        _missing(consumer, "_coordinator.coordinator_id"),
        _missing(consumer, "_coordinator._client.connected", ("node_id",)),
    )


def _fetches_in_flight(consumer: Any) -> str | None:
    problem = _first(
        _missing(consumer, "_fetcher.send_fetches", ()),
        _missing(consumer, "_fetcher._nodes_with_pending_fetch_requests"),
        _missing(consumer, "_fetcher._select_read_replica", ("tp",)),
        _missing(consumer, "_fetcher._fetchable_partitions", ()),
    )
    pending = getattr(getattr(consumer, "_fetcher", None), "_nodes_with_pending_fetch_requests", 0)
    return problem or (None if isinstance(pending, set) else "its pending fetches are no set")


def _top_up(consumer: Any) -> str | None:
    return _missing(
        consumer, "_fetcher.fetch_records", ("max_records", "update_offsets", "timeout_ms")
    )


def _batch_append(producer: Any) -> str | None:
    return _first(
        _missing(producer, "_closed"),
        _missing(producer, "_estimate_size_in_bytes", ("key", "value", "headers")),
        _missing(producer, "_ensure_valid_record_size", ("size",)),
        _missing(producer, "_transaction_manager"),
        _missing(producer, "_accumulator.append", ("tp", "timestamp_ms", "key", "value")),
        _missing(producer, "_sender.wakeup", ()),
    )


def _force_close(producer: Any) -> str | None:
    return _first(
        _missing(producer, "_sender.force_close", ()),
        _missing(producer, "_sender.join", ("timeout",)),
    )


def crc32c_in_use() -> bool:
    """Whether kafka-python checksums record batches with the C ``crc32c`` package
    (without it every kafka-python figure drops four- to sevenfold).

    Not a shortcut, a check (the bench records it, a test holds it): it reads the
    checksum function kafka-python chose at import. Where that name is gone, it times one
    checksum of 1 MiB instead: the C package takes well under a millisecond, kafka-python's
    pure-Python one a tenth of a second or more.
    """
    chosen = getattr(record_util, "_crc32c", None)
    if chosen is not None:
        return chosen is crc32c.crc32c
    started = time.perf_counter()
    record_util.calc_crc32c(bytes(1 << 20))
    return time.perf_counter() - started < 0.02


# What each shortcut needs, checked on the first client it is used with.
SHAPES: dict[KafkaShortcut, Callable[[Any], str | None]] = {
    "coordinator_known": _coordinator_known,
    "fetches_in_flight": _fetches_in_flight,
    "top_up": _top_up,
    "batch_append": _batch_append,
    "force_close": _force_close,
}


class KafkaInternals:
    """The shortcuts in use, checked once each; the public API where one is off or its
    shape check failed.

    One per worker. Shapes belong to kafka-python's release, not to a client, so each is
    checked on the first client it is used with and the answer kept.
    """

    def __init__(
        self,
        enabled: Iterable[KafkaShortcut] = KAFKA_SHORTCUTS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.enabled = frozenset(enabled)
        self._usable: dict[KafkaShortcut, bool] = {}
        self.fallbacks = Counter(
            "inferloop_worker_kafka_shortcut_fallback",
            "Shortcuts into kafka-python's internals whose shape check failed: the public "
            "API is used instead",
            ["shortcut"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    def usable(self, shortcut: KafkaShortcut, client: object) -> bool:
        """Whether ``shortcut`` is switched on and kafka-python has what it needs (checked
        on ``client`` the first time; a failed check warns once and is counted)."""
        if shortcut not in self.enabled:
            return False
        known = self._usable.get(shortcut)
        if known is None:
            problem = SHAPES[shortcut](client)
            known = self._usable[shortcut] = problem is None
            if problem is not None:
                log.warning("kafka-python shortcut %s off: %s (the public API is used instead)",
                            shortcut, problem)  # fmt: skip
                self.fallbacks.labels(shortcut).inc()
        return known

    def check_consumer(self, consumer: KafkaConsumer) -> None:
        """Check the consumer's shortcuts now (at start), and apply the per-poll ones."""
        self.usable("top_up", consumer)
        self.spare_handoffs(consumer)

    def check_producer(self, producer: KafkaProducer) -> None:
        """Check the producer's shortcuts now (at start)."""
        self.usable("batch_append", producer)
        self.usable("force_close", producer)

    # -- coordinator_known, fetches_in_flight ---------------------------------------------
    def spare_handoffs(self, consumer: KafkaConsumer) -> None:
        """Answer ``consumer``'s two per-poll questions to its IO thread on the caller's
        thread when its state already does; ask the IO thread only otherwise.

        A read that is stale by the time it is used costs nothing: a fetch answered just
        after the check is drained by this poll (kafka-python wakes at once on a finished
        fetch) and followed by a new one on the next.
        """
        if self.usable("coordinator_known", consumer):
            coordinator = consumer._coordinator
            ask_coordinator = coordinator.ensure_coordinator_ready

            def ensure_coordinator_ready(timeout_ms: int | None = None) -> bool:
                node = coordinator.coordinator_id
                if node is not None and coordinator._client.connected(node):
                    return True
                return bool(ask_coordinator(timeout_ms=timeout_ms))

            coordinator.ensure_coordinator_ready = ensure_coordinator_ready
        if self.usable("fetches_in_flight", consumer):
            fetcher = consumer._fetcher
            ask_fetches = fetcher.send_fetches

            def send_fetches() -> list[Any]:
                if _fetching_from_every_leader(fetcher):
                    return []
                return list(ask_fetches())

            fetcher.send_fetches = send_fetches

    # -- top_up -----------------------------------------------------------------------------
    def fetched(self, consumer: KafkaConsumer, max_records: int, timeout_ms: int) -> Polled:
        """Up to ``max_records`` records of the fetch the last poll sent, waiting at most
        ``timeout_ms`` for its answer (their positions moved past them); none on the
        public path."""
        if not self.usable("top_up", consumer):
            return {}
        more, _ = consumer._fetcher.fetch_records(
            max_records, update_offsets=True, timeout_ms=timeout_ms
        )
        return dict(more)

    # -- batch_append -----------------------------------------------------------------------
    def append_records(
        self,
        producer: KafkaProducer,
        topic: str,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        partitions: Sequence[int],
    ) -> list[Any]:
        """Send each ``(key, value)`` to ``topic`` at its partition: one future per
        record, in order. Raises what ``send()`` raises (closed producer, unknown topic, a
        record past ``max_request_size``), and ValueError for a partition the topic does
        not have; with the shortcut, before any record of the batch is appended (on the
        public path the records before a refused one are sent: read again, they are
        duplicates at-least-once allows and an aborted transaction drops)."""
        shortcut = self.usable("batch_append", producer)
        if shortcut and producer._closed:
            raise IllegalStateError("KafkaProducer already closed!")
        if not keys:
            return []
        known = producer.partitions_for(topic)
        if known is None:
            raise KafkaTimeoutError(f"no metadata for topic {topic!r}")
        tps = {p: TopicPartition(topic, p) for p in set(partitions)}
        if unknown := set(tps) - known:
            raise ValueError(
                f"partitions {sorted(unknown)} are not among {topic!r}'s {sorted(known)}"
            )
        if shortcut:
            return _append(producer, tps, keys, values, partitions)
        return [
            producer.send(topic, value=value, key=key, partition=partition)
            for key, value, partition in zip(keys, values, partitions, strict=True)
        ]

    # -- force_close ------------------------------------------------------------------------
    def discard(self, producer: KafkaProducer, timeout_s: float = 0.0) -> None:
        """Close ``producer`` within ``timeout_s``, dropping the sends it still holds
        (their batches are read again)."""
        try:
            producer.close(timeout=timeout_s)
        except KafkaTimeoutError:
            # close() flushed first and raised before it stopped its sender thread.
            if not self.usable("force_close", producer):
                log.warning("producer closed with sends pending: its sender thread lives "
                            "until they expire (shortcut force_close off)")  # fmt: skip
                return
            sender = producer._sender
            sender.force_close()
            sender.join(5.0)
            with contextlib.suppress(KafkaTimeoutError):
                producer.close(timeout=0)


def _fetching_from_every_leader(fetcher: Any) -> bool:
    """Whether a fetch is in flight to the broker of every partition the fetcher would
    fetch now: then ``send_fetches`` would send nothing."""
    pending = fetcher._nodes_with_pending_fetch_requests
    if not pending:
        return False
    try:
        leaders = {fetcher._select_read_replica(tp) for tp in fetcher._fetchable_partitions()}
    except KeyError:  # a partition revoked between the two reads: let the IO thread see
        return False
    return bool(leaders <= pending)


def _append(
    producer: Any,
    tps: dict[int, TopicPartition],
    keys: Sequence[bytes],
    values: Sequence[bytes],
    partitions: Sequence[int],
) -> list[Any]:
    """``send()``'s checks settled once for the batch, then each record handed to the
    accumulator, the step that ``send()`` ends with."""
    # The size is checked the way send() checks it, on the longest key and value.
    longest = producer._estimate_size_in_bytes(max(keys, key=len), max(values, key=len), [])
    producer._ensure_valid_record_size(longest)
    manager = producer._transaction_manager
    if manager is not None and manager.is_transactional():
        for tp in tps.values():
            manager.maybe_add_partition_to_transaction(tp)
    append = producer._accumulator.append
    wakeup = producer._sender.wakeup
    no_headers: list[tuple[str, bytes]] = []
    futures = []
    for key, value, partition in zip(keys, values, partitions, strict=True):
        future, batch_is_full, new_batch_created, _ = append(
            tps[partition], None, key, value, no_headers
        )
        # As send() does: the sender sleeps until a batch is full or a new one starts.
        if batch_is_full or new_batch_created:
            wakeup()
        futures.append(future)
    return futures
