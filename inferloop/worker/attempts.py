"""Scoring attempts of a batch, counted in Redis so that the count survives a crash.

A batch that crashes the worker (a native crash in the model, the kernel's OOM killer)
comes back where its partition resumes: at the committed offset, after the restart's
assignment; in exactly-once mode the crash also aborts its transaction, so without a
count it would loop forever. So the first batch of each partition after an assignment
is counted, under the key of its first offset in that partition; steady-state batches
cost no round trip to Redis. Past ``max_scoring_attempts`` such a batch is
dead-lettered (``scoring_error``) instead of scored, so one event never stalls a
partition. A batch read again because Kafka refused its sends or its transaction is
not counted: that is not the events' fault. Counters are deleted once their batch is
committed and expire on their own otherwise. When Redis is unreachable the count is
unknown (0) and scoring goes on; Redis is tried again after a growing pause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import redis
from kafka import TopicPartition

from inferloop.backoff import Backoff
from inferloop.connections import make_redis
from inferloop.keys import Keys
from inferloop.settings import Settings
from inferloop.worker.batch import Batch
from inferloop.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# The loop must not stand still for long when Redis is gone.
REDIS_TIMEOUT_S = 0.5
# Counters of committed batches waiting for Redis to come back; older ones just expire.
MAX_FINISHED_KEYS = 10_000


class AttemptCounter:
    """Counts attempts at the first batch of each partition after an assignment."""

    def __init__(self, settings: Settings, domain: str, metrics: WorkerMetrics) -> None:
        quick = settings.redis.model_copy(
            update={"socket_timeout_s": REDIS_TIMEOUT_S, "connect_timeout_s": REDIS_TIMEOUT_S}
        )
        self._redis = make_redis(quick)
        self._keys = Keys(settings.redis.key_prefix)
        self._domain = domain
        self._ttl_s = settings.worker.scoring_attempts_ttl_s
        self._metrics = metrics
        self._backoff = Backoff(settings.worker.redis_backoff_max_s)
        self._retry_at = 0.0
        self._down = False
        self._resumed: set[TopicPartition] = set()
        self._finished: list[str] = []
        # Marks and commits also come from the rebalance listener's thread.
        self._lock = threading.Lock()

    def resumed(self, partitions: Iterable[TopicPartition]) -> None:
        """These partitions start again from their committed offset (a new assignment)."""
        with self._lock:
            self._resumed.update(partitions)

    def begin(self, batch: Batch) -> int:
        """The attempt number of ``batch`` (1 for a first attempt; 0 when it does not start
        at a resume point or Redis is unreachable)."""
        with self._lock:
            resumed = [tp for tp in batch.first_offsets if tp in self._resumed]
            if not resumed:
                return 0
            self._resumed.difference_update(resumed)
        keys = [
            self._keys.scoring_attempts(
                self._domain, tp.topic, tp.partition, batch.first_offsets[tp]
            )
            for tp in resumed
        ]
        counts = self._increment(keys)
        if counts:
            batch.attempt_keys = keys
        return max(counts, default=0)

    def done(self, batch: Batch) -> None:
        """``batch`` is committed: its counters are deleted with the next round trip."""
        if batch.attempt_keys:
            with self._lock:
                self._finished.extend(batch.attempt_keys)
                del self._finished[:-MAX_FINISHED_KEYS]

    def flush(self) -> None:
        """Delete the counters of committed batches now (if Redis answers)."""
        self._increment([])

    def close(self) -> None:
        """Flush, and disconnect."""
        self.flush()
        self._redis.close()

    def _increment(self, keys: list[str]) -> list[int]:
        with self._lock:
            finished, self._finished = self._finished, []
        if not keys and not finished:
            return []
        if self._down and time.monotonic() < self._retry_at:
            self._requeue(finished)
            return []
        try:
            pipe = self._redis.pipeline(transaction=False)
            if finished:
                pipe.delete(*finished)
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, self._ttl_s)
            replies = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._requeue(finished)
            self._went_down(exc)
            return []
        self._came_back()
        return [int(c) for c in replies[1 if finished else 0 :: 2]]

    def _requeue(self, keys: list[str]) -> None:
        if keys:
            with self._lock:
                self._finished[:0] = keys
                del self._finished[:-MAX_FINISHED_KEYS]

    def _went_down(self, exc: Exception) -> None:
        if not self._down:
            log.warning("Redis unreachable for attempt counts (%s); scoring on without them", exc)
        self._down = True
        self._retry_at = time.monotonic() + self._backoff.next()
        self._metrics.errors.labels(self._domain, "redis").inc()

    def _came_back(self) -> None:
        if self._down:
            log.info("Redis reachable again for attempt counts")
        self._down = False
        self._backoff.reset()
