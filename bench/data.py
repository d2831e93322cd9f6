"""The events the benchmarks stream, and the models they are scored with.

Events are the public data sets as ``inferloop replay`` publishes them (the domain's
event JSON, ``model_dump_json``), cycled with fresh ids when more are needed than the
data set holds. Models are the domain's own pipeline fitted on a slice of the same data
(a quick fit: the benchmarks measure scoring, not model quality), registered and signed
in the real registry.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferloop.domains import get_domain
from inferloop.domains.datasets import Dataset, load_dataset
from inferloop.registry import ModelVersion, Registry
from inferloop.settings import Domain, Settings

log = logging.getLogger(__name__)

ID_PREFIX = b'{"id":"'
GOLDEN_EVENTS = 16
# Rows a champion is fitted on: enough positives for a threshold, a fit of seconds.
FIT_ROWS = {"transactions": 20_000, "emails": 6_000}


def with_id(value: bytes, new_id: str) -> bytes:
    """``value`` (an event's JSON, id first as ``model_dump_json`` writes it) with its id
    replaced by ``new_id``, without parsing the rest."""
    if not value.startswith(ID_PREFIX):
        raise ValueError("the event JSON does not start with its id (id first)")
    end = value.index(b'"', len(ID_PREFIX))
    return ID_PREFIX + new_id.encode() + value[end:]


def id_of(value: bytes) -> str:
    """The id of an event JSON written id first."""
    end = value.index(b'"', len(ID_PREFIX))
    return value[len(ID_PREFIX) : end].decode()


@dataclass(frozen=True)
class Corpus:
    """A domain's data set as event JSON, ready to be cycled into streams."""

    domain: Domain
    name: str
    dataset: Dataset
    values: list[bytes]

    @property
    def mean_bytes(self) -> float:
        """Average size of one event's JSON."""
        return float(np.mean([len(v) for v in self.values]))

    def stream(self, count: int, tag: str, start: int = 0) -> list[bytes]:
        """``count`` events cycled from the data set, ids ``<tag>-<n>`` for n from ``start``."""
        size = len(self.values)
        return [with_id(self.values[n % size], f"{tag}-{n}") for n in range(start, start + count)]


def load_corpus(
    domain: Domain, data_dir: Path, emails_data: str = "spamassassin", limit: int = 100_000
) -> Corpus:
    """The data set the benchmarks use for ``domain`` (credit-card transactions; SMS or
    SpamAssassin emails), its first ``limit`` events as JSON, in event-time order."""
    name = "creditcard" if domain == "transactions" else emails_data
    started = time.perf_counter()
    dataset = load_dataset(name, data_dir)
    values = [e.model_dump_json().encode() for e in dataset.events[: max(limit, FIT_ROWS[domain])]]
    log.info(
        "corpus %s: %d events, %.0f bytes on average, %.1f s",
        name,
        len(values),
        float(np.mean([len(v) for v in values])),
        time.perf_counter() - started,
    )
    return Corpus(domain, name, dataset, values)


@dataclass(frozen=True)
class Model:
    """A fitted pipeline of a domain, its threshold and the events that check it."""

    domain: Domain
    pipeline: Any
    threshold: float
    golden: list[dict[str, Any]]
    description: str


def fit_model(corpus: Corpus, *, seed: int, offset: int = 0) -> Model:
    """The domain's pipeline fitted on ``FIT_ROWS`` events from position ``offset`` (two
    offsets give two models whose scores differ), threshold chosen on its own scores."""
    spec = get_domain(corpus.domain)
    rows_wanted = min(FIT_ROWS[corpus.domain], len(corpus.dataset))
    start = min(offset, len(corpus.dataset) - rows_wanted)
    events = corpus.dataset.events[start : start + rows_wanted]
    y = corpus.dataset.y[start : start + rows_wanted]
    started = time.perf_counter()
    pipeline = spec.build_pipeline(seed).fit(spec.to_rows(events), y)
    threshold = float(spec.choose_threshold(y, pipeline.predict_proba(spec.to_rows(events))[:, 1]))
    log.info(
        "fitted %s on %d events from %d in %.1f s",
        corpus.domain,
        rows_wanted,
        start,
        time.perf_counter() - started,
    )
    golden = [json.loads(v) for v in corpus.values[start : start + GOLDEN_EVENTS]]
    return Model(corpus.domain, pipeline, threshold, golden, f"bench fit on {start}+{rows_wanted}")


def register(settings: Settings, model: Model, *, promote: bool) -> ModelVersion:
    """Register ``model`` (signed with the settings' key); make it champion if asked."""
    with Registry.from_settings(settings) as registry:
        version = registry.register(
            model.domain,
            model.pipeline,
            domain=model.domain,
            threshold=model.threshold,
            input_schema_version=get_domain(model.domain).schema_version,
            golden_events=model.golden,
            params={},
            metrics={},
            champion_metrics=None,
            lineage={"source": "bench"},
            created_by="bench",
            description=model.description,
        )
        if promote:
            promote_version(registry, model.domain, version.version)
    return version


def promote_version(registry: Registry, name: str, version: int) -> None:
    """Make ``version`` the champion of ``name``, whatever the champion was."""
    registry.promote(name, version, expected_current=registry.resolve(name), reason="bench")


def keys_of(values: Iterable[bytes]) -> list[bytes]:
    """The Kafka key of each event: its id."""
    return [id_of(v).encode() for v in values]


def write_values(path: Path, values: Sequence[bytes]) -> None:
    """One event JSON per line (event JSON holds no raw newline)."""
    path.write_bytes(b"\n".join(values) + b"\n")


def read_values(path: Path) -> list[bytes]:
    """What :func:`write_values` wrote."""
    return path.read_bytes().splitlines()
