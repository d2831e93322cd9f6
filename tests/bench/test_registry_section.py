"""The registry section: real versions in a real Redis, and their table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.env import Env
from bench.report import markdown
from bench.sections import registry
from inferloop.registry.registry import Registry
from inferloop.registry.signing import generate_key_pair
from inferloop.settings import Settings


@pytest.mark.integration
def test_the_section_registers_loads_and_resolves_both_domains(
    settings: Settings, tmp_path: Path
) -> None:
    keys = generate_key_pair(tmp_path / "keys", "bench")
    env = Env(settings.kafka.bootstrap_servers, settings.redis.url, tmp_path, tmp_path, keys)

    figures = registry.run(env, rounds=50, rows=200, key_prefix=settings.redis.key_prefix)
    assert figures["resolved"] == "emails"

    assert set(figures["domains"]) == {"emails", "transactions"}
    for f in figures["domains"].values():
        assert f["artifact_mb"] > 0
        assert f["cold_load_ms"] > f["unpickle_ms"] > 0
        assert f["cached_load_p50_us"] < f["cold_load_ms"] * 1e3
    assert figures["resolve"]["p99_us"] >= figures["resolve"]["p50_us"] > 0
    assert figures["resolve_over_ping"] > 0
    # The versions are in the test's own key space, signed by the run's key.
    verify = settings.registry.model_copy(update={"verify_key_paths": (keys.public_path,)})
    with Registry.from_settings(settings.model_copy(update={"registry": verify})) as client:
        champion = client.resolve("emails")
    assert champion is not None
    assert champion.version == figures["domains"]["emails"]["version"]


def test_the_registry_table_gives_each_domain_and_resolve_beside_ping() -> None:
    domain = {
        "version": 1,
        "artifact_mb": 1.234,
        "resident_mb": 5.5,
        "register_s": 0.25,
        "cold_load_ms": 40.0,
        "unpickle_ms": 12.5,
        "golden_check_ms": 3.0,
        "cached_load_p50_us": 1.5,
    }
    figures = {
        "rows": 5000,
        "rounds": 5000,
        "cold_rounds": 7,
        "domains": {"emails": domain},
        "ping": {"p50_us": 60.0, "p99_us": 110.0},
        "resolve": {"p50_us": 75.0, "p99_us": 150.0},
        "resolved": "emails",
        "resolve_over_ping": 1.25,
    }
    section = {"seconds": 9.0, "load_start": [1.0, 1.0, 1.0], "load_end": [1.0, 1.0, 1.0]}
    text = markdown(
        {
            "command": "scripts/bench --sections registry",
            "machine": {
                "cores": 2,
                "cpu": "test cpu",
                "memory_gib": 24,
                "python": "3.11.7",
                "packages": {
                    "kafka-python": "3",
                    "scikit-learn": "1",
                    "numpy": "2",
                    "quixstreams": None,
                },
                "crc32c_in_use": True,
                "services": {},
            },
            "sections": {"registry": section | {"figures": figures}},
        }
    )
    assert "## Registry" in text
    assert "| emails | 1.23 | 5.5 | 0.25 | 40.0 | 12.5 | 3.0 | 1.5 |" in text
    assert "| resolve emails (one HGET) | 75.0 | 150.0 |" in text
    assert "resolve / PING at p50 1.25" in text
