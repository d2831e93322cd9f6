"""Register and load real fitted pipelines: identical predictions, exact metadata."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from inferloop.registry import (
    ArtifactTooLargeError,
    InvalidNameError,
    InvalidVersionError,
    ModelNotFoundError,
    Registry,
    SigningKeyError,
    VersionNotFoundError,
)
from inferloop.registry.manifest import library_versions
from tests.registry.factories import Register, RegistryFactory, Trained, train_transactions


@pytest.mark.parametrize("model", ["emails_model", "tx_model"])
def test_a_loaded_version_predicts_exactly_like_the_registered_pipeline(
    model: str,
    request: pytest.FixtureRequest,
    register: Register,
    registry_factory: RegistryFactory,
) -> None:
    trained: Trained = request.getfixturevalue(model)
    stored = register(trained)
    # Another registry object: nothing is shared but Redis.
    loaded = registry_factory().load(trained.domain, stored.version)

    rows = trained.rows()
    assert np.array_equal(loaded.pipeline.predict_proba(rows), trained.pipeline.predict_proba(rows))
    assert loaded.version == stored
    assert loaded.target == stored.target
    assert loaded.verified_key_id == stored.signing_key_id
    assert loaded.resident_bytes > 0


def test_version_metadata_is_stored_exactly(
    registry: Registry, register: Register, tx_model: Trained
) -> None:
    lineage = {
        "topic": "transactions.labels",
        "partitions": {"0": {"start": 10, "end": 410}, "1": {"start": 0, "end": 377}},
        "rows": 787,
        "labels": {"fraud": 81, "legit": 706},
        "event_time": {"min": "2013-09-01T00:00:00+00:00", "max": "2013-09-02T00:00:00+00:00"},
    }
    stored = register(
        tx_model,
        threshold=np.float64(0.37),
        metrics={"auprc": np.float32(0.5), "mcc": float("nan")},
        champion_metrics={"auprc": 0.42},
        lineage=lineage,
        params={"C": 1.0, "classes": np.array([0, 1])},
        tags={"team": "fraud"},
        description="first",
    )
    got = registry.get_version("transactions", stored.version)

    assert got == stored
    assert (got.name, got.version, got.status, got.domain) == (
        "transactions", 1, "candidate", "transactions",
    )  # fmt: skip
    assert got.threshold == pytest.approx(0.37)
    assert got.lineage == lineage
    assert got.metrics == {"auprc": 0.5, "mcc": None}
    assert got.champion_metrics == {"auprc": 0.42}
    assert got.params == {"C": 1.0, "classes": [0, 1]}
    assert got.libraries == library_versions()
    assert (got.tags, got.description) == ({"team": "fraud"}, "first")
    assert (got.created_by, got.input_schema_version) == ("pytest", 1)
    assert len(got.artifact_digest) == 64
    assert got.artifact_size > 0
    assert got.signature
    assert got.signing_key_id
    assert got.golden.events == tuple(tx_model.golden_events)
    rows = tx_model.rows(tx_model.golden_events)
    assert list(got.golden.scores) == tx_model.pipeline.predict_proba(rows)[:, 1].tolist()
    assert got.load_time_s > 0
    assert got.resident_bytes > 0


def test_versions_are_numbered_by_an_atomic_counter_and_listed(
    registry: Registry, register: Register, tx_model: Trained, emails_model: Trained
) -> None:
    numbers = [register(tx_model).version for _ in range(3)]
    register(emails_model)

    assert numbers == [1, 2, 3]
    assert [v.version for v in registry.list_versions("transactions")] == [1, 2, 3]
    models = registry.list_models()
    assert [(m.name, m.version_count, m.latest_version) for m in models] == [
        ("emails", 1, 1),
        ("transactions", 3, 3),
    ]


def test_loading_twice_in_a_process_loads_once(
    registry: Registry, register: Register, tx_model: Trained
) -> None:
    stored = register(tx_model)
    first = registry.load("transactions", stored.version)
    assert registry.load("transactions", stored.version) is first
    assert registry.load("transactions", stored.version, digest=stored.artifact_digest) is first


def test_unknown_models_and_versions_are_typed_errors(
    registry: Registry, register: Register, tx_model: Trained
) -> None:
    with pytest.raises(ModelNotFoundError, match="'nope'"):
        registry.get_version("nope", 1)
    with pytest.raises(ModelNotFoundError):
        registry.list_versions("nope")
    with pytest.raises(ModelNotFoundError):
        registry.load("nope", 1)
    register(tx_model)
    with pytest.raises(VersionNotFoundError, match="transactions v7"):
        registry.get_version("transactions", 7)
    with pytest.raises(VersionNotFoundError):
        registry.load("transactions", 7)
    with pytest.raises(InvalidNameError):
        registry.resolve("bad name")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"golden_events": []}, "golden_events"),
        ({"params": {"when": object()}}, "params.when"),
        ({"lineage": {1: "x"}}, "lineage"),
    ],
)
def test_bad_registration_input_is_refused_and_stores_nothing(
    *,
    registry: Registry,
    register: Register,
    tx_model: Trained,
    fields: dict[str, object],
    message: str,
    redis_client: redis.Redis,
) -> None:
    with pytest.raises(InvalidVersionError, match=message):
        register(tx_model, **fields)
    assert not list(redis_client.scan_iter(match=f"{registry.keys.prefix}:model:*:v:*"))


def test_an_artifact_over_the_size_limit_is_refused(
    registry_factory: RegistryFactory, register: Register, tx_model: Trained
) -> None:
    small = registry_factory(max_artifact_bytes=100)
    with pytest.raises(ArtifactTooLargeError, match="MAX_ARTIFACT_BYTES"):
        register(tx_model, into=small)


def test_registering_without_a_signing_key_needs_the_explicit_development_mode(
    registry_factory: RegistryFactory, register: Register, tx_model: Trained
) -> None:
    worker_like = registry_factory(signing_key_path=None)
    with pytest.raises(SigningKeyError, match="SIGNING_KEY_PATH"):
        register(tx_model, into=worker_like)

    development = registry_factory(signing_key_path=None, verify_key_paths=(), allow_unsigned=True)
    stored = register(tx_model, into=development)
    assert stored.signature is None
    assert development.load("transactions", stored.version).verified_key_id is None


def test_a_different_pipeline_gets_a_different_digest(
    registry: Registry, register: Register, tx_model: Trained
) -> None:
    first = register(tx_model)
    second = register(train_transactions(seed=1, c=0.1))
    assert first.artifact_digest != second.artifact_digest
    assert registry.load("transactions", 2).target == second.target
