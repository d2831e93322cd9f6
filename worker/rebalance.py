"""What the worker does when the group moves its partitions.

kafka-python runs rebalance callbacks on the consumer's IO thread while the loop is
blocked in ``poll()``. Revoked: the batches in hand are finished (their sends flushed)
and the acknowledged ones committed before the partitions go, so the next owner starts
exactly where this worker stopped. The callbacks are coroutines so the commit can be
awaited on that same IO loop (a blocking commit there would deadlock it). Lost (the
group already gave them away): nothing may be committed; the batches are dropped and
the next owner reads them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from inferloop.worker.delivery import Delivery

log = logging.getLogger(__name__)

AssignmentFn = Callable[[set[TopicPartition]], None]


class RebalanceHandler(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Finishes and commits the batches in hand before partitions are revoked."""

    def __init__(
        self, consumer: KafkaConsumer, delivery: Delivery, on_assignment: AssignmentFn
    ) -> None:
        self._consumer = consumer
        self._delivery = delivery
        self._on_assignment = on_assignment

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish the batches in hand and commit them before the partitions go."""
        if not revoked:
            return
        offsets = self._delivery.on_revoked()
        if offsets:
            try:
                await self._consumer.commit_async(offsets)
            except KafkaError as exc:
                log.warning("commit on revocation failed (%s); the next owner reads again", exc)
            else:
                log.info("committed %d partitions before revocation", len(offsets))
        log.info("partitions revoked: %s", _names(revoked))
        self._on_assignment(set())

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Record the new assignment."""
        log.info("partitions assigned: %s", _names(assigned))
        self._on_assignment(set(assigned))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Drop the batches in hand: committing them is no longer ours to do."""
        log.warning("partitions lost: %s", _names(lost))
        self._delivery.on_lost()
        self._on_assignment(set())


def _names(partitions: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)) or "none"
