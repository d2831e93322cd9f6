"""The worker: poll a batch, validate, score once, produce, commit; repeat.

:class:`Worker` is a function a test can call: ``Worker(settings, "transactions",
limits=RunLimits(max_messages=1000, idle_timeout_s=5)).run()`` returns when the limit
is reached, the stream stays idle, or a stop is requested.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from threadpoolctl import threadpool_limits

from inferloop.connections import make_consumer, make_producer
from inferloop.domains import get_domain
from inferloop.domains.trees import COMPILE_FALLBACKS
from inferloop.httpserve import BackgroundHTTPServer
from inferloop.kafka_internals import KafkaInternals
from inferloop.registry import Registry
from inferloop.settings import Domain, Settings
from inferloop.topics import DomainTopics, consumer_group, for_settings
from inferloop.worker.attempts import AttemptCounter
from inferloop.worker.batch import Batch, BatchProcessor, batch_of
from inferloop.worker.delivery import AtLeastOnce, Delivery, ExactlyOnce
from inferloop.worker.errors import TopicMissingError
from inferloop.worker.faults import FaultHook
from inferloop.worker.fetch import top_up
from inferloop.worker.health import HealthState, health_server
from inferloop.worker.metrics import WorkerMetrics
from inferloop.worker.model import ActiveModel, ModelKeeper
from inferloop.worker.rebalance import RebalanceHandler
from inferloop.worker.shadow import (
    SHADOW_MAX_BLOCK_MS,
    BestEffortProducer,
    ShadowGate,
    ShadowOutput,
)
from inferloop.worker.signals import StopRequest, start_watchdog

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0


@dataclass(frozen=True)
class RunLimits:
    """A bounded run for tests and scripts: stop after this many messages, or idle time."""

    max_messages: int | None = None
    idle_timeout_s: float | None = None


@dataclass
class RunSummary:
    """What one run did."""

    consumed: int = 0
    predicted: int = 0
    dead_lettered: int = 0
    batches: int = 0
    versions: set[int] = field(default_factory=set)
    stopped_because: str = ""
    # From the subscription to the end, and to the first record: the difference is
    # the time spent on records (group join and an empty topic excluded).
    elapsed_s: float = 0.0
    first_record_s: float = 0.0
    # From the subscription to the moment everything consumed was committed.
    drained_s: float = 0.0


def transactional_id(settings: Settings, domain: str, slot: int) -> str:
    """``inferloop-<domain>-<instance id>-<slot>`` (after the topic prefix, like the group)."""
    return f"{settings.topics.prefix}inferloop-{domain}-{settings.worker.instance_id}-{slot}"


class Worker:
    """One worker process's loop over one domain's topic, in the domain's consumer group."""

    def __init__(
        self,
        settings: Settings,
        domain: Domain,
        *,
        slot: int = 0,
        limits: RunLimits | None = None,
        install_signals: bool = False,
        supervised: bool = False,
        metrics_port: int | None = None,
        registry_factory: Callable[[Settings], Registry] = Registry.from_settings,
    ) -> None:
        self.settings = settings
        self.domain = domain
        self.slot = slot
        self.limits = limits or RunLimits()
        self.spec = get_domain(domain)
        self.topics: DomainTopics = for_settings(settings, domain)
        self.stop = StopRequest()
        self.metrics = WorkerMetrics(domain)
        self._internals = KafkaInternals(
            settings.worker.kafka_shortcuts, registry=self.metrics.registry
        )
        self.metrics.registry.register(COMPILE_FALLBACKS)  # counted where models compile
        ws = settings.worker
        self.health = HealthState(domain, max_loop_gap_s=ws.max_poll_interval_ms / 1000)
        self.summary = RunSummary()
        self._install_signals = install_signals
        self._supervised = supervised
        self._parent_pid = os.getppid()
        if metrics_port is None:
            # 0 asks for any free port, for every slot alike.
            metrics_port = ws.metrics_port + slot if ws.metrics_port else 0
        self._metrics_port = metrics_port
        self._fault = FaultHook.parse(ws.fault)
        self._keeper = ModelKeeper(settings, self.spec, self.metrics, self.health,
                                   registry_factory)  # fmt: skip
        self._name = f"{ws.instance_id}-{slot}"
        # At-least-once, shadow records have a producer of their own (see worker.shadow).
        self._shadow_producer = (
            BestEffortProducer(self._make_shadow_producer, self._internals.discard)
            if ws.delivery == "at-least-once"
            else None
        )
        # Exactly-once, shadow records join a transaction only while their topic is there.
        self._shadow_gate = (
            ShadowGate(
                self.topics.shadow, self._shadow_topic_present, self.metrics, ws.shadow_sample
            )
            if ws.delivery == "exactly-once" and ws.shadow_sample > 0
            else None
        )
        self._processor = self._make_processor(shadow=ws.shadow_sample > 0)
        self._consumer: KafkaConsumer | None = None
        self._delivery: Delivery | None = None
        self._attempts: AttemptCounter | None = None
        self._server: BackgroundHTTPServer | None = None
        self._assigned: set[TopicPartition] = set()
        self._last_record_at = time.monotonic()
        self._started_at = time.monotonic()
        self._next_progress = time.monotonic() + PROGRESS_EVERY_S

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run until a stop, the limits, or an error; always closes what it opened."""
        log.info("worker %s starting: domain=%s delivery=%s group=%s",
                 self._name, self.domain, self.settings.worker.delivery,
                 consumer_group(self.settings, self.domain))  # fmt: skip
        try:
            with threadpool_limits(self.settings.worker.scoring_threads):
                self._open()
                if self._keeper.wait_for_champion(self._should_end) is None:
                    self.summary.stopped_because = self.stop.reason or "stopped"
                    return self.summary
                self._subscribe()
                while not self._should_end():
                    batch = self._poll()
                    if batch is not None:
                        self._handle(batch)
                    self._delivery_().settle()
                    self._swap_model()
                    self._observe()
                self._finish()
        finally:
            self._close()
        return self.summary

    @property
    def http_port(self) -> int | None:
        """The port of the metrics and health endpoint, once it is serving."""
        return self._server.port if self._server is not None else None

    def request_stop(self, reason: str = "requested") -> None:
        """Stop after the batch in hand (what the first SIGTERM does)."""
        self.stop.request(reason)

    # -- steps -----------------------------------------------------------------------------
    def _open(self) -> None:
        self.health.state = "starting"
        if self._install_signals:
            self.stop.install(supervised=self._supervised)
            start_watchdog(self.stop, self.settings.worker.shutdown_grace_s)
        self._server = health_server(self.settings.worker.metrics_host, self._metrics_port,
                                    self.metrics, self.health)  # fmt: skip
        self._server.start()
        log.info("metrics and health on http://%s:%d/metrics",
                 self.settings.worker.metrics_host, self._server.port)  # fmt: skip
        self._consumer = self._make_consumer()
        self._check_topics(self._consumer)
        self._attempts = AttemptCounter(self.settings, self.domain, self.metrics)
        self._delivery = self._make_delivery(self._consumer)
        self.health.state = "waiting_for_champion"

    def _subscribe(self) -> None:
        consumer = self._consumer_()
        handler = RebalanceHandler(
            consumer, self._delivery_(), self._assignment_changed, self._name
        )
        consumer.subscribe([self.topics.events], listener=handler)
        self._keeper.start()
        # Everything loaded so far (the model, the libraries) lives as long as the
        # process: out of the cyclic collector's sight, whose full passes over it
        # stalled the loop for ~100 ms every few seconds.
        gc.collect()
        gc.freeze()
        self.health.state = "running"
        self._started_at = self._last_record_at = time.monotonic()
        log.info("worker %s consuming %s with %s v%s", self._name, self.topics.events,
                 self.domain, self._model().version)  # fmt: skip

    def _poll(self) -> Batch | None:
        ws = self.settings.worker
        wanted = ws.max_batch_size
        if self.limits.max_messages is not None:
            wanted = min(wanted, self.limits.max_messages - self.summary.consumed)
        wanted = max(wanted, 1)
        consumer = self._consumer_()
        try:
            polled = consumer.poll(timeout_ms=ws.poll_timeout_ms, max_records=wanted)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            # The broker is out of reach (kafka-python lets a failed coordinator lookup
            # out of poll()): wait a little and poll again; nothing is in hand.
            log.warning("poll failed (%s: %s); polling again", type(exc).__name__, exc)
            self.metrics.errors.labels(self.domain, "poll").inc()
            time.sleep(ws.poll_timeout_ms / 1000)
            return None
        if polled and ws.top_up_ms:
            polled = top_up(consumer, polled, wanted, ws.top_up_ms, self._internals)
        if not polled:
            return None
        self._last_record_at = time.monotonic()
        if not self.summary.batches:
            self.summary.first_record_s = self._last_record_at - self._started_at
        return batch_of(polled)

    def _handle(self, batch: Batch) -> None:
        model = self._model()
        attempts = self._attempts_().begin(batch)
        give_up = None
        if attempts > self.settings.worker.max_scoring_attempts:
            give_up = (
                f"batch read {attempts} times without being committed "
                f"(limit {self.settings.worker.max_scoring_attempts}); dead-lettered unscored"
            )
            log.error("batch at %s %s", _starts(batch), give_up)
        self._processor.process(batch, model, give_up=give_up,
                                challenger=self._shadowed(batch))  # fmt: skip
        self._delivery_().deliver(batch)
        self._record(batch)

    def _shadowed(self, batch: Batch) -> ActiveModel | None:
        """The challenger to score beside the champion: none while the shadow topic is
        missing under exactly-once (see worker.shadow)."""
        challenger, gate = self._keeper.challenger, self._shadow_gate
        if challenger is None or gate is None or gate.open():
            return challenger
        gate.dropped([r.key for r in batch.records])
        return None

    def _swap_model(self) -> None:
        if self._keeper.take_swap() is not None:
            self.summary.versions.add(self._model().version)
            # The new model's objects join the frozen heap (the old model's go by
            # reference counting: a fitted pipeline holds no reference cycles).
            gc.freeze()

    def _should_end(self) -> bool:
        if self.stop.requested:
            return True
        if self._supervised and os.getppid() != self._parent_pid:
            self.stop.request("the supervisor is gone")
            return True
        limits = self.limits
        if limits.max_messages is not None and self.summary.consumed >= limits.max_messages:
            self.stop.request(f"max_messages={limits.max_messages} reached")
            return True
        idle_s = time.monotonic() - self._last_record_at
        if limits.idle_timeout_s is not None and idle_s >= limits.idle_timeout_s:
            self.stop.request(f"idle for {limits.idle_timeout_s:g} s")
            return True
        return False

    def _finish(self) -> None:
        """Stop polling; finish and commit the batches in hand within the grace period."""
        self.health.state = "stopping"
        grace_s = self.settings.worker.shutdown_grace_s
        remaining_s = max(grace_s - (time.monotonic() - self.stop.at), 1.0)
        log.info("worker %s stopping (%s): finishing %d batches in flight",
                 self._name, self.stop.reason, self._delivery_().in_flight())  # fmt: skip
        if not self._delivery_().drain(remaining_s * 0.8):
            log.error("batches still unacknowledged at shutdown; they will be read again")
        self.summary.drained_s = time.monotonic() - self._started_at
        self.summary.stopped_because = self.stop.reason

    def _close(self) -> None:
        self.health.state = "stopped"
        self._keeper.stop()
        ws = self.settings.worker
        timeout_s = min(ws.shutdown_grace_s, 10.0)
        if self._consumer is not None:
            self._consumer.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
        if self._delivery is not None:
            self._delivery.close(timeout_s)
        if self._shadow_producer is not None:
            self._shadow_producer.close(timeout_s)
        if self._attempts is not None:
            self._attempts.close()
        if self._server is not None:
            self._server.stop()
        self.summary.elapsed_s = time.monotonic() - self._started_at
        s = self.summary
        log.info(
            "worker %s finished: consumed=%d predicted=%d dead_lettered=%d batches=%d "
            "versions=%s elapsed_s=%.2f reason=%s",
            self._name, s.consumed, s.predicted, s.dead_lettered, s.batches,
            sorted(s.versions), s.elapsed_s, s.stopped_because or "error",
        )  # fmt: skip

    # -- bookkeeping -------------------------------------------------------------------------
    def fire(self, point: str) -> None:
        """Pass a fault point (a test hook; nothing happens unless one is armed)."""
        if self._fault is not None:
            self._fault.fire(point)

    def _record(self, batch: Batch) -> None:
        n = len(batch)
        predicted = len(batch.predictions)
        s = self.summary
        s.consumed += n
        s.predicted += predicted
        s.dead_lettered += len(batch.dead_letters)
        s.batches += 1
        if batch.version is not None:
            s.versions.add(batch.version)
        m, d = self.metrics, self.domain
        m.events.labels(d).inc(n)
        m.batch_size.labels(d).observe(n)
        m.scoring_seconds.labels(d).observe(batch.scoring_s)
        if predicted and batch.version is not None:
            m.count_predictions(batch.version, batch.positives, predicted, self.spec.label_names)
        for letter in batch.dead_letters:
            m.dead_letters.labels(d, letter.reason).inc()
        if batch.record_timestamps_ms is not None:
            m.end_to_end.observe_many(time.time() - batch.record_timestamps_ms / 1000.0)
        log.debug(
            "batch=%d size=%d version=%s predicted=%d dead_lettered=%d scoring_ms=%.1f "
            "starts=%s",
            s.batches, n, batch.version, predicted, len(batch.dead_letters),
            batch.scoring_s * 1000, _starts(batch),
        )  # fmt: skip

    def _committed(self, batch: Batch) -> None:
        if self._attempts is not None:
            self._attempts.done(batch)
        self.metrics.batch_seconds.labels(self.domain).observe(time.monotonic() - batch.polled_at)

    def _observe(self) -> None:
        self.health.turned()
        now = time.monotonic()
        if now < self._next_progress:
            return
        self._next_progress = now + PROGRESS_EVERY_S
        self._attempts_().flush()
        consumer = self._consumer_()
        for tp in self._assigned:
            high = consumer.highwater(tp)
            if high is not None:
                try:
                    position = consumer.position(tp, timeout_ms=100)
                except Exception:  # the partition may be mid-rebalance; skip it this time
                    log.debug("no position for %s", tp, exc_info=True)
                    continue
                self.metrics.lag.labels(self.domain, str(tp.partition)).set(max(high - position, 0))
        s = self.summary
        log.info(
            "progress: consumed=%d predicted=%d dead_lettered=%d batches=%d version=%s "
            "partitions=%d rate_per_s=%.0f",
            s.consumed, s.predicted, s.dead_lettered, s.batches, self._model().version,
            len(self._assigned), s.consumed / max(now - self._started_at, 1e-9),
        )  # fmt: skip

    def _assignment_changed(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            # Idle time counts from when there is something to read.
            self._last_record_at = time.monotonic()
            self._attempts_().resumed(assigned)
        self._assigned = assigned
        self.health.partitions = len(assigned)
        self.metrics.partitions.labels(self.domain).set(len(assigned))

    def _rewound(self, offsets: dict[TopicPartition, int], error: BaseException) -> None:
        # Not counted as an attempt: Kafka failed, not the batch, whose events must not be
        # dead-lettered for it.
        if self.settings.worker.delivery == "exactly-once":
            self.metrics.errors.labels(self.domain, "transaction_abort").inc()
            if self._shadow_gate is not None:
                self._shadow_gate.recheck()  # a deleted shadow topic fails transactions
        else:
            self.metrics.errors.labels(self.domain, "send").inc()
            # A broker that refuses everything must not turn the loop into a busy spin.
            time.sleep(0.5)

    # -- clients -----------------------------------------------------------------------------
    def _make_consumer(self) -> KafkaConsumer:
        ws = self.settings.worker
        consumer = make_consumer(
            self.settings.kafka,
            group_id=consumer_group(self.settings, self.domain),
            client_id=f"{self.settings.kafka.client_id}-worker-{self.domain}-{self.slot}",
            enable_auto_commit=False,
            auto_offset_reset=ws.auto_offset_reset,
            allow_auto_create_topics=False,
            # Transactional outputs of aborted batches, and the offsets of a transaction
            # still open, must never be read as if committed.
            isolation_level="read_committed",
            max_poll_records=ws.max_batch_size,
            max_partition_fetch_bytes=ws.fetch_partition_bytes,
            fetch_min_bytes=ws.fetch_min_bytes,
            fetch_max_wait_ms=ws.fetch_max_wait_ms,
            max_poll_interval_ms=ws.max_poll_interval_ms,
            session_timeout_ms=ws.session_timeout_ms,
            heartbeat_interval_ms=ws.heartbeat_interval_ms,
        )
        self._internals.check_consumer(consumer)
        return consumer

    def _make_producer(self) -> KafkaProducer:
        ws = self.settings.worker
        options: dict[str, Any] = {
            "client_id": f"{self.settings.kafka.client_id}-worker-{self.domain}-{self.slot}",
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": ws.linger_ms,
            "batch_size": ws.producer_batch_bytes,
            "max_request_size": ws.max_request_size,
            "delivery_timeout_ms": self._delivery_timeout_ms(),
            "allow_auto_create_topics": False,
        }
        if ws.delivery == "exactly-once":
            options["transactional_id"] = transactional_id(self.settings, self.domain, self.slot)
            options["transaction_timeout_ms"] = ws.transaction_timeout_ms
        producer = make_producer(self.settings.kafka, **options)
        self._internals.check_producer(producer)
        if ws.delivery == "exactly-once":
            # Fences any older instance of this slot and completes its open transaction.
            try:
                producer.init_transactions()
            except BaseException:
                self._internals.discard(producer)
                raise
            log.info("transactional producer %s ready", options["transactional_id"])
        return producer

    def _make_shadow_producer(self) -> KafkaProducer:
        """Best effort: not idempotent (no producer id a deleted topic can spoil), the
        leader's acknowledgement only, and a short wait for a topic's metadata."""
        ws = self.settings.worker
        producer = make_producer(
            self.settings.kafka,
            client_id=f"{self.settings.kafka.client_id}-shadow-{self.domain}-{self.slot}",
            acks=1,
            enable_idempotence=False,
            linger_ms=ws.linger_ms,
            batch_size=ws.producer_batch_bytes,
            max_request_size=ws.max_request_size,
            max_block_ms=SHADOW_MAX_BLOCK_MS,
            delivery_timeout_ms=self._delivery_timeout_ms(),
            allow_auto_create_topics=False,
        )
        self._internals.check_producer(producer)
        return producer

    def _delivery_timeout_ms(self) -> int:
        # A send must fail (and the batch be read again) before the group gives up on us.
        ws = self.settings.worker
        request_timeout_ms = self.settings.kafka.request_timeout_ms
        return max(ws.linger_ms + request_timeout_ms, min(120_000, ws.max_poll_interval_ms // 2))

    def _make_delivery(self, consumer: KafkaConsumer) -> Delivery:
        ws = self.settings.worker
        if ws.delivery == "exactly-once":
            return ExactlyOnce(consumer, self._make_producer, self.topics, fault=self.fire,
                               on_committed=self._committed, on_rewind=self._rewound,
                               flush_timeout_s=self._delivery_timeout_ms() / 1000 + 5.0,
                               should_stop=lambda: self.stop.requested,
                               internals=self._internals)  # fmt: skip
        return AtLeastOnce(
            consumer, self._make_producer, self.topics,
            max_in_flight=ws.max_in_flight_batches,
            commit_interval_s=ws.commit_interval_ms / 1000,
            # The producer answers every send within its delivery timeout; a margin more.
            ack_timeout_s=self._delivery_timeout_ms() / 1000 + 5.0,
            revoke_timeout_s=max(1.0, ws.session_timeout_ms / 2000),
            fault=self.fire, on_committed=self._committed, on_rewind=self._rewound,
            internals=self._internals,
        )  # fmt: skip

    def _make_processor(self, *, shadow: bool) -> BatchProcessor:
        ws = self.settings.worker
        output = None
        if shadow:
            output = ShadowOutput(self.topics.shadow, ws.shadow_sample,
                                  ws.delivery == "exactly-once", self.metrics,
                                  self._shadow_producer)  # fmt: skip
        return BatchProcessor(self.spec, worker_name=self._name,
                              max_request_size=ws.max_request_size, fault=self.fire,
                              shadow=output)  # fmt: skip

    def _shadow_topic_present(self) -> bool:
        """Whether the shadow topic exists now (a metadata request)."""
        return self.topics.shadow in self._consumer_().topics()

    def _check_topics(self, consumer: KafkaConsumer) -> None:
        present = consumer.topics()
        if self._keeper.follow_challenger and self.topics.shadow not in present:
            log.warning(
                "topic %s missing: shadow scoring off; create it with "
                "`inferloop topics create %s`", self.topics.shadow, self.domain,
            )  # fmt: skip
            self._keeper.follow_challenger = False
            self._processor = self._make_processor(shadow=False)
        missing = [t for t in (self.topics.events, self.topics.predictions, self.topics.dlq)
                   if t not in present]  # fmt: skip
        if missing:
            raise TopicMissingError(
                f"topics missing on {self.settings.kafka.bootstrap_servers}: "
                f"{', '.join(missing)}; create them with `inferloop topics create {self.domain}`"
            )

    # -- typed access to what _open made -------------------------------------------------------
    def _model(self) -> ActiveModel:
        model = self._keeper.current
        assert model is not None, "the loop runs only once a champion is loaded"
        return model

    def _consumer_(self) -> KafkaConsumer:
        assert self._consumer is not None
        return self._consumer

    def _delivery_(self) -> Delivery:
        assert self._delivery is not None
        return self._delivery

    def _attempts_(self) -> AttemptCounter:
        assert self._attempts is not None
        return self._attempts


def _starts(batch: Batch) -> str:
    return ",".join(f"{tp.partition}@{o}" for tp, o in sorted(batch.first_offsets.items()))
