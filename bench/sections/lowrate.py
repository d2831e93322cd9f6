"""A worker at low rates: its CPU and latency as the broker answers fetches at once (the
defaults) or holds them for bytes or a few milliseconds (``fetch_min_bytes``,
``fetch_max_wait_ms``).

Every turn of the worker's loop costs a poll, a fetch and a produce request, whatever
few records it carries; at a low rate the broker's at-once answers make many such
turns. Each rate is loaded once per setting, the settings in turn, ``rounds`` times, so
that every setting meets the same spells of a noisy machine. Before them, one load
warms a fresh broker up; its figures are not kept.
"""

from __future__ import annotations

from typing import Any

from bench.env import Env
from bench.sections.latency import WARM_UP_LOAD_S, one_load
from bench.sections.throughput import DomainSetup
from inferloop.settings import WorkerSettings

RATES = (500.0, 2_000.0)
FETCH_FIELDS = ("fetch_min_bytes", "fetch_max_wait_ms")
ROUNDS = 2
# The worker's settings per load: the defaults, then the broker holding each fetch
# until it has 64 KiB for it or 3 ms, or 10 ms, have passed.
FETCH_SETTINGS: tuple[dict[str, Any], ...] = (
    {},
    {"fetch_min_bytes": 65_536, "fetch_max_wait_ms": 3},
    {"fetch_min_bytes": 65_536, "fetch_max_wait_ms": 10},
)


def fetch_of(changes: dict[str, Any]) -> dict[str, int]:
    """The fetch settings a load ran with: ``changes`` over the worker's defaults."""
    fields = WorkerSettings.model_fields
    return {name: changes.get(name, fields[name].default) for name in FETCH_FIELDS}


def run(
    env: Env,
    setup: DomainSetup,
    *,
    rates: list[float],
    seconds: float,
    rounds: int = ROUNDS,
    client: str = "librdkafka",
) -> dict[str, Any]:
    """Every rate, with every fetch setting in turn, ``rounds`` times."""
    one_load(env, setup, max(rates), min(WARM_UP_LOAD_S, seconds), client=client)
    runs = []
    for rate in rates:
        for n in range(rounds):
            for changes in FETCH_SETTINGS:
                figures = one_load(env, setup, rate, seconds, client=client, **changes)
                runs.append(figures | fetch_of(changes) | {"round": n + 1})
    return {"seconds": seconds, "client": client, "rounds": rounds, "runs": runs}
