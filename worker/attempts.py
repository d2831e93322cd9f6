"""Scoring attempts of a batch, counted in Redis so that the count survives a crash.

Before a batch is scored, the counter of each of its partitions' first offsets is
incremented; once the batch is committed they are deleted (in the same round trip as
the next batch's increments). A batch that crashed the worker, or failed and was read
again, comes back with a higher count; past ``max_scoring_attempts`` it is
dead-lettered instead of scored, so one event never stalls a partition. When Redis is
unreachable the count is unknown (0) and scoring goes on; Redis is tried again after a
growing pause, never on every batch.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from inferloop.connections import make_redis
from inferloop.keys import Keys
from inferloop.settings import Settings
from inferloop.worker.batch import Batch
from inferloop.worker.metrics import WorkerMetrics
from inferloop.worker.model import Backoff

log = logging.getLogger(__name__)

# The loop must not stand still for long when Redis is gone.
REDIS_TIMEOUT_S = 0.5
# Counters of committed batches waiting for Redis to come back; older ones just expire.
MAX_FINISHED_KEYS = 10_000


class AttemptCounter:
    """Counts scoring attempts per batch start in Redis; a circuit breaker when it is down."""

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
        self._finished: list[str] = []
        self._lock = threading.Lock()

    def keys_of(self, batch: Batch) -> list[str]:
        """The counter keys of a batch: one per partition, at its first offset."""
        return [
            self._keys.scoring_attempts(self._domain, tp.topic, tp.partition, offset)
            for tp, offset in batch.first_offsets.items()
        ]

    def begin(self, batch: Batch) -> int:
        """Count one more attempt at ``batch``: the highest count of its partitions (0 when
        Redis is unreachable)."""
        if self._down and time.monotonic() < self._retry_at:
            return 0
        keys = self.keys_of(batch)
        with self._lock:
            finished, self._finished = self._finished, []
        try:
            pipe = self._redis.pipeline(transaction=False)
            if finished:
                pipe.delete(*finished)
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, self._ttl_s)
            replies = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            with self._lock:
                self._finished[:0] = finished[-MAX_FINISHED_KEYS:]
            self._went_down(exc)
            return 0
        self._came_back()
        counts = replies[1 if finished else 0 :: 2]
        return max((int(c) for c in counts), default=0)

    def done(self, batch: Batch) -> None:
        """``batch`` is committed: its counters go with the next round trip."""
        keys = self.keys_of(batch)
        with self._lock:
            self._finished.extend(keys)
            if len(self._finished) > MAX_FINISHED_KEYS:
                del self._finished[:-MAX_FINISHED_KEYS]

    def close(self) -> None:
        """Delete the counters of committed batches, if Redis answers, and disconnect."""
        with self._lock:
            finished, self._finished = self._finished, []
        if finished and not self._down:
            try:
                self._redis.delete(*finished)
            except (redis.ConnectionError, redis.TimeoutError):
                log.debug("attempt counters left to expire: Redis unreachable")
        self._redis.close()

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
