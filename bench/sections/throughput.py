"""Throughput: the raw baselines, offline scoring, the worker and the Quix Streams peer.

First, per domain, the pipelined and exactly-once loops once each, not counted (a fresh
broker compiles its hot paths during its first loads). Then per domain and round, on the
same events and the same broker, one after the other:
consume-only, the naive / pipelined / exactly-once pass-through loops, the champion
scoring offline, then the worker at full speed (at-least-once and exactly-once, 1 and 2
processes), and the one-process worker again with a challenger scored in shadow on every
event (``SHADOW_SAMPLE=1``; its records counted on ``<domain>.shadow``). The Quix Streams
peer runs once per domain (it is slow). Efficiency is the
one-process at-least-once worker over ``1 / (1/pipelined + 1/scoring)`` of the same
round; figures are medians over rounds.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.data import Corpus, Model, fit_model, register
from bench.env import Env, create_topic, new_tag
from bench.stats import Spread, efficiency, harmonic_bound, ratio
from bench.stream import publish, read_records
from bench.worker import measure_worker
from inferloop.registry import Registry
from inferloop.settings import Domain, Settings
from inferloop.topics import for_settings

log = logging.getLogger(__name__)

LOOPS = ("consume", "naive", "pipelined", "exactly_once")
WORKER_RUNS = (("at-least-once", 1), ("exactly-once", 1), ("at-least-once", 2), ("exactly-once", 2))
# The same one-process worker with a challenger in shadow on every event, against the run
# of the same delivery without one (issue 32 asks >= 0.6 x for transactions).
SHADOW_RUNS = ("at-least-once", "exactly-once")
SHADOW = "challenger in shadow"


@dataclass
class DomainSetup:
    """A domain's events, its champion, and the Redis key prefix it is registered under."""

    domain: Domain
    corpus: Corpus
    champion: Model
    key_prefix: str
    _challenger: Model | None = None
    _challenger_version: int | None = None

    def challenger(self) -> Model:
        """A second model of the domain (fitted on other events; fitted once)."""
        if self._challenger is None:
            self._challenger = fit_model(self.corpus, seed=2, offset=len(self.corpus.values) // 2)
        return self._challenger

    def challenger_version(self, env: Env) -> int:
        """The challenger registered beside the champion (not promoted; once)."""
        if self._challenger_version is None:
            signing = env.signing(env.settings(new_tag("setup"), self.key_prefix))
            self._challenger_version = register(signing, self.challenger(), promote=False).version
        return self._challenger_version


def prepare_domain(env: Env, corpus: Corpus, run_id: str) -> DomainSetup:
    """Fit the domain's champion and register it under a key prefix of this run."""
    key_prefix = f"bench-{run_id}-{corpus.domain}"
    model = fit_model(corpus, seed=1)
    settings = env.signing(env.settings(new_tag("setup"), key_prefix))
    register(settings, model, promote=True)
    return DomainSetup(corpus.domain, corpus, model, key_prefix)


def worker_key(delivery: str, processes: int, shadow: bool = False) -> str:
    """``at-least-once/1``, ``at-least-once, challenger in shadow/1`` and the like."""
    return f"{delivery}{', ' + SHADOW if shadow else ''}/{processes}"


def one_round(
    env: Env, setup: DomainSetup, events: int, n: int, quix_events: int = 0
) -> dict[str, Any]:
    """Every measurement of one round, in a fixed order; the Quix peer last (when
    ``quix_events``), so that each round's ratio to it compares runs minutes apart."""
    domain = setup.domain
    values = setup.corpus.stream(events, f"r{n}")
    base, source = source_topic(env, setup, f"loops{n}", values)
    out: dict[str, Any] = {}
    for mode in LOOPS:
        out[mode] = loop_rate(
            env, base, source, mode, events=events, name=f"{domain}-loop-{mode}-r{n}"
        )
        log.info("%s round %d %s: %.0f msg/s", domain, n, mode, out[mode])
    score = env.spawn(
        "score",
        {
            "settings": base.model_dump(mode="json"),
            "domain": domain,
            "source": source,
            "count": events,
        },
        f"{domain}-score-r{n}",
    )
    out["scoring"] = score.wait(900)
    log.info("%s round %d scoring: %.0f events/s", domain, n, out["scoring"]["rate"])
    out["worker"] = {}
    for delivery, processes in WORKER_RUNS:
        settings = env.settings(new_tag(f"w{n}"), setup.key_prefix, delivery=delivery)
        measured = measure_worker(
            env, settings, domain, values, processes, name=f"{domain}-{delivery}-{processes}p-r{n}"
        )
        if measured.predicted < events:
            raise RuntimeError(
                f"{domain} {delivery} x{processes}: {measured.predicted} "
                f"predictions for {events} events"
            )
        key = worker_key(delivery, processes)
        out["worker"][key] = asdict(measured) | {"rate": measured.rate}
        log.info("%s round %d worker %s: %.0f msg/s", domain, n, key, measured.rate)
    for delivery in SHADOW_RUNS:
        key = worker_key(delivery, 1, shadow=True)
        out["worker"][key] = shadow_run(env, setup, values, delivery, n)
        log.info("%s round %d worker %s: %.0f msg/s", domain, n, key, out["worker"][key]["rate"])
    if quix_events:
        out["quix"] = quix_rate(env, setup, quix_events)
    return out


def shadow_run(
    env: Env, setup: DomainSetup, values: list[bytes], delivery: str, n: int
) -> dict[str, Any]:
    """One worker with the challenger alias set for the run (``SHADOW_SAMPLE`` is 1 by
    default), then the alias removed; fails unless every event was scored in shadow."""
    domain = setup.domain
    version = setup.challenger_version(env)
    settings = env.settings(new_tag(f"s{n}"), setup.key_prefix, delivery=delivery)
    with Registry.from_settings(env.signing(settings)) as registry:
        registry.set_alias(domain, "challenger", version, expected_current=None, reason="bench")
        try:
            measured = measure_worker(
                env, settings, domain, values, 1, name=f"{domain}-{delivery}-shadow-r{n}"
            )
        finally:
            registry.remove_alias(
                domain, "challenger", expected_current=version, reason="bench done"
            )
    shadowed = len(read_records(settings, for_settings(settings, domain).shadow))
    if measured.predicted < len(values) or shadowed < len(values):
        raise RuntimeError(
            f"{domain} {delivery} with a challenger: {measured.predicted} predictions and "
            f"{shadowed} shadow records for {len(values)} events"
        )
    return asdict(measured) | {"rate": measured.rate, "shadowed": shadowed}


def source_topic(
    env: Env, setup: DomainSetup, tag: str, values: list[bytes]
) -> tuple[Settings, str]:
    """Settings of a new topic prefix, and its source topic holding ``values``."""
    base = env.settings(new_tag(tag), setup.key_prefix)
    source = base.topics.prefix + "source"
    create_topic(base, source)
    publish(base, source, values)
    return base, source


def loop_rate(env: Env, base: Settings, source: str, mode: str, *, events: int, name: str) -> float:
    """The rate of one raw kafka-python loop over ``source``, into a new sink topic."""
    sink = f"{base.topics.prefix}sink-{mode}"
    create_topic(base, sink)
    child = env.spawn(
        "loop",
        {
            "settings": base.model_dump(mode="json"),
            "mode": mode,
            "source": source,
            "sink": sink,
            "count": events,
        },
        name,
    )
    rate: float = child.wait(900)["rate"]
    return rate


def warm_up(env: Env, setup: DomainSetup, events: int) -> dict[str, float]:
    """The pipelined and exactly-once loops once each before the rounds, not counted: a
    fresh broker compiles its hot paths during its first loads (see bench_latency's
    warm-up), and the first round's loops ran during that. It did not explain the
    pipelined baseline below the naive loop (12,990 against 14,318 msg/s on 2026-12-06):
    that came again after the warm-up (15,712 against 18,600), hence the efficiency
    against the faster of the two in :func:`summarise`."""
    base, source = source_topic(env, setup, "warm", setup.corpus.stream(events, "warm"))
    rates = {}
    for mode in ("pipelined", "exactly_once"):
        rates[mode] = loop_rate(
            env, base, source, mode, events=events, name=f"{setup.domain}-warm-{mode}"
        )
        log.info("%s warm-up %s: %.0f msg/s (not counted)", setup.domain, mode, rates[mode])
    return rates


def quix_rate(env: Env, setup: DomainSetup, events: int) -> float:
    """The Quix Streams peer's rate on ``events`` of the domain."""
    settings = env.settings(new_tag("quix"), setup.key_prefix)
    source, sink = settings.topics.prefix + "source", settings.topics.prefix + "sink"
    create_topic(settings, source)
    create_topic(settings, sink)
    publish(settings, source, setup.corpus.stream(events, "quix"))
    child = env.spawn(
        "quix",
        {
            "settings": settings.model_dump(mode="json"),
            "domain": setup.domain,
            "source": source,
            "sink": sink,
            "count": events,
        },
        f"{setup.domain}-quix",
    )
    rate: float = child.wait(900)["rate"]
    log.info("%s quix peer: %.0f msg/s", setup.domain, rate)
    return rate


def profile_worker(env: Env, setup: DomainSetup, events: int, out: Path) -> float:
    """One extra one-process run under pyinstrument (not a measured figure)."""
    settings = env.settings(new_tag("prof"), setup.key_prefix)
    values = setup.corpus.stream(events, "prof")
    measured = measure_worker(
        env, settings, setup.domain, values, 1, name=f"{setup.domain}-profile", profile=out
    )
    return measured.rate


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds, the bound, the efficiency and the target ratios."""

    def spread(get: Any) -> dict[str, float]:
        return asdict(Spread.of([get(r) for r in rounds]))

    alo, eos = worker_key("at-least-once", 1), worker_key("exactly-once", 1)
    summary: dict[str, Any] = {mode: spread(lambda r, m=mode: r[m]) for mode in LOOPS}
    summary["scoring"] = spread(lambda r: r["scoring"]["rate"])
    summary["bound"] = spread(lambda r: harmonic_bound(r["pipelined"], r["scoring"]["rate"]))
    summary["worker"] = {
        k: spread(lambda r, k=k: r["worker"][k]["rate"]) for k in rounds[0]["worker"]
    }
    summary["efficiency"] = spread(
        lambda r: efficiency(r["worker"][alo]["rate"], r["pipelined"], r["scoring"]["rate"])
    )
    # The figure is against the pipelined loop; on two cores the naive loop is
    # sometimes the faster one (likely because its flush leaves the GIL to the
    # producer's sender thread; not measured), so the worker is also set against
    # whichever was.
    summary["efficiency_best_loop"] = spread(
        lambda r: efficiency(
            r["worker"][alo]["rate"], max(r["pipelined"], r["naive"]), r["scoring"]["rate"]
        )
    )
    summary["eos_over_alo"] = spread(
        lambda r: ratio(r["worker"][eos]["rate"], r["worker"][alo]["rate"])
    )
    summary["two_over_one"] = spread(
        lambda r: ratio(
            r["worker"][worker_key("at-least-once", 2)]["rate"], r["worker"][alo]["rate"]
        )
    )
    summary["shadow_over_plain"] = {
        delivery: spread(
            lambda r, d=delivery: ratio(
                r["worker"][worker_key(d, 1, shadow=True)]["rate"],
                r["worker"][worker_key(d, 1)]["rate"],
            )
        )
        for delivery in SHADOW_RUNS
        if all(worker_key(delivery, 1, shadow=True) in r["worker"] for r in rounds)
    }
    # The machine's speed drifts over minutes here: each round's worker is compared
    # with that round's peer, and the median of those ratios is the figure.
    if all(r.get("quix") for r in rounds):
        summary["quix"] = spread(lambda r: r["quix"])
        summary["over_quix"] = spread(lambda r: ratio(r["worker"][alo]["rate"], r["quix"]))
    else:
        summary["quix"] = summary["over_quix"] = None
    return summary


def run(
    env: Env,
    setup: DomainSetup,
    *,
    events: int,
    rounds: int,
    quix_events: int,
    profile: Path | None,
) -> dict[str, Any]:
    """The throughput section of one domain."""
    warm = warm_up(env, setup, events)
    measured = [one_round(env, setup, events, n, quix_events) for n in range(1, rounds + 1)]
    result: dict[str, Any] = {
        "dataset": setup.corpus.name,
        "events": events,
        "event_bytes": round(setup.corpus.mean_bytes),
        "partitions": 4,
        "warm_up": warm,
        "rounds": measured,
        "summary": summarise(measured),
    }
    if profile is not None:
        result["profiled_rate"] = profile_worker(env, setup, events, profile)
        result["profile"] = str(profile.with_suffix(".txt"))
    return result
