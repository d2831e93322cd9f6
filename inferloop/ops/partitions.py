"""A topic's partitions as the operations read them, or the error that names the topic."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from inferloop.ops.errors import TopicMissingError


def topic_partitions(consumer: KafkaConsumer, topic: str, servers: str) -> list[TopicPartition]:
    """Every partition of ``topic`` in order; :class:`TopicMissingError` naming the topic
    and the brokers asked when it has none."""
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        raise TopicMissingError(f"topic {topic!r} not found on {servers}")
    return [TopicPartition(topic, p) for p in sorted(numbers)]
