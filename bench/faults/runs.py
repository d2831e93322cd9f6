"""The fault-injection runs: each streams a known set of ids through a worker, injects
one fault, and counts every id in the output (predictions + dead letters).

Every run uses the Kafka and Redis the fault harness started on free ports (faults stop
and start them), fresh topics, and a registry key prefix of its own. A producer child
sends ``f-<n>`` at a steady rate (its delivery timeout outlasts every outage, so every
event is eventually acknowledged); once a third of the events are predicted, the fault is
injected. The
run ends when the group has committed every input offset. Time to recover: from the end
of the fault (restart issued, service back) until every event sent before that moment
has its prediction.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from bench.data import promote_version, register
from bench.env import Env, create_topic, metric, new_tag, wait_until
from bench.faults.hostile import expected_reason_counts, hostile_messages
from bench.sections.latency import templates
from bench.sections.throughput import DomainSetup
from bench.stats import Accounting
from bench.stream import StreamRun, input_index, read_records
from bench.worker import WorkerGroup
from inferloop.connections import make_producer
from inferloop.ops.lag import group_lag
from inferloop.registry import Registry, RegistryError
from inferloop.registry.signing import generate_key_pair
from inferloop.settings import Settings

log = logging.getLogger(__name__)

TAG = "f"
FAULT_AT = 1 / 3
BROKER_OUTAGE_S = 25.0
REDIS_OUTAGE_S = 30.0
# Streamed after the version promoted past the Redis outage is in use.
AFTER_SWAP_S = 3.0
# An event sent during the Redis outage up to this long before its end must be scored by then.
SCORE_WITHIN_MS = 5_000
# Short client timeouts so that a 25 s broker outage outlasts the worker producer's
# delivery timeout (max(linger + request timeout, max_poll_interval / 2) = 15 s).
BROKER_FAULT_KAFKA = {"request_timeout_ms": 10_000}
# The outage outlasts exactly-once's transaction timeout (10 s by default): the
# coordinator aborts the open transaction and fences the producer, and the worker starts
# over with a new one from the committed offsets.
BROKER_FAULT_WORKER = {"max_poll_interval_ms": 30_000}
BIG_MESSAGES = {"max.message.bytes": str(16 * 1024 * 1024)}


@dataclass
class FaultResult:
    """One fault run, counted."""

    fault: str
    delivery: str
    events_in: int = 0
    predictions: int = 0
    dead_letters: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    recover_s: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """0 lost; 0 duplicated in exactly-once; every fault-specific check held."""
        no_dupes = self.delivery != "exactly-once" or self.duplicated == 0
        return self.lost == 0 and self.unexpected == 0 and no_dupes and all(self.checks.values())

    def counted(self, accounting: Accounting) -> FaultResult:
        """Take the counts of ``accounting``."""
        for name, value in asdict(accounting).items():
            setattr(self, name, value)
        return self

    def as_dict(self) -> dict[str, Any]:
        """For the JSON results."""
        return asdict(self) | {"passed": self.passed}


@dataclass
class Context:
    """What every fault run needs: the services, the domain's champion, the sizes."""

    env: Env
    setup: DomainSetup
    rate: float
    seconds: float

    @property
    def count(self) -> int:
        """Events a run streams."""
        return int(self.rate * self.seconds)

    def settings(self, name: str, delivery: str, **worker: Any) -> Settings:
        """Fresh topics and a registry prefix of its own with the champion registered."""
        prefix = f"{self.setup.key_prefix}-{name}-{delivery}"
        settings = self.env.settings(new_tag(name), prefix, delivery=delivery, **worker)
        register(self.env.signing(settings), self.setup.champion, promote=True)
        return settings

    def stream(self, settings: Settings, name: str) -> StreamRun:
        """A started stream run of one worker process."""
        return StreamRun(
            self.env,
            settings,
            self.setup.domain,
            templates(self.env, self.setup),
            name=name,
            keep_values=True,
        ).start()


Inject = Callable[[StreamRun], float]


def streamed_with_fault(ctx: Context, run: StreamRun, inject: Inject) -> float:
    """Stream ``ctx.count`` events, inject the fault once a third are predicted, wait until the
    group has committed everything; the wall time the fault ended."""
    producer = run.produce(TAG, ctx.count, ctx.rate, delivery_timeout_ms=300_000)
    # Counted in predictions, not seconds: a child process can take many seconds to start
    # on a loaded machine, and a broker stopped before its producer bootstraps fails the
    # producer, not the worker. (The worker's own fault hook may fire before that: then
    # the fault is injected at once.)
    assert run.reader is not None
    reader, third = run.reader, int(ctx.count * FAULT_AT)
    wait_until(
        lambda: reader.count() >= third or not all(c.alive() for c in run.workers.children),
        ctx.seconds * FAULT_AT + 120,
        f"{third} predictions before the fault",
        0.05,
    )
    fault_end = inject(run)
    run.produced_by(producer, ctx.seconds * 3 + 300)
    wait_drained(run, timeout_s=300)
    return fault_end


def wait_drained(run: StreamRun, timeout_s: float) -> None:
    """Until the group has committed every offset of the input topic (and a moment for the
    reader to see the last predictions)."""
    wait_until(
        lambda: group_lag(run.settings, run.domain).total == 0,
        timeout_s,
        "the group to commit every input offset",
        0.5,
    )
    time.sleep(2.0)


def recovery_s(run: StreamRun, fault_end: float) -> float | None:
    """From ``fault_end`` until every event sent before it had a prediction."""
    assert run.reader is not None
    sent = input_index(run.settings, run.topics.events)
    first_seen: dict[str, float] = {}
    for got in run.reader.received:
        first_seen.setdefault(got.key, got.received_wall)
    before = [
        first_seen[k]
        for k, r in sent.items()
        if r.timestamp_ms <= fault_end * 1000 and k in first_seen
    ]
    return max(max(before) - fault_end, 0.0) if before else None


def versions_seen(run: StreamRun) -> Counter[int]:
    """Predictions per model version, as read back."""
    assert run.reader is not None
    return Counter(
        int(json.loads(got.value)["model"]["version"])
        for got in run.reader.received
        if got.value is not None
    )


# -- 1. kill -9 ----------------------------------------------------------------------------
def kill_restart(ctx: Context, delivery: str, *, hook: bool = False) -> FaultResult:
    """``kill -9`` of the worker mid-stream (or, with ``hook``, by the worker itself after
    writing a batch and before committing it), then a restart of the same slot."""
    name = "kill9-hook" if hook else "kill9"
    settings = ctx.settings(name, delivery)
    armed = settings.model_copy(
        update={
            "worker": settings.worker.model_copy(
                # The n-th batch, not the n-th event: a loaded machine makes batches
                # larger and fewer, and 150 of them (count // 200) were not reached in a
                # 30 s stream at load average 13.
                update={"fault": f"before_commit:kill:{max(ctx.count // 600, 5)}"}
            )
        }
    )
    run = StreamRun(
        ctx.env,
        armed if hook else settings,
        ctx.setup.domain,
        templates(ctx.env, ctx.setup),
        name=name,
        keep_values=True,
    ).start()

    def inject(run: StreamRun) -> float:
        child = run.workers.children[0]
        if hook:
            wait_until(lambda: not child.alive(), ctx.seconds * 2, "the fault hook's kill", 0.05)
        else:
            os.kill(child.pid, signal.SIGKILL)
            child.process.wait(10)
        killed = time.time()
        code = child.process.returncode
        run.workers = WorkerGroup.start(ctx.env, settings, ctx.setup.domain, 1, name=f"{name}-2")
        log.info("%s (%s): worker killed (exit %s), restarted", name, delivery, code)
        return killed

    return finish(
        ctx, run, f"kill -9{' at before_commit (hook)' if hook else ''}, restart", delivery, inject
    )


# -- 2. broker stopped ---------------------------------------------------------------------
def broker_outage(ctx: Context, delivery: str) -> FaultResult:
    """Kafka stopped for longer than the worker producer's delivery timeout, then started."""
    kafka = ctx.env.services.kafka if ctx.env.services else None
    if kafka is None:
        raise SystemExit("the broker fault needs the harness's own Kafka")
    settings = ctx.settings("broker", delivery, **BROKER_FAULT_WORKER)
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update=BROKER_FAULT_KAFKA)}
    )
    run = ctx.stream(settings, "broker")
    pids: list[int] = []
    timing: dict[str, float] = {}

    def inject(run: StreamRun) -> float:
        pids.extend(c.pid for c in run.workers.children)
        kafka.stop()
        time.sleep(BROKER_OUTAGE_S)
        # Recovery counts from the restart issued, as for a killed worker: start() returns
        # only once the broker logs that it started, which under load came after the
        # worker had caught up (a recovery of 0 s).
        restart = timing["restart"] = time.time()
        kafka.start(120)
        timing["started"] = time.time()
        return restart

    result = finish(ctx, run, f"broker stopped {BROKER_OUTAGE_S:.0f} s", delivery, inject)
    start_s = result.extra["broker_start_s"] = timing["started"] - timing["restart"]
    result.notes = f"recovery from the restart; the broker reported started after {start_s:.1f} s"
    # The worker rode the outage out: the process that had it is the one still there at
    # the end (alive then: checked by finish()).
    result.checks["worker not restarted"] = pids == [c.pid for c in run.workers.children]
    return result


# -- 3. Redis stopped ----------------------------------------------------------------------
def redis_outage(ctx: Context, delivery: str) -> FaultResult:
    """Redis stopped for 30 s mid-stream; a version promoted after it returns."""
    local = ctx.env.services.redis if ctx.env.services else None
    if local is None:
        raise SystemExit("the Redis fault needs the harness's own Redis")
    settings = ctx.settings("redis", delivery)
    signing = ctx.env.signing(settings)
    new = register(signing, ctx.setup.challenger(), promote=False).version
    run = ctx.stream(settings, "redis")
    timing: dict[str, float] = {}

    def inject(run: StreamRun) -> float:
        local.stop()
        timing["stopped"] = time.time()
        time.sleep(REDIS_OUTAGE_S)
        local.start(60)
        back = timing["back"] = time.time()
        with Registry.from_settings(signing) as registry:
            promote_version(registry, ctx.setup.domain, new)
        timing["promoted"] = time.time()
        wait_until(
            lambda: (run.workers.health() or {}).get("model_version") == new,
            120,
            "the worker to swap to the version promoted after the outage",
            0.05,
        )
        timing["swapped"] = time.time()
        # The stream may be over by now (it is shorter than the fault): events that only
        # the promoted version can score.
        late = run.produce(
            TAG,
            int(ctx.rate * AFTER_SWAP_S),
            ctx.rate,
            start=ctx.count,
            delivery_timeout_ms=300_000,
        )
        run.produced_by(late, AFTER_SWAP_S * 3 + 120)
        return back

    result = finish(
        ctx, run, f"Redis stopped {REDIS_OUTAGE_S:.0f} s, promotion after", delivery, inject
    )
    assert run.reader is not None
    sent = input_index(settings, run.topics.events)
    stopped_ms, back_ms = timing["stopped"] * 1000, timing["back"] * 1000
    # Sent while Redis was down (but for its last seconds, to leave time to score them).
    sent_during = {
        k for k, r in sent.items() if stopped_ms <= r.timestamp_ms <= back_ms - SCORE_WITHIN_MS
    }
    scored_during = {g.key for g in run.reader.received if stopped_ms <= g.timestamp_ms <= back_ms}
    sent_after = {k for k, r in sent.items() if r.timestamp_ms > timing["swapped"] * 1000}
    by_new = {
        g.key
        for g in run.reader.received
        if g.value is not None and int(json.loads(g.value)["model"]["version"]) == new
    }
    result.extra |= {
        "sent_during_outage": len(sent_during),
        "predicted_during_outage": len(scored_during),
        "sent_after_swap": len(sent_after),
        "swap_after_promotion_s": timing["swapped"] - timing["promoted"],
        "versions": dict(versions_seen(run)),
    }
    result.checks["scored during the outage"] = bool(sent_during) and sent_during <= scored_during
    result.checks["promotion picked up"] = bool(sent_after) and sent_after <= by_new
    result.notes = (
        f"{len(scored_during)} predictions during the outage "
        f"({len(sent_during - scored_during)} of {len(sent_during)} events sent then, up to "
        f"{SCORE_WITHIN_MS / 1000:.0f} s before its end, not scored by its end); new version in "
        f"use {timing['swapped'] - timing['promoted']:.1f} s after its promotion, "
        f"{len(sent_after & by_new)} of {len(sent_after)} events sent after the swap scored by it"
    )
    return result


# -- 4. hostile input ----------------------------------------------------------------------
def hostile_input(ctx: Context, delivery: str) -> FaultResult:
    """Every kind of hostile message mixed into the stream (the topic takes 16 MB messages)."""
    settings = ctx.settings("hostile", delivery)
    create_topic(
        settings, settings.topics.prefix + settings.topics.transactions, config=BIG_MESSAGES
    )
    messages = hostile_messages("h", copies=2)
    run = ctx.stream(settings, "hostile")

    def inject(run: StreamRun) -> float:
        producer = make_producer(settings.kafka, acks="all", max_request_size=16 * 1024 * 1024)
        try:
            for m in messages:
                producer.send(run.topics.events, key=m.key.encode(), value=m.value)
                time.sleep(0.01)
            producer.flush(60)
        finally:
            producer.close(10)
        return time.time()

    extra = Counter(m.key for m in messages)
    result = finish(ctx, run, "hostile input mixed in", delivery, inject, extra=extra)
    letters = read_records(settings, run.topics.dlq)
    reasons = {
        r.key.decode(): dict(r.headers).get("dlq.reason", b"").decode() for r in letters if r.key
    }
    # A message valid after all must be predicted, never dead-lettered (the count of lost
    # ids would not see it: a dead letter counts as found).
    wrong = {m.kind: reasons.get(m.key) for m in messages if reasons.get(m.key) != m.reason}
    result.checks["each hostile message dead-lettered with its reason"] = not wrong
    result.extra |= {
        "hostile_messages": len(messages),
        "wrong_reasons": wrong,
        "expected_reasons": expected_reason_counts(messages),
    }
    result.notes = (
        f"{len(messages)} hostile messages of {len({m.kind for m in messages})} "
        f"kinds; {'all' if not wrong else 'NOT all'} dead-lettered with their reason"
    )
    return result


# -- 5. tampered artifact ------------------------------------------------------------------
def tampered_artifact(ctx: Context, delivery: str) -> FaultResult:
    """Two attacks on the artifacts, mid-stream. A version whose bytes were changed after
    signing: ``registry promote`` verifies its target and refuses it. Then a version
    signed by a key the workers do not trust, moved to champion by someone with write
    access to Redis (a registry of their own, trusting their key): the worker refuses it
    before unpickling anything and keeps serving the version it has."""
    settings = ctx.settings("tamper", delivery)
    signing = ctx.env.signing(settings)
    with Registry.from_settings(signing) as old:
        current = old.resolve(ctx.setup.domain)
        tampered = register(signing, ctx.setup.challenger(), promote=False).version
        key = old.keys.artifact(ctx.setup.domain, tampered)
    with redis.Redis.from_url(settings.redis.url) as client:
        data = bytearray(client.get(key) or b"")
        data[len(data) // 2] ^= 0x01
        client.set(key, bytes(data))
    stranger = generate_key_pair(ctx.env.home / f"stranger-{delivery}", "stranger")
    section = settings.registry.model_copy(update={"signing_key_path": stranger.private_path})
    attacker = settings.model_copy(update={"registry": section})
    run = ctx.stream(settings, "tamper")
    timing: dict[str, float] = {}
    refusal: dict[str, str] = {}
    untrusted: dict[str, int] = {}

    def inject(run: StreamRun) -> float:
        with Registry.from_settings(signing) as registry:
            try:
                promote_version(registry, ctx.setup.domain, tampered)
            except RegistryError as exc:
                refusal["promote"] = f"{type(exc).__name__}: {exc}"
        untrusted["version"] = register(attacker, ctx.setup.challenger(), promote=True).version
        timing["promoted"] = time.time()
        wait_until(
            lambda: (
                untrusted["version"] in (run.workers.health() or {}).get("refused_versions", [])
            ),
            60,
            "the worker to refuse the untrusted version",
            0.05,
        )
        timing["refused"] = time.time()
        return timing["promoted"]

    refused_metric: dict[str, float | None] = {}

    def before_stop(run: StreamRun) -> None:
        refused_metric["n"] = metric(
            run.workers.ports[0],
            "inferloop_worker_models_refused_total",
            {"version": str(untrusted["version"])},
        )

    result = finish(
        ctx, run, "tampered artifact promoted", delivery, inject, before_stop=before_stop
    )
    versions = versions_seen(run)
    kept = current.version if current else None
    bad = untrusted.get("version")
    result.checks["registry promote refused the tampered bytes"] = "Digest" in refusal.get(
        "promote", ""
    )
    result.checks["never loaded: every prediction by the old version"] = set(versions) == {kept}
    result.checks["refusal reported (metric)"] = refused_metric.get("n") == 1
    result.recover_s = None
    result.notes = (
        f"promote of tampered v{tampered} refused by the registry; untrusted v{bad} moved to "
        f"champion in Redis, refused by the worker "
        f"{timing['refused'] - timing['promoted']:.2f} s later; worker kept v{kept}"
    )
    result.extra |= {
        "versions": dict(versions),
        "refused_metric": refused_metric.get("n"),
        "promote_refusal": refusal.get("promote"),
    }
    return result


# -- shared end of a run -------------------------------------------------------------------
def finish(
    ctx: Context,
    run: StreamRun,
    fault: str,
    delivery: str,
    inject: Inject,
    *,
    extra: Counter[str] | None = None,
    before_stop: Callable[[StreamRun], None] | None = None,
) -> FaultResult:
    """Stream with the fault, stop, count."""
    result = FaultResult(fault, delivery)
    try:
        fault_end = streamed_with_fault(ctx, run, inject)
        result.checks["worker alive at the end"] = all(c.alive() for c in run.workers.children)
        if before_stop is not None:
            before_stop(run)
    finally:
        run.stop()
    result.counted(run.account(TAG, extra=extra))
    result.recover_s = recovery_s(run, fault_end)
    log.info(
        "fault %s (%s): in %d, predicted %d, dead %d, lost %d, duplicated %d, recovered in %s s",
        fault,
        delivery,
        result.events_in,
        result.predictions,
        result.dead_letters,
        result.lost,
        result.duplicated,
        result.recover_s,
    )
    return result


FAULTS: dict[str, Callable[[Context], list[FaultResult]]] = {
    "kill": lambda ctx: (
        [kill_restart(ctx, d) for d in ("at-least-once", "exactly-once")]
        + [kill_restart(ctx, d, hook=True) for d in ("at-least-once", "exactly-once")]
    ),
    "broker": lambda ctx: [broker_outage(ctx, d) for d in ("at-least-once", "exactly-once")],
    "redis": lambda ctx: [redis_outage(ctx, "at-least-once")],
    "hostile": lambda ctx: [hostile_input(ctx, d) for d in ("at-least-once", "exactly-once")],
    "tamper": lambda ctx: [tampered_artifact(ctx, "at-least-once")],
}
