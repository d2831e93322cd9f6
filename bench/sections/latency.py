"""End-to-end latency at 25, 50 and 75 % of the measured maximum rate.

A producer child sends events at a steady rate to one worker process; a consumer in the
harness reads the predictions back (``read_committed``) and notes when each arrived.
The latency of an event is that moment minus its input record's Kafka timestamp (set
by the producer when it sent it), read back from the input topic. The first second of
each load is warm-up and left out, and before the loads, one per guarantee warms the
broker up (a fresh JVM spends its first minute of load compiling); their figures are
reported apart, with the broker's CPU, JIT and GC figures for every load.

The baseline, in the same run and at the half load: the pipelined kafka-python
pass-through loop of the throughput section (``bench_baselines``) in place of the
worker, with the same producer, topics and reader. It parses nothing and scores
nothing, so its latency is what Kafka and kafka-python cost on this machine at that
rate, with the same processes sharing its cores. Beside it, with the librdkafka harness,
the same loop on librdkafka (:func:`bench.peers.rdkafka.pipelined_passthrough`): a
client whose record path is C, so what of the tail is kafka-python's shows apart from
what the machine and the broker give any client. The half load, the one with a target,
is run several times, each worker load followed by one of each baseline, so that all
meet the same spells of a noisy machine. Below them, the floor: no loop, the reader
reading the input topic itself, one hop through the broker.

Each load also records what shares the machine with the worker: the cores the machine
and the worker (or loop) kept busy on average, the input's own leg (its producer's send
to Kafka's acknowledgement), and the machine's own stops, seen by a probe process that
only sleeps (:mod:`bench.stalls`). The half load is half of the worker's
maximum with the machine to itself; with the producer, the reader and the broker beside
it, the transactions worker at that load kept 0.8 of the two cores busy, and the
machine 1.35.

The producer and the reader are librdkafka's (:mod:`bench.peers.rdkafka`) unless
``--harness-client kafka-python``: at 6,000 msg/s kafka-python's producer alone took
74 % of one of the two cores, librdkafka's 20 %, and what the harness takes from the
worker shows up as the worker's latency.
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.data import write_values
from bench.env import (
    CpuWatch,
    Env,
    broker_cpu_s,
    broker_gc_pauses_ms,
    new_tag,
    wait_until,
)
from bench.sections.throughput import DomainSetup
from bench.stalls import COUNT_FROM_MS, StallProbe
from bench.stats import percentiles
from bench.stream import (
    PredictionReader,
    Received,
    StreamRun,
    input_index,
    producer_spec,
)
from inferloop.settings import Settings
from inferloop.topics import create_domain_topics, for_settings

log = logging.getLogger(__name__)

WARM_UP_S = 1.0
# A fresh broker compiles its hot paths during its first minute of load: its JIT
# threads took 10.4 of its 22.4 CPU seconds in a first 30 s worker load at 6,000 msg/s
# here, 3.0 of 14.5 in the second and 0.8 of 15.0 in the third, and the first load's p99
# was 4-5 times the others' (370 against 83 and 65 ms). Brokers in service are warm, so
# the loads measured come after one load per guarantee at 50 %, this long, whose figures
# are reported apart.
WARM_UP_LOAD_S = 15.0
# Events sent to the pass-through baseline before the paced load, to see it running.
PASSTHROUGH_WARM_UP = 200
# Loads of the worker at 50 %, each followed by one of the pass-through. One 30 s load's
# p99 is a poor verdict on this machine: six loads of one transactions worker at
# 9,899 msg/s, one after another (2026-12-06, 21:00), gave 118, 148, 191, 150, 200 and
# 280 ms. The report gives every load, and the medians of the worker's and the
# baseline's p99.
HALF_LOADS = 3


def templates(env: Env, setup: DomainSetup) -> Path:
    """The domain's event JSON, one per line, for producer children (written once)."""
    path = env.home / f"values-{setup.domain}.jsonl"
    if not path.exists():
        write_values(path, setup.corpus.values)
    return path


def latencies_ms(
    settings: Settings, events_topic: str, received: list[Received], since_wall: float
) -> tuple[list[float], list[float]]:
    """Per event sent after ``since_wall``: arrival minus input timestamp (end to end),
    and the prediction's own Kafka timestamp (the worker's send) minus input timestamp."""
    sent = input_index(settings, events_topic)
    since_ms = since_wall * 1000
    total, to_worker_send = [], []
    for got in received:
        record = sent.get(got.key)
        if record is not None and record.timestamp_ms >= since_ms:
            total.append(got.received_wall * 1000 - record.timestamp_ms)
            to_worker_send.append(float(got.timestamp_ms - record.timestamp_ms))
    return total, to_worker_send


def one_load(
    env: Env,
    setup: DomainSetup,
    rate: float,
    seconds: float,
    delivery: str = "at-least-once",
    *,
    client: str = "librdkafka",
    **worker: Any,
) -> dict[str, Any]:
    """One worker at ``rate`` for ``seconds``; the latency percentiles."""
    settings = env.settings(new_tag("lat"), setup.key_prefix, delivery=delivery, **worker)
    count = max(int(rate * seconds), 1)
    cpu_before = broker_cpu_s(env)
    run = StreamRun(
        env,
        settings,
        setup.domain,
        templates(env, setup),
        name=f"{setup.domain}-latency-{int(rate)}",
        client=client,
    ).start()
    probe = StallProbe.start(_stalls_path(env, settings))
    try:
        watch = CpuWatch.start({"worker": run.workers.children[0].pid})
        produced = run.produced_by(
            run.produce("lat", count, rate, ack_from_s=WARM_UP_S), seconds * 3 + 120
        )
        run.wait_predicted(produced["acked"], timeout_s=120)
        cpu = watch.cores()
        stalls = probe.stop()
    finally:
        probe.close()
        run.stop()
    assert run.reader is not None
    values, worker_send = latencies_ms(
        settings, run.topics.events, run.reader.received, produced["first_send_wall"] + WARM_UP_S
    )
    return summarise(
        setup.domain,
        delivery,
        rate,
        produced,
        values=values,
        worker_send=worker_send,
        broker=_broker(env, produced, run.reader.received, cpu_before),
        cpu=cpu,
        stalls=stalls,
    )


def passthrough_load(
    env: Env,
    setup: DomainSetup,
    rate: float,
    seconds: float,
    client: str = "librdkafka",
    *,
    loop: str = "pipelined",
) -> dict[str, Any]:
    """A pipelined pass-through loop in place of the worker: the same load, no model;
    kafka-python's, or librdkafka's with ``loop="rdkafka_pipelined"``."""
    return _without_worker(env, setup, rate, seconds, client, loop=loop)


def floor_load(
    env: Env, setup: DomainSetup, rate: float, seconds: float, client: str = "librdkafka"
) -> dict[str, Any]:
    """No loop at all: the reader reads the input topic the producer writes. What one hop
    through the broker costs with these clients, at this load, on this machine."""
    return _without_worker(env, setup, rate, seconds, client, loop=None)


def _without_worker(
    env: Env,
    setup: DomainSetup,
    rate: float,
    seconds: float,
    client: str,
    *,
    loop: str | None,
) -> dict[str, Any]:
    settings = env.settings(new_tag("latbase"), setup.key_prefix)
    topics = for_settings(settings, setup.domain)
    create_domain_topics(settings, setup.domain)
    count = max(int(rate * seconds), 1)
    cpu_before = broker_cpu_s(env)
    child = None
    if loop is not None:
        child = env.spawn(
            "loop",
            {
                "settings": settings.model_dump(mode="json"),
                "mode": loop,
                "source": topics.events,
                "sink": topics.predictions,
                "count": PASSTHROUGH_WARM_UP + count,
            },
            f"{setup.domain}-latency-{loop.replace('_', '-')}",
        )
    gc.collect()
    gc.freeze()  # as StreamRun.start does: the harness's heap stalls its reader otherwise
    read = topics.predictions if loop is not None else topics.events
    reader = PredictionReader(settings, read, client=client).start()
    probe = StallProbe.start(_stalls_path(env, settings))
    try:
        # Until its records come out, the loop is still joining its group.
        path = templates(env, setup)
        warm = producer_spec(
            settings, topics.events, path, "warm", PASSTHROUGH_WARM_UP, client=client
        )
        env.spawn("produce", warm, f"{setup.domain}-latency-warm").wait(120)
        wait_until(lambda: reader.count() >= PASSTHROUGH_WARM_UP, 120, "the warm-up", 0.1)
        spec = producer_spec(settings, topics.events, path, "lat", count, client=client)
        spec |= {"rate_per_s": rate, "ack_from_s": WARM_UP_S}
        watch = CpuWatch.start({"loop": child.pid} if child is not None else {})
        produced = env.spawn("produce", spec, f"{setup.domain}-latency-paced").wait(
            seconds * 3 + 120
        )
        done = PASSTHROUGH_WARM_UP + produced["acked"]
        # A loop that failed is reported by its wait, not as the reader's timeout.
        wait_until(
            lambda: (
                reader.count() >= done
                or (child is not None and child.process.poll() not in (None, 0))
            ),
            120,
            "the reader",
        )
        cpu = watch.cores()
        stalls = probe.stop()
        if child is not None:
            child.wait(120)
    finally:
        probe.close()
        received = reader.stop()
    values, sent = latencies_ms(
        settings, topics.events, received, produced["first_send_wall"] + WARM_UP_S
    )
    name = {
        None: "no loop: producer to reader",
        "pipelined": "pipelined pass-through",
        "rdkafka_pipelined": "pipelined pass-through, librdkafka",
    }[loop]
    return summarise(
        setup.domain,
        name,
        rate,
        produced,
        values=values,
        worker_send=sent,
        broker=_broker(env, produced, received, cpu_before),
        cpu=cpu,
        stalls=stalls,
    )


def _stalls_path(env: Env, settings: Settings) -> Path:
    return env.home / "stalls" / f"{settings.topics.prefix.rstrip('-')}.json"


def _broker(
    env: Env,
    produced: dict[str, Any],
    received: list[Received],
    cpu_before: dict[str, float] | None,
) -> dict[str, Any]:
    """What the run's own broker did during a load (None where it is not ours): its GC
    pauses from the first send to the last prediction read, and the CPU it used (in
    all, and compiling: the JIT threads of a fresh broker)."""
    until = max((got.received_wall for got in received), default=time.time())
    pauses = broker_gc_pauses_ms(env, produced["first_send_wall"], until)
    cpu_after = broker_cpu_s(env)
    cpu = (
        {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
        if cpu_before is not None and cpu_after is not None
        else None
    )
    return {
        "broker_gc_pauses": None if pauses is None else len(pauses),
        "broker_gc_max_ms": max(pauses) if pauses else None,
        "broker_gc_total_ms": None if pauses is None else sum(pauses),
        "broker_cpu_s": None if cpu is None else cpu["total"],
        "broker_jit_cpu_s": None if cpu is None else max(cpu["jit"], 0.0),
    }


def summarise(
    domain: str,
    delivery: str,
    rate: float,
    produced: dict[str, Any],
    *,
    values: list[float],
    worker_send: list[float],
    broker: dict[str, Any],
    cpu: dict[str, float | None],
    stalls: dict[str, Any],
) -> dict[str, Any]:
    """One load's figures, logged: with the broker's (:func:`_broker`), the cores the
    machine and the worker (or loop) kept busy (:class:`CpuWatch`), the machine's own
    stops (:class:`StallProbe`), and the input's own leg: its producer's send to Kafka's
    acknowledgement."""
    figures = percentiles(values)
    at_send = percentiles(worker_send)
    result = (
        {
            "delivery": delivery,
            "rate": rate,
            "events": len(values),
            "achieved_rate": produced["sent"] / produced["seconds"],
            "p50_ms": figures["p50"],
            "p95_ms": figures["p95"],
            "p99_ms": figures["p99"],
            "max_ms": max(values) if values else None,
            "to_worker_send_p50_ms": at_send["p50"],
            "to_worker_send_p99_ms": at_send["p99"],
            "input_acked_p99_ms": produced["ack_ms"]["p99"],
        }
        | broker
        | cpu
        | stalls
    )
    log.info(
        "%s latency at %.0f/s (%s): p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; to the "
        "worker's send p50 %.1f ms, p99 %.1f ms; input acknowledged p99 %.1f ms; %s; "
        "%s; the broker: %s",
        domain,
        rate,
        delivery,
        figures["p50"],
        figures["p95"],
        figures["p99"],
        at_send["p50"],
        at_send["p99"],
        produced["ack_ms"]["p99"],
        _cpu_text(cpu),
        _stalls_text(stalls),
        _broker_text(broker),
    )
    return result


def during_fit(
    env: Env, setup: DomainSetup, rate: float, seconds: float, client: str = "librdkafka"
) -> dict[str, Any]:
    """One load while a retrain-like fit (one thread, lower priority) runs beside it."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.fitload", str(seconds * 3 + 120)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "fitting":
            raise RuntimeError("the fit child did not start fitting")
        return one_load(env, setup, rate, seconds, client=client) | {"during_fit": True}
    finally:
        child.terminate()
        child.wait(30)


def run(
    env: Env,
    setup: DomainSetup,
    *,
    max_rate: float,
    seconds: float,
    client: str = "librdkafka",
    half_loads: int = HALF_LOADS,
) -> dict[str, Any]:
    """The latency section of one domain: after the warm-up loads (kept apart), the
    at-least-once loads at 25, 50 and 75 %, where each of the ``half_loads`` loads at 50 %
    is followed by one of the pass-through baseline (and, with the librdkafka harness,
    one of the same loop on librdkafka); then 50 % exactly-once, 50 %
    at-least-once while a retrain fits on the same machine, and the floor (no loop) at
    50 %; the harness's producer and reader on ``client``."""
    half = max_rate * 0.5
    warm_up = [
        one_load(env, setup, half, min(seconds, WARM_UP_LOAD_S), delivery, client=client)
        | {"share": 0.5, "warm_up": True}
        for delivery in ("at-least-once", "exactly-once")
    ]
    runs = [one_load(env, setup, max_rate * 0.25, seconds, client=client) | {"share": 0.25}]
    for repeat in range(1, half_loads + 1):
        worker = one_load(env, setup, half, seconds, client=client)
        runs.append(worker | {"share": 0.5, "repeat": repeat})
        baseline = passthrough_load(env, setup, half, seconds, client)
        runs.append(baseline | {"share": 0.5, "baseline": True, "repeat": repeat})
        if client == "librdkafka":  # confluent-kafka is installed
            native = passthrough_load(env, setup, half, seconds, client, loop="rdkafka_pipelined")
            runs.append(native | {"share": 0.5, "native_baseline": True, "repeat": repeat})
    runs.append(one_load(env, setup, max_rate * 0.75, seconds, client=client) | {"share": 0.75})
    runs.append(one_load(env, setup, half, seconds, "exactly-once", client=client) | {"share": 0.5})
    runs.append(during_fit(env, setup, half, seconds, client) | {"share": 0.5})
    floor = floor_load(env, setup, half, seconds, client)
    runs.append(floor | {"share": 0.5, "floor": True})
    return {
        "max_rate": max_rate,
        "seconds": seconds,
        "client": client,
        "warm_up": warm_up,
        "runs": runs,
    }


def _broker_text(broker: dict[str, Any]) -> str:
    if broker["broker_cpu_s"] is None:
        return "not ours to watch"
    return (
        f"{broker['broker_cpu_s']:.1f} s CPU ({broker['broker_jit_cpu_s']:.1f} compiling),"
        f" {broker['broker_gc_pauses']} GC pauses, longest {broker['broker_gc_max_ms'] or 0:.1f} ms"
    )


def _stalls_text(stalls: dict[str, Any]) -> str:
    if stalls["stalls"] is None:
        return "machine stalls not measured (the probe failed)"
    return (
        f"machine stalls of {COUNT_FROM_MS:.0f} ms or more: {stalls['stalls']} "
        f"({stalls['stalled_ms']:.0f} ms in all, the longest {stalls['stall_max_ms']:.1f} ms; "
        f"probe at nice {stalls['stall_probe_nice']})"
    )


def _cpu_text(cpu: dict[str, float | None]) -> str:
    own = [f"the {k.removesuffix('_cores')} {v:.2f}" for k, v in cpu.items()
           if not k.startswith("machine_") and v is not None]  # fmt: skip
    return (
        f"cores busy {cpu['machine_busy_cores'] or 0:.2f}"
        + (f" ({', '.join(own)})" if own else "")
        + (f", stolen {cpu['machine_steal_cores']:.2f}" if cpu.get("machine_steal_cores") else "")
    )
