"""The monitor's versions on the real registry: a version whose load fails for a
transient reason (a permission, an unexpected answer) is tried again after a backoff;
one that fails verification is refused for good."""

from __future__ import annotations

import time
from typing import Any

import pytest

from inferloop.domains import get_domain
from inferloop.monitor.scoring import WatchedVersions
from inferloop.registry import (
    CHAMPION,
    DigestMismatchError,
    Registry,
    RegistryError,
    RegistryPermissionError,
)
from tests.worker.conftest import Champion
from tests.worker.factories import Fitted


def failing_once(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, error: RegistryError
) -> list[int]:
    """Make the registry's next load raise ``error``; the loads tried, counted."""
    real_load, calls = registry.load, []

    def load(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real_load(*args, **kwargs)

    monkeypatch.setattr(registry, "load", load)
    return calls


def test_a_version_not_loaded_for_a_transient_reason_is_tried_again(
    *, registry: Registry, champion: Champion, model_v1: Fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = champion(model_v1)
    calls = failing_once(registry, monkeypatch, RegistryPermissionError("NOPERM, for now"))
    versions = WatchedVersions(registry, get_domain("transactions"), probation_s=0.0)

    versions.refresh()
    assert CHAMPION not in versions.by_role
    versions.refresh()  # within the backoff: not tried
    assert len(calls) == 1
    time.sleep(0.6)
    versions.refresh()

    assert versions.by_role[CHAMPION].version == first.version


def test_a_version_failing_verification_is_refused_for_good(
    *, registry: Registry, champion: Champion, model_v1: Fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion(model_v1)
    calls = failing_once(registry, monkeypatch, DigestMismatchError("tampered"))
    versions = WatchedVersions(registry, get_domain("transactions"), probation_s=0.0)

    versions.refresh()
    time.sleep(0.6)
    versions.refresh()

    assert CHAMPION not in versions.by_role
    assert len(calls) == 1
