"""The shared operations module reads what the worker and the retrain service write."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from inferloop.keys import Keys
from inferloop.ops import letters
from inferloop.ops.retrain_status import read_retrain
from inferloop.settings import Settings
from inferloop.worker import deadletter


def test_the_dead_letter_header_names_are_the_workers() -> None:
    names = [n for n in dir(letters) if n.startswith(("H_", "REASON_", "DLQ_"))]
    assert names
    for name in names:
        assert getattr(letters, name) == getattr(deadletter, name), name


def test_the_console_reads_the_retrain_status_the_service_writes(
    settings: Settings, redis_client: redis.Redis
) -> None:
    from inferloop.retrain.outcome import RunOutcome
    from inferloop.retrain.status import record_next_run, record_run

    keys = Keys(settings.redis.key_prefix)
    started, finished = "2026-12-07T17:00:00Z", "2026-12-07T17:01:00Z"
    run = RunOutcome(
        "r1", "emails", "schedule", "promoted", "gate passed", started, finished_at=finished,
        version=3,
    )  # fmt: skip
    record_run(redis_client, keys, run)
    record_next_run(redis_client, keys, "emails", datetime(2026, 12, 7, 18, tzinfo=UTC))
    redis_client.set(keys.retrain_lock("emails"), "retrain-host-1|123|abc")
    view = read_retrain(redis_client, keys, "emails")
    assert view.last_run is not None
    assert (view.last_run["outcome"], view.last_run["version"]) == ("promoted", 3)
    assert view.last_success_at == "2026-12-07T17:01:00Z"
    assert view.next_run_at == "2026-12-07T18:00:00.000+00:00"
    assert view.running == "retrain-host-1|123|abc"
    assert list(view.last_by_outcome) == ["promoted"]
