"""Back to the committed offsets: where an exactly-once worker starts over.

After a transaction whose outcome it cannot know (a commit that timed out, an abort
refused) or that the coordinator aborted (a fenced producer), the batch in hand may or
may not be committed: only the group's committed offsets say where to read on.
"""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition


def back_to_committed(
    consumer: KafkaConsumer, partitions: Iterable[TopicPartition], timeout_ms: int
) -> dict[TopicPartition, int | None]:
    """Seek each of ``partitions`` to its committed offset (a read_committed consumer
    waits for a transaction still open on it to end); the offsets, None where nothing is
    committed (the partition starts where the consumer's ``auto_offset_reset`` says)."""
    where: dict[TopicPartition, int | None] = {}
    for tp in partitions:
        offset = consumer.committed(tp, timeout_ms=timeout_ms)
        if offset is not None:
            consumer.seek(tp, offset)
        elif consumer.config["auto_offset_reset"] == "latest":
            consumer.seek_to_end(tp)
        else:
            consumer.seek_to_beginning(tp)
        where[tp] = offset
    return where


def describe(offsets: dict[TopicPartition, int | None]) -> str:
    """``topic/partition@offset, ...`` for a log line (``@None``: nothing committed)."""
    return ", ".join(f"{tp.topic}/{tp.partition}@{o}" for tp, o in sorted(offsets.items()))
