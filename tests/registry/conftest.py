"""Fixtures of the registry tests: signing keys, registries on the test's key prefix,
real fitted pipelines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferloop.registry import ModelVersion, Registry
from inferloop.registry.signing import KeyPair, generate_key_pair
from inferloop.settings import Settings
from tests.registry.factories import (
    Register,
    RegistryFactory,
    Trained,
    train_emails,
    train_transactions,
)


@pytest.fixture(scope="session")
def emails_model() -> Trained:
    """The emails domain's own pipeline, fitted on synthetic emails."""
    return train_emails()


@pytest.fixture(scope="session")
def tx_model() -> Trained:
    """A scikit-learn pipeline fitted on the transactions domain's rows."""
    return train_transactions()


@pytest.fixture
def signing_keys(tmp_path: Path) -> KeyPair:
    """The key pair of the test's signer (the retrain job)."""
    return generate_key_pair(tmp_path / "keys", "retrain")


@pytest.fixture
def registry_settings(settings: Settings, signing_keys: KeyPair) -> Settings:
    """The test's settings with a signing key and its public key trusted."""
    section = settings.registry.model_copy(
        update={
            "signing_key_path": signing_keys.private_path,
            "verify_key_paths": (signing_keys.public_path,),
            "actor": "pytest",
        }
    )
    return settings.model_copy(update={"registry": section})


@pytest.fixture
def registry_factory(registry_settings: Settings) -> Iterator[RegistryFactory]:
    """``make(settings=None, **registry_fields)``: a registry (closed at the end) on the
    test's Redis and prefix, its registry settings changed by ``registry_fields``."""
    made: list[Registry] = []

    def make(settings: Settings | None = None, **registry_fields: Any) -> Registry:
        chosen = settings or registry_settings
        if registry_fields:
            section = chosen.registry.model_copy(update=registry_fields)
            chosen = chosen.model_copy(update={"registry": section})
        registry = Registry.from_settings(chosen)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.close()


@pytest.fixture
def registry(registry_factory: RegistryFactory) -> Registry:
    """A registry that signs with the test's key and trusts it."""
    return registry_factory()


@pytest.fixture
def register(registry: Registry) -> Register:
    """``register(trained, name=None, registry=None, **fields)``: a new version of
    ``trained`` (model name = its domain), with plausible metadata."""

    def make(trained: Trained, *, into: Registry | None = None, **fields: Any) -> ModelVersion:
        arguments: dict[str, Any] = {
            "domain": trained.domain,
            "threshold": 0.5,
            "input_schema_version": 1,
            "golden_events": trained.golden_events,
            "params": {"C": 1.0},
            "metrics": {"auprc": 0.9, "roc_auc": 0.95},
            "champion_metrics": None,
            "lineage": {
                "topic": f"{trained.domain}.labels",
                "partitions": {"0": {"start": 0, "end": len(trained.events)}},
                "rows": len(trained.events),
                "positives": int(trained.y.sum()),
            },
            "created_by": "pytest",
        }
        arguments |= fields
        name = arguments.pop("name", trained.domain)
        return (into or registry).register(name, trained.pipeline, **arguments)

    return make
