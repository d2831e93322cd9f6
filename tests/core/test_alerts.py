"""The alert rules name metrics the code exports, and those follow Prometheus' naming.

promtool checks the rules against series written in their tests
(``./scripts/promtool-check``); it cannot know whether the code still exports a metric
of that name. These tests do: a rename in a metrics module fails here until the rules
follow it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from inferloop.domains.trees import COMPILE_FALLBACKS
from inferloop.kafka_internals import KafkaInternals
from inferloop.monitor.metrics import MonitorMetrics
from inferloop.retrain.monitoring import ServiceMetrics
from inferloop.worker.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
# Prometheus' own series, present for every target.
BUILTIN = {"up"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}
RESERVED_ENDINGS = ("_total", "_count", "_sum", "_bucket", "_created")
NAME = re.compile(r"\b[a-z_]*:?inferloop_[a-z0-9_]+(?::[a-z0-9_]+)?\b")


def _families() -> Iterator[Metric]:
    """Every metric family the worker, retrain service and monitor export."""
    extra = CollectorRegistry()
    extra.register(COMPILE_FALLBACKS)
    KafkaInternals(registry=extra)
    registries = [
        WorkerMetrics("emails").registry,
        ServiceMetrics().registry,
        MonitorMetrics().registry,
        extra,
    ]
    for registry in registries:
        yield from registry.collect()


def _exported() -> dict[str, str]:
    """{name a query may use: the family's type}: sample names and family names."""
    names = {}
    for family in _families():
        names[family.name] = family.type
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.type
    return names


def _rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def _texts(rule: dict[str, Any]) -> list[str]:
    """The rule's expression and annotations with label matchers' values left out
    (``job=~"inferloop-.*"`` names no metric)."""
    texts = [rule["expr"], *rule.get("annotations", {}).values()]
    return [re.sub(r'"[^"]*"', '""', text) for text in texts]


def test_the_rules_exist() -> None:
    names = {rule.get("alert") for rule in _rules()}
    assert {"InferloopTargetDown", "InferloopConsumerLagGrowing", "InferloopRetrainOverdue",
            "InferloopAutomaticRollback"} <= names  # fmt: skip


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r.get("alert") or r["record"])
def test_every_metric_a_rule_names_is_exported(rule: dict[str, Any]) -> None:
    exported = _exported()
    recorded = {r["record"] for r in _rules() if "record" in r}
    used = {name for text in _texts(rule) for name in NAME.findall(text)}
    assert used or "up" in rule["expr"]
    unknown = sorted(used - exported.keys() - recorded - BUILTIN)
    assert not unknown, f"not exported by inferloop: {unknown}"


def test_a_query_reads_a_counter_or_histogram_by_its_samples() -> None:
    # A counter's series are <name>_total, a histogram's <name>_bucket, _count and _sum:
    # the bare family name matches no series in a query (annotations may name it).
    bare = {f.name for f in _families() if f.type in ("counter", "histogram")}
    for rule in _rules():
        used = bare & set(NAME.findall(_texts(rule)[0]))
        assert not used, (rule.get("alert") or rule["record"], used)


def test_metric_names_follow_prometheus_naming() -> None:
    families = list(_families())
    assert len(families) > 40
    samples: dict[str, str] = {}
    for family in families:
        assert family.name.startswith("inferloop_"), family.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name), family.name
        # prometheus_client adds _total to a counter; any other type must not end like
        # a counter's or a histogram's samples.
        assert not family.name.endswith(RESERVED_ENDINGS), family.name
        # A share is a _ratio (0 to 1); "_rate" reads as a per-second rate().
        assert not family.name.endswith(("_rate", "_share", "_percent")), family.name
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_bytes", "_messages")), family.name
        for suffix in SUFFIXES.get(family.type, ("",)):
            sample = family.name + suffix
            assert sample not in samples, f"{sample} of {family.name} and {samples[sample]}"
            samples[sample] = family.name


def test_time_is_in_seconds() -> None:
    for family in _families():
        words = family.name.split("_")
        for unit in ("ms", "milliseconds", "minutes", "hours", "time", "duration"):
            assert unit not in words, family.name
        if "timestamp" in words:
            assert family.name.endswith("_timestamp_seconds"), family.name
