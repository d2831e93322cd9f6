"""One measurement in a child process: ``python -m bench.child KIND SPEC.json``.

The harness (:mod:`bench.env`) writes the spec; the child writes its result as
JSON to the spec's ``result_path`` and exits 0. Kinds:

- ``loop``: a raw kafka-python baseline loop (:mod:`bench.peers.baselines`);
- ``score``: the champion scoring events offline (no Kafka in the timed part);
- ``worker``: the real :class:`inferloop.worker.loop.Worker`, optionally profiled;
- ``quix``: the Quix Streams peer (:mod:`bench.peers.quix`);
- ``produce``: a paced producer of a known set of ids (:mod:`bench.stream`).

Each kind imports what it needs when it runs: a producer child that imported the worker,
scikit-learn and the retrain job took 7.2 s to import on 2026-12-06 (1.8 s now),
and a harness that waits for it waits that long for every load.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.env import proc_status_kb
from bench.stream import PacedProducer, read_values, registry_champion
from inferloop.settings import Settings

log = logging.getLogger("bench.child")  # run as __main__


def settings_of(spec: dict[str, Any]) -> Settings:
    """The measurement's settings, exactly as the harness built them."""
    return Settings(**spec["settings"])


def run_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """A baseline pass-through (or consume-only) loop."""
    from bench.peers.baselines import BASELINES

    loop = BASELINES[spec["mode"]]
    result = loop(settings_of(spec).kafka, spec["source"], spec["sink"], int(spec["count"]))
    return {
        "name": result.name,
        "records": result.records,
        "seconds": result.seconds,
        "rate": result.rate,
    }


def run_score(spec: dict[str, Any]) -> dict[str, Any]:
    """The champion alone on the same events: validation + rows + scores in batches of
    1,000 on one thread, with the worker's scorer (``domains.evaluation.scoring_rate``)."""
    from inferloop.domains import get_domain
    from inferloop.domains.evaluation import scoring_rate

    settings = settings_of(spec)
    spec_ = get_domain(spec["domain"])
    values = read_values(settings, spec["source"], int(spec["count"]))
    events = spec_.validate_batch(values).events
    pipeline = registry_champion(settings, spec["domain"]).pipeline
    rate = scoring_rate(spec_, pipeline, events, min_events=len(events))
    return {
        "events": rate.events,
        "seconds": rate.seconds,
        "rate": rate.events_per_s,
        "validate_s": rate.validate_s,
        "rows_s": rate.rows_s,
        "score_s": rate.score_s,
        "json_loads_s": rate.json_loads_s,
        "scorer": rate.scorer,
    }


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The worker until SIGTERM (or its limits); its summary with wall-clock times."""
    from pyinstrument import Profiler

    from inferloop.worker.loop import RunLimits, Worker

    limits = RunLimits(
        max_messages=spec.get("max_messages"), idle_timeout_s=spec.get("idle_timeout_s")
    )
    worker = Worker(
        settings_of(spec),
        spec["domain"],
        slot=int(spec.get("slot", 0)),
        limits=limits,
        metrics_port=int(spec["metrics_port"]),
    )
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.request_stop("SIGTERM"))
    profile = spec.get("profile")
    if profile:
        profiler = Profiler(interval=0.001)
        with profiler:
            summary = worker.run()
        Path(profile).with_suffix(".txt").write_text(profiler.output_text(show_all=False))
        Path(profile).with_suffix(".html").write_text(profiler.output_html())
    else:
        summary = worker.run()
    # RunSummary times count from the subscription; elapsed_s is taken last, at close.
    started_wall = time.time() - summary.elapsed_s
    return {
        "consumed": summary.consumed,
        "predicted": summary.predicted,
        "dead_lettered": summary.dead_lettered,
        "batches": summary.batches,
        "versions": sorted(summary.versions),
        "stopped_because": summary.stopped_because,
        "first_record_wall": started_wall + summary.first_record_s,
        "peak_rss_kb": proc_status_kb(os.getpid(), "VmHWM"),
    }


def run_quix(spec: dict[str, Any]) -> dict[str, Any]:
    """The Quix Streams peer scoring the champion per row."""
    from bench.peers.quix import quix_peer

    settings = settings_of(spec)
    model = registry_champion(settings, spec["domain"])
    result = quix_peer(
        settings.kafka,
        spec["source"],
        spec["sink"],
        int(spec["count"]),
        domain=spec["domain"],
        pipeline=model.pipeline,
        threshold=model.version.threshold,
        state_dir=str(Path(spec["result_path"]).parent / "quix-state"),
    )
    return {
        "name": result.name,
        "records": result.records,
        "seconds": result.seconds,
        "rate": result.rate,
    }


def run_produce(spec: dict[str, Any]) -> dict[str, Any]:
    """A paced producer of known ids."""
    producer = PacedProducer.from_spec(settings_of(spec), spec)
    signal.signal(signal.SIGTERM, lambda signum, frame: producer.request_stop())
    return producer.run()


def run_retrain(spec: dict[str, Any]) -> dict[str, Any]:
    """One size of the retrain section (:func:`bench.sections.retrain.run_child`)."""
    from bench.sections.retrain import run_child

    return run_child(spec)


KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "loop": run_loop,
    "score": run_score,
    "worker": run_worker,
    "quix": run_quix,
    "produce": run_produce,
    "retrain": run_retrain,
}


def main() -> None:
    """Run the measurement the arguments name and write its result."""
    kind, spec_path = sys.argv[1], Path(sys.argv[2])
    spec = json.loads(spec_path.read_text())
    logging.basicConfig(
        level=spec.get("log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.ERROR)
    started = time.monotonic()
    log.info("%s start", kind)
    result = KINDS[kind](spec)
    Path(spec["result_path"]).write_text(json.dumps(result))
    log.info(
        "%s finish in %.1f s: %s",
        kind,
        time.monotonic() - started,
        {k: v for k, v in result.items() if not isinstance(v, list)},
    )


if __name__ == "__main__":
    main()
