"""Model swap: a promotion while one worker scores a steady stream.

A second version of the domain's model is registered (signed, not champion) before the
stream starts; once a third of the stream's predictions have been read back, it is
promoted. (Counted in predictions, not seconds from the producer's start: a producer
child took 7 s to start on 2026-12-06, so a promotion timed in seconds came before the
first event, and the "swap time" measured the stream's start.) From the predictions
read back, joined with the input topic:

- swap time: promotion to the first new-version prediction of the last input partition
  to get one (the prediction's Kafka timestamp, the worker's send); of which the
  worker's background load and verification (its ``model_load_seconds`` metric), and
  the backlog: how long that prediction's input had waited (the worker drains what
  piled up during the load partition by partition, so the last one is reached last);
- order: within each input partition, no old-version prediction after the first new one;
- loop pause: the worker's own ``inferloop_worker_model_swap_pause_seconds``; and, seen
  from outside, the longest time without any prediction around the swap beside the
  longest such gap of the steady stream before it;
- memory: the worker's resident memory sampled every 20 ms (two models are held while
  the new one loads and is verified beside the old);
- every acknowledged id against predictions + dead letters (lost, duplicated).
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.data import promote_version, register
from bench.env import Env, metric, new_tag
from bench.sections.latency import templates
from bench.sections.throughput import DomainSetup
from bench.stream import Received, RssSampler, StreamRun, input_index
from inferloop.registry import Registry

log = logging.getLogger(__name__)

RSS_EVERY_S = 0.02
PROMOTE_AT = 1 / 3
TIMELINE_POINTS = 400
LOAD_METRIC = "inferloop_worker_model_load_seconds_sum"


def versions_by_partition(
    received: list[Received], where: dict[str, Any]
) -> dict[int, list[tuple[int, int, int, int]]]:
    """Per input partition: (input offset, version, prediction timestamp ms, input
    timestamp ms), in input order."""
    out: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for got in received:
        record = where.get(got.key)
        if record is None or got.value is None:
            continue
        version = int(json.loads(got.value)["model"]["version"])
        out[record.partition].append(
            (record.offset, version, got.timestamp_ms, record.timestamp_ms)
        )
    return {p: sorted(rows) for p, rows in out.items()}


@dataclass(frozen=True)
class SwapTiming:
    """When the last input partition got its first new-version prediction."""

    swap_s: float | None  # from the promotion
    ordered: bool  # in every partition, no old version after the first new one
    # How long that prediction's input had waited: the worker's backlog at that moment.
    backlog_ms: float | None


def swap_figures(
    by_partition: dict[int, list[tuple[int, int, int, int]]], new: int, promoted_ms: float
) -> SwapTiming:
    """The swap time, order and backlog of :func:`versions_by_partition`'s rows."""
    firsts, ordered = [], True
    for rows in by_partition.values():
        versions = [v for _, v, _, _ in rows]
        if new not in versions:
            return SwapTiming(None, ordered, None)
        first = versions.index(new)
        ordered = ordered and all(v == new for v in versions[first:])
        firsts.append(min((sent, sent - came) for _, v, sent, came in rows if v == new))
    last_sent, backlog_ms = max(firsts)
    return SwapTiming((last_sent - promoted_ms) / 1000, ordered, float(backlog_ms))


def longest_gap_ms(stamps_ms: list[int], start_ms: float, end_ms: float) -> float:
    """The longest time between two consecutive predictions within [start, end]."""
    inside = sorted(t for t in stamps_ms if start_ms <= t <= end_ms)
    return float(max((b - a for a, b in itertools.pairwise(inside)), default=0))


def prepare_versions(env: Env, setup: DomainSetup, delivery: str) -> tuple[str, int, int]:
    """A key prefix of its own with v1 champion and v2 registered; (prefix, v1, v2)."""
    prefix = f"{setup.key_prefix}-swap-{delivery}"
    signing = env.signing(env.settings(new_tag("swapsetup"), prefix))
    old = register(signing, setup.champion, promote=True)
    new = register(signing, setup.challenger(), promote=False)
    return prefix, old.version, new.version


def one_swap(
    env: Env,
    setup: DomainSetup,
    delivery: str,
    rate: float,
    seconds: float,
    *,
    client: str = "librdkafka",
) -> dict[str, Any]:
    """One promotion under a stream at ``rate``; the harness's producer and reader on
    ``client``."""
    prefix, old, new = prepare_versions(env, setup, delivery)
    settings = env.settings(new_tag("swap"), prefix, delivery=delivery)
    run = StreamRun(
        env,
        settings,
        setup.domain,
        templates(env, setup),
        keep_values=True,
        name=f"{setup.domain}-swap-{delivery}",
        client=client,
    ).start()
    rss = RssSampler([c.pid for c in run.workers.children], RSS_EVERY_S).start()
    try:
        count = max(int(rate * seconds), 1)
        producer = run.produce("swap", count, rate)
        run.wait_predicted(int(count * PROMOTE_AT), timeout_s=seconds + 120)
        loaded_before = metric(run.workers.ports[0], LOAD_METRIC)
        with Registry.from_settings(env.signing(settings)) as registry:
            promoted = time.time()
            promote_version(registry, setup.domain, new)
        produced = run.produced_by(producer, seconds * 3 + 120)
        run.wait_predicted(produced["acked"], timeout_s=120)
        pause_s = metric(run.workers.ports[0], "inferloop_worker_model_swap_pause_seconds_sum")
        loaded_after = metric(run.workers.ports[0], LOAD_METRIC)
    finally:
        rss.stop()
        results = run.stop()
    assert run.reader is not None
    where = input_index(settings, run.topics.events)
    timing = swap_figures(versions_by_partition(run.reader.received, where), new, promoted * 1000)
    swap_s = timing.swap_s
    stamps = [g.timestamp_ms for g in run.reader.received]
    started_ms = produced["first_send_wall"] * 1000
    promoted_ms = promoted * 1000
    settled_ms = promoted_ms + 1000 * (swap_s or 0) + 1000
    t_s, rss_mb = rss.series_mb(since=promoted)
    before = [m for t, m in zip(t_s, rss_mb, strict=True) if t < 0]
    during = [m for t, m in zip(t_s, rss_mb, strict=True) if 0 <= t <= (swap_s or 0) + 2]
    accounting = run.account("swap")
    step = max(len(t_s) // TIMELINE_POINTS, 1)
    result = {
        "delivery": delivery,
        "rate": rate,
        "old_version": old,
        "new_version": new,
        "swap_s": swap_s,
        "load_s": (
            None if loaded_before is None or loaded_after is None else loaded_after - loaded_before
        ),
        "backlog_ms": timing.backlog_ms,
        "ordered": timing.ordered,
        "loop_pause_ms": pause_s * 1000 if pause_s is not None else None,
        "longest_gap_ms": longest_gap_ms(stamps, promoted_ms - 500, settled_ms),
        "steady_gap_ms": longest_gap_ms(stamps, started_ms + 1000, promoted_ms - 500),
        "rss_before_mb": statistics.median(before) if before else None,
        "rss_peak_mb": max(during) if during else None,
        "rss_hwm_mb": results[0]["peak_rss_kb"] / 1024,
        "events_in": accounting.events_in,
        "predictions": accounting.predictions,
        "dead_letters": accounting.dead_letters,
        "lost": accounting.lost,
        "duplicated": accounting.duplicated,
        "timeline": {"t_s": t_s[::step], "rss_mb": rss_mb[::step]},
    }
    log.info(
        "%s swap (%s): %s s, pause %s ms, lost %d, duplicated %d",
        setup.domain,
        delivery,
        swap_s,
        result["loop_pause_ms"],
        accounting.lost,
        accounting.duplicated,
    )
    return result


def run(
    env: Env, setup: DomainSetup, *, rate: float, seconds: float, client: str = "librdkafka"
) -> dict[str, Any]:
    """The swap section of one domain: at-least-once, then exactly-once."""
    return {
        "client": client,
        "runs": [
            one_swap(env, setup, d, rate, seconds, client=client)
            for d in ("at-least-once", "exactly-once")
        ],
    }
