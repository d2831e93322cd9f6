"""Every Kafka topic name inferloop uses is built here.

A domain has five topics: the events themselves, the predictions made for them, the
labelled examples that come back later (the training log), the dead letters, and the
challenger's shadow predictions (read by analysis only, never by downstream consumers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kafka.errors import TopicAlreadyExistsError

from inferloop.connections import admin_client
from inferloop.errors import InferloopError
from inferloop.settings import DOMAINS, Domain, Settings, TopicSettings


class TopicError(InferloopError): ...


PREDICTIONS_SUFFIX = ".predictions"
LABELS_SUFFIX = ".labels"
DLQ_SUFFIX = ".dlq"
SHADOW_SUFFIX = ".shadow"

# The labels topic is the log that every model version's lineage points into: it is
# kept forever and never compacted, so any version can be rebuilt from it.
LABELS_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


@dataclass(frozen=True)
class DomainTopics:
    """The five topic names of one domain."""

    domain: Domain
    events: str
    predictions: str
    labels: str
    dlq: str
    # Empty: none (shadow scoring off), for names built by hand.
    shadow: str = ""

    def all(self) -> tuple[str, ...]:
        """Every topic of the domain, events first."""
        return tuple(
            t for t in (self.events, self.predictions, self.labels, self.dlq, self.shadow) if t
        )

    def config_for(self, topic: str) -> dict[str, str]:
        """Topic-level configuration that differs from the broker's defaults (the
        shadow topic is kept like the predictions: the broker's retention)."""
        return dict(LABELS_TOPIC_CONFIG) if topic == self.labels else {}


def domain_topics(topics: TopicSettings, domain: Domain) -> DomainTopics:
    """The topic names of ``domain`` under the configured names and prefix."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")
    base = topics.prefix + getattr(topics, domain)
    return DomainTopics(
        domain=domain,
        events=base,
        predictions=base + PREDICTIONS_SUFFIX,
        labels=base + LABELS_SUFFIX,
        dlq=base + DLQ_SUFFIX,
        shadow=base + SHADOW_SUFFIX,
    )


def for_settings(settings: Settings, domain: Domain) -> DomainTopics:
    """Shorthand for :func:`domain_topics` with a whole settings object."""
    return domain_topics(settings.topics, domain)


def consumer_group(settings: Settings, domain: Domain) -> str:
    """The consumer group every worker of ``domain`` joins."""
    return f"{settings.topics.prefix}inferloop-{domain}"


@dataclass(frozen=True)
class CreateResult:
    """What :func:`create_domain_topics` did."""

    created: tuple[str, ...]
    existing: tuple[str, ...]


def create_domain_topics(settings: Settings, domain: Domain) -> CreateResult:
    """Create those of the domain's five topics that are missing; idempotent."""
    names = for_settings(settings, domain)
    with admin_client(settings.kafka) as admin:
        present = set(admin.list_topics())
        missing = [t for t in names.all() if t not in present]
        if missing:
            specs = {
                topic: {
                    "num_partitions": settings.topics.partitions,
                    "replication_factor": settings.topics.replication_factor,
                    "configs": names.config_for(topic),
                }
                for topic in missing
            }
            response = admin.create_topics(specs, raise_errors=False)
            # Another process may have created one between the listing and the request.
            raced = _failed_topics(response)
            missing = [t for t in missing if t not in raced]
            if missing:
                admin.wait_for_topics(missing, timeout_ms=30_000)
    existing = tuple(t for t in names.all() if t not in missing)
    return CreateResult(created=tuple(missing), existing=existing)


def _failed_topics(response: dict[str, Any]) -> set[str]:
    """Topics the broker said exist already; any other error is raised."""
    raced: set[str] = set()
    for item in response.get("topics", []):
        code = item.get("error_code", 0)
        if code == TopicAlreadyExistsError.errno:
            raced.add(item["name"])
        elif code:
            message = item.get("error_message") or "no detail"
            raise TopicError(f"creating topic {item['name']!r} failed: error {code}: {message}")
    return raced
