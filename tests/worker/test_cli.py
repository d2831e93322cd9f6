"""``inferloop lag`` and ``inferloop dlq show|redrive`` against the real broker."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from click.testing import CliRunner

from inferloop.cli import cli
from inferloop.settings import Settings, WorkerSettings
from inferloop.topics import DomainTopics
from inferloop.worker.deadletter import H_REDRIVEN_FROM, header
from inferloop.worker.loop import RunLimits
from tests.helpers import read_topic, settings_env
from tests.worker.conftest import Champion, WorkerThread
from tests.worker.factories import Fitted, publish, publish_events, tx_event


def invoke(settings: Settings, *args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner(env=settings_env(settings)).invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_lag_reads_the_committed_offsets_with_every_worker_down(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    champion(model_v1)
    publish_events(wsettings, topics.events, range(500))
    before = invoke(wsettings, "lag", "transactions")
    worker_thread(wsettings, limits=RunLimits(max_messages=300)).join(60)

    after = invoke(wsettings, "lag", "transactions")

    assert before["total"] == 500
    assert all(p["committed"] is None for p in before["partitions"])
    assert after["total"] == 200
    assert sum(p["committed"] or 0 for p in after["partitions"]) == 300
    assert sum(p["end"] for p in after["partitions"]) == 500


def test_dlq_show_counts_by_reason_and_redrive_republishes_the_chosen_letters(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
    worker_thread: Callable[..., WorkerThread],
) -> None:
    champion(model_v1)
    missing = {k: v for k, v in tx_event(1).items() if k != "amount"}
    bad = [b"{nope", b"{nope again", json.dumps(missing).encode()]
    publish(wsettings, topics.events, bad, [b"a", b"b", b"c"])
    worker_thread(wsettings, limits=RunLimits(max_messages=3)).join(60)

    shown = invoke(wsettings, "dlq", "show", "transactions")
    only = invoke(wsettings, "dlq", "show", "transactions", "--reason", "missing_field")
    dry = invoke(wsettings, "dlq", "redrive", "transactions", "--reason", "not_json", "--dry-run")
    done = invoke(wsettings, "dlq", "redrive", "transactions", "--reason", "not_json")
    events = read_topic(wsettings, topics.events)

    assert shown["by_reason"] == {"not_json": 2, "missing_field": 1}
    assert shown["total"] == 3
    assert [row["key"] for row in only["letters"]] == ["c"]
    assert dry == {"sent": 2, "skipped": 0, "by_topic": {topics.events: 2}, "dry_run": True}
    assert done["sent"] == 2
    redriven = [r for r in events if header(r.headers, H_REDRIVEN_FROM)]
    assert sorted(r.value for r in redriven) == sorted(bad[:2])
    assert all(header(r.headers, "dlq.reason") is None for r in redriven)


@contextmanager
def _listening(port: int) -> Iterator[None]:
    """``port`` taken by a listener (as by a first worker), if nothing holds it yet."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", port))
        holder.listen()
    except OSError:
        pass  # taken already: as good for the test
    try:
        yield
    finally:
        holder.close()


def _worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferloop", "worker", "run", "transactions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_second_worker_takes_the_next_metrics_port_unless_one_was_set(
    *,
    wsettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    model_v1: Fitted,
) -> None:
    champion(model_v1)
    publish_events(wsettings, topics.events, range(20))
    base = WorkerSettings().metrics_port
    env = settings_env(wsettings)
    with _listening(base):
        # Not set: the next free port from the default, logged.
        unset = {k: v for k, v in env.items() if k != "INFERLOOP_WORKER__METRICS_PORT"}
        done = _worker(unset, "--max-messages", "20")
        assert done.returncode == 0, done.stderr
        assert f"metrics port {base} is taken" in done.stderr
        found = re.search(r"metrics and health on http://127\.0\.0\.1:(\d+)/", done.stderr)
        assert found is not None, done.stderr
        served = int(found.group(1))
        assert base < served < base + 64
        # Set: that port or the clear error, one line, status 1.
        taken = env | {"INFERLOOP_WORKER__METRICS_PORT": str(base)}
        refused = _worker(taken, "--max-messages", "20")
    assert refused.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{base}" in refused.stderr
    assert "INFERLOOP_WORKER__METRICS_PORT" in refused.stderr
    assert "Traceback" not in refused.stderr
