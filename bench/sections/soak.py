"""Soak: one worker at half its maximum rate for a long while; resident memory over time.

The worker's resident memory is sampled every few seconds; the drift is the slope of a
least-squares line through the samples after the first minute (warm-up: caches, the
allocator's arenas). At the end every acknowledged id is counted in the output.
"""

from __future__ import annotations

import logging
from typing import Any

from bench.env import Env, new_tag
from bench.sections.latency import templates
from bench.sections.throughput import DomainSetup
from bench.stats import rss_drift_mb_per_hour
from bench.stream import RssSampler, StreamRun

log = logging.getLogger(__name__)

WARM_UP_S = 60.0


def run(
    env: Env, setup: DomainSetup, *, rate: float, seconds: float, client: str = "librdkafka"
) -> dict[str, Any]:
    """The soak of one domain; its producer on ``client``."""
    settings = env.settings(new_tag("soak"), setup.key_prefix)
    stream = StreamRun(
        env,
        settings,
        setup.domain,
        templates(env, setup),
        read=False,
        name=f"{setup.domain}-soak",
        client=client,
    ).start()
    interval_s = min(max(seconds / 400, 1.0), 5.0)
    rss = RssSampler([c.pid for c in stream.workers.children], interval_s).start()
    try:
        producer = stream.produce("soak", max(int(rate * seconds), 1), rate)
        produced = stream.produced_by(producer, seconds * 2 + 300)
    finally:
        rss.stop()
        stream.stop()
    t_s, rss_mb = rss.series_mb(since=produced["first_send_wall"])
    warm = min(WARM_UP_S, seconds / 4)
    steady = [(t, m) for t, m in zip(t_s, rss_mb, strict=True) if t >= warm]
    accounting = stream.account("soak")
    result = {
        "seconds": seconds,
        "client": client,
        "rate": rate,
        "achieved_rate": produced["sent"] / produced["seconds"],
        "rss_start_mb": steady[0][1] if steady else None,
        "rss_end_mb": steady[-1][1] if steady else None,
        "rss_max_mb": max(rss_mb) if rss_mb else None,
        "drift_mb_per_h": rss_drift_mb_per_hour([t for t, _ in steady], [m for _, m in steady]),
        "events_in": accounting.events_in,
        "predictions": accounting.predictions,
        "lost": accounting.lost,
        "duplicated": accounting.duplicated,
        "samples_s": t_s,
        "rss_mb": rss_mb,
    }
    log.info(
        "%s soak: RSS %.0f -> %.0f MB (max %.0f), drift %.1f MB/h, lost %d",
        setup.domain,
        result["rss_start_mb"] or 0,
        result["rss_end_mb"] or 0,
        result["rss_max_mb"] or 0,
        result["drift_mb_per_h"],
        accounting.lost,
    )
    return result
