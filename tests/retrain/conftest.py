"""Fixtures of the retrain tests: settings with a signing key, the labels topic, a registry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from inferloop.registry import Registry
from inferloop.registry.signing import generate_key_pair
from inferloop.retrain.job import RetrainJob
from inferloop.retrain.service import RetrainService, ServiceReport
from inferloop.settings import Settings
from inferloop.topics import create_domain_topics, for_settings

JobFactory = Callable[..., RetrainJob]


@pytest.fixture
def retrain_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test's settings: a signing key, small-data gate settings, no schedules."""
    keys = generate_key_pair(tmp_path / "keys", "retrain")
    registry = settings.registry.model_copy(
        update={"signing_key_path": keys.private_path, "verify_key_paths": (keys.public_path,)}
    )
    retrain = settings.retrain.model_copy(
        update={
            "min_holdout_positives": 10,
            "bootstrap_rounds": 200,
            "folds": 3,
            "lock_lease_s": 60.0,
            "emails_schedule": "off",
            "transactions_schedule": "off",
            "metrics_port": 0,
            "heartbeat_s": 0.5,
            "shutdown_grace_s": 10.0,
            "instance_id": "test-service",
        }
    )
    return settings.model_copy(update={"registry": registry, "retrain": retrain})


@contextmanager
def serving(
    settings: Settings, registry: Registry, **options: Any
) -> Iterator[tuple[RetrainService, list[ServiceReport]]]:
    """A service running in a thread (bounded by a timeout), stopped on exit."""
    service = RetrainService(settings, registry, metrics_port=0, **options)
    reports: list[ServiceReport] = []
    thread = threading.Thread(target=lambda: reports.append(service.run(timeout_s=120)))
    thread.start()
    try:
        assert service.started.wait(timeout=30), "the service did not start"
        yield service, reports
    finally:
        service.request_stop()
        thread.join(timeout=60)


def with_retrain(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some retrain settings changed."""
    return settings.model_copy(update={"retrain": settings.retrain.model_copy(update=changes)})


@pytest.fixture
def labels_topic(retrain_settings: Settings) -> str:
    """The emails domain's topics, made; the name of its labels topic."""
    create_domain_topics(retrain_settings, "emails")
    return for_settings(retrain_settings, "emails").labels


@pytest.fixture
def registry(retrain_settings: Settings) -> Iterator[Registry]:
    """A registry that signs with the test's key, on the test's prefix."""
    made = Registry.from_settings(retrain_settings)
    yield made
    made.close()


@pytest.fixture
def make_job(retrain_settings: Settings, registry: Registry) -> JobFactory:
    """``make_job(settings=None, **job_options)``: a retrain job on the test's registry."""

    def make(settings: Settings | None = None, **options: Any) -> RetrainJob:
        return RetrainJob(settings or retrain_settings, registry, **options)

    return make
