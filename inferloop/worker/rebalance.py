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
        self, consumer: KafkaConsumer, delivery: Delivery, on_assignment: AssignmentFn, name: str
    ) -> None:
        self._name = name
        self._consumer = consumer
        self._delivery = delivery
        self._on_assignment = on_assignment

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish the batches in hand and commit them before the partitions go."""
        if not revoked:
            return
        try:
            offsets = self._delivery.on_revoked()
        except KafkaError as exc:
            # Raising here would fail the consumer's poll; the batches are read again.
            log.warning("worker %s: finishing the batches in hand failed (%s); they will be "
                        "read again", self._name, exc)  # fmt: skip
            self._delivery.on_lost()
            offsets = {}
        if offsets:
            try:
                await self._consumer.commit_async(offsets)
            except KafkaError as exc:
                log.warning("worker %s: commit on revocation failed (%s); the next owner "
                            "reads again", self._name, exc)  # fmt: skip
            else:
                log.info("worker %s committed %d partitions before revocation", self._name,
                         len(offsets))  # fmt: skip
        log.info("worker %s: partitions revoked: %s", self._name, _names(revoked))
        self._on_assignment(set())

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Record the new assignment."""
        log.info("worker %s: partitions assigned: %s", self._name, _names(assigned))
        self._delivery.on_assigned(set(assigned))
        self._on_assignment(set(assigned))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Drop the batches in hand: committing them is no longer ours to do."""
        log.warning("worker %s: partitions lost: %s", self._name, _names(lost))
        self._delivery.on_lost()
        self._on_assignment(set())


def _names(partitions: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)) or "none"
