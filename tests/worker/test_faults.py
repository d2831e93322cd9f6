"""The fault hook parses its setting strictly and fires exactly at its n-th pass."""

from __future__ import annotations

import pytest

from inferloop.worker.errors import FaultInjectedError, WorkerConfigError
from inferloop.worker.faults import FaultHook


def test_no_setting_no_hook() -> None:
    assert FaultHook.parse(None) is None
    assert FaultHook.parse("") is None


@pytest.mark.parametrize("spec", ["nowhere:kill", "before_commit:explode", "scoring", "a:b:c:d",
                                  "scoring:raise:x"])  # fmt: skip
def test_bad_settings_are_refused(spec: str) -> None:
    with pytest.raises(WorkerConfigError):
        FaultHook.parse(spec)


def test_fires_at_the_nth_pass_of_its_point_only() -> None:
    hook = FaultHook.parse("before_commit:raise:3")
    assert hook is not None
    hook.fire("scoring")
    hook.fire("before_commit")
    hook.fire("before_commit")
    with pytest.raises(FaultInjectedError):
        hook.fire("before_commit")
    hook.fire("before_commit")  # once only
