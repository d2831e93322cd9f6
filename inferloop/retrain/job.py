"""One retrain of one domain: snapshot, fit, evaluate against the champion, register, gate.

The run holds the domain's lease from start to end. It reads the labels topic up to
the end offsets taken at its start, fits the domain's pipeline on the older side of a
time split, scores the candidate and the current champion on the same holdout,
registers the candidate with both results and a report, and lets the gate decide.
Promotion names the champion that was evaluated and the run's lock token, both
checked by the registry in one atomic step: a run whose lease was taken over, or
whose champion moved meanwhile, cannot promote.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from inferloop.domains import DomainSpec, get_domain
from inferloop.domains.metrics import RealisedRate, RecallShortfall
from inferloop.errors import InferloopError, RedisUnavailableError
from inferloop.keys import Keys
from inferloop.registry import CHALLENGER, AliasTarget, LockGuard, ModelVersion, Registry
from inferloop.registry.errors import LockLostError, PromotionConflictError, RegistryError
from inferloop.retrain.bootstrap import ModelScores
from inferloop.retrain.cache import SnapshotCache
from inferloop.retrain.dataset import new_label_count
from inferloop.retrain.errors import (
    CancelledError,
    LockHeldError,
    NotEnoughDataError,
    RetrainError,
    RetrainPermissionError,
)
from inferloop.retrain.gate import GUARDRAILS, Contender, GateConfig, GateResult, decide
from inferloop.retrain.lock import Lease, LeaseLock, default_holder
from inferloop.retrain.outcome import Outcome, RunOutcome
from inferloop.retrain.progress import Progress
from inferloop.retrain.provenance import code_commit, lock_file_sha256
from inferloop.retrain.recipe import Recipe, Trained, holdout_rows, train_and_score
from inferloop.retrain.report import build_report, report_folder, write_report
from inferloop.retrain.snapshot import Snapshot, SnapshotReader
from inferloop.retrain.status import iso, record_run, redis_errors, utc_now
from inferloop.settings import Domain, Settings
from inferloop.topics import for_settings

log = logging.getLogger(__name__)

# Fields of a labelled example that are not part of the event itself.
LABEL_FIELDS = ("label", "labelled_at", "label_source")


def new_run_id() -> str:
    """A short random id for one run."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class RunRequest:
    """What to run: a domain, why, and whether to skip the new-labels check."""

    domain: Domain
    trigger: str = "cli"
    force: bool = False
    seed: int | None = None
    # Pipeline parameters for this run only (``step__parameter``), recorded in the recipe.
    params: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = field(default_factory=new_run_id)
    fire_time: str | None = None


@dataclass(frozen=True)
class Champion:
    """The champion a run evaluates against."""

    target: AliasTarget
    version: ModelVersion


@dataclass(frozen=True)
class ThresholdChoice:
    """The candidate's threshold, where it came from, and how it held on the holdout.

    ``realised`` is the rate of the threshold chosen on the calibration window, on the
    holdout (never seen by it). When it is over the target and its upper 95 % bound
    exceeds twice the target, or when it caught far fewer positives of the holdout than
    of the calibration window (:class:`RecallShortfall`: a threshold above the new
    positives' scores, which the ranking gate alone would let through), the threshold
    is chosen again on calibration + holdout (``source`` "holdout"), the newest
    labelled data there is, rather than ship one known to miss or refuse a better model
    for it; live labels check it again during probation.
    """

    threshold: float
    source: str  # calibration | pooled_folds | holdout
    target: str
    target_rate: float
    calibration_threshold: float
    realised: RealisedRate
    # The candidate's on the holdout, at ``threshold``: in-sample when it was re-derived
    # with the holdout (reported; the gate judges a threshold metric at a matched point).
    metrics: dict[str, float]
    recall: RecallShortfall  # the calibration threshold's recall: promised and on the holdout

    @property
    def in_sample(self) -> bool:
        """Whether the threshold was chosen with the holdout its metrics are taken on."""
        return self.source == "holdout"

    def as_dict(self) -> dict[str, Any]:
        """The choice as plain values (for params, the report and the record)."""
        return {
            "threshold": self.threshold,
            "source": self.source,
            "metrics_in_sample": self.in_sample,
            "target": self.target,
            "target_rate": self.target_rate,
            "calibration_threshold": self.calibration_threshold,
            "holdout_realised": self.realised.as_dict(),
            "recall_promised": self.recall.promised,
            "holdout_recall": self.recall.holdout.as_dict(),
        }


def choose_threshold(spec: DomainSpec, trained: Trained) -> ThresholdChoice:
    """The calibration window's threshold, judged on the holdout (see :class:`ThresholdChoice`)."""
    target = spec.target()
    fitted, y, scores = trained.fitted, trained.holdout_y, trained.holdout_scores
    realised = RealisedRate.of_counts(*target.errors(y, scores, fitted.threshold))
    cal_y, cal_scores = fitted.calibration()
    recall = RecallShortfall.of(cal_y, cal_scores, y, scores, fitted.threshold)
    threshold, source, metrics = fitted.threshold, fitted.threshold_source, trained.metrics
    missed = realised.rate > target.rate and realised.upper > 2 * target.rate
    if missed or recall.collapsed:
        threshold = spec.choose_threshold(
            np.concatenate([cal_y, y]), np.concatenate([cal_scores, scores])
        )
        source = "holdout"
        metrics = spec.metrics(y, scores, threshold)
        log.warning(
            "%s: the calibration threshold %.6f gave %d of %d (%.2f%%, up to %.2f%%) on the "
            "holdout against a target of %.2f%%, recall %.3f (up to %.3f) against %.3f on "
            "calibration: re-derived on calibration + holdout: %.6f",
            spec.name,
            fitted.threshold,
            realised.errors,
            realised.of,
            100 * realised.rate,
            100 * realised.upper,
            100 * target.rate,
            recall.holdout.rate,
            recall.holdout.upper,
            recall.promised,
            threshold,
        )
    return ThresholdChoice(
        threshold=threshold,
        source=source,
        target=target.describe(),
        target_rate=target.rate,
        calibration_threshold=fitted.threshold,
        realised=realised,
        metrics=metrics,
        recall=recall,
    )


@dataclass(frozen=True)
class Evaluation:
    """Both models on the holdout, the candidate's threshold, and the gate's verdict."""

    candidate: Contender
    champion: Contender | None
    gate: GateResult
    threshold: ThresholdChoice


@dataclass
class _Run:
    """One run's state, filled in step by step."""

    request: RunRequest
    lease: Lease
    record: RunOutcome
    spec: DomainSpec
    recipe: Recipe
    champion: Champion | None
    snapshot: Snapshot = field(init=False)
    golden: list[dict[str, Any]] = field(default_factory=list)
    trained: Trained = field(init=False)
    evaluation: Evaluation = field(init=False)


class RetrainJob:
    """Runs retrains of the domains with one registry and one settings object."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        role: str = "cli",
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.role = role
        self.progress = progress or Progress()
        self.cancel = cancel or threading.Event()
        self.keys = Keys(settings.redis.key_prefix)
        self._leases: dict[str, Lease] = {}
        self._leases_lock = threading.Lock()

    def release_leases(self) -> list[str]:
        """Release the leases of runs in progress (a stopping service); their domains.

        The runs go on until their next step, where they stop; one that reaches its
        promotion first fails the registry's lock check and cannot promote.
        """
        with self._leases_lock:
            leases = list(self._leases.items())
        for domain, lease in leases:
            lease.release()
            log.warning("released the retrain lease of %s held by %s", domain, lease.holder)
        return [domain for domain, _ in leases]

    def lock(self, domain: str) -> LeaseLock:
        """The lease lock of ``domain``'s retrain."""
        return LeaseLock(
            self.registry.client, self.keys.retrain_lock(domain), self.settings.retrain.lock_lease_s
        )

    def run(self, request: RunRequest) -> RunOutcome:
        """Run one retrain under the domain's lease; the outcome says what happened."""
        record = RunOutcome(
            run_id=request.run_id,
            domain=request.domain,
            trigger=request.trigger,
            outcome="failed",
            reason="",
            started_at=iso(utc_now()),
            fire_time=request.fire_time,
        )
        started = time.perf_counter()
        log.info(
            "retrain %s [%s] start (%s%s)",
            request.domain,
            request.run_id,
            request.trigger,
            ", forced" if request.force else "",
        )
        lease = self._acquire(request, record)
        if lease is None:
            return self._finish(record, started)
        try:
            self._run_locked(request, lease, record)
        except CancelledError as exc:
            record.outcome, record.reason = "cancelled", str(exc)
        except NotEnoughDataError as exc:
            record.outcome, record.reason = "skipped", str(exc)
        except InferloopError as exc:
            # An expected error: its message says what to do, and the run's summary line
            # (logged by _finish) carries it; the traceback is for debugging only.
            log.debug("retrain %s [%s] failed", request.domain, request.run_id, exc_info=True)
            record.outcome, record.reason = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            with self._leases_lock:
                self._leases.pop(request.domain, None)
            lease.release()
        return self._finish(record, started)

    def _acquire(self, request: RunRequest, record: RunOutcome) -> Lease | None:
        """The domain's lease, or None with the reason in ``record``."""
        try:
            with redis_errors(self.settings.redis):
                lease = self.lock(request.domain).acquire(
                    default_holder(f"{self.role}:{request.run_id}")
                )
        except LockHeldError as exc:
            record.outcome, record.reason, record.lock_holder = "lock_held", str(exc), exc.holder
            return None
        except (RedisUnavailableError, RetrainPermissionError) as exc:
            record.outcome, record.reason = "failed", str(exc)
            return None
        with self._leases_lock:
            self._leases[request.domain] = lease
        return lease

    def _finish(self, record: RunOutcome, started: float) -> RunOutcome:
        record.finished_at = iso(utc_now())
        record.duration_s = round(time.perf_counter() - started, 3)
        if record.outcome != "lock_held":
            record_run(self.registry.client, self.keys, record)
        level = logging.INFO if record.successful else logging.WARNING
        log.log(level, "%s", record.summary_line())
        return record

    @contextmanager
    def _step(self, record: RunOutcome, name: str) -> Iterator[None]:
        if self.cancel.is_set():
            raise CancelledError(f"stopped before {name}: the service is shutting down")
        started = time.perf_counter()
        try:
            yield
        finally:
            record.durations_s[name] = round(time.perf_counter() - started, 3)

    # -- the run ---------------------------------------------------------------------
    def _run_locked(self, request: RunRequest, lease: Lease, record: RunOutcome) -> None:
        spec = get_domain(request.domain)
        self._check_signing()
        run = _Run(
            request,
            lease,
            record,
            spec,
            Recipe.from_settings(spec, self.settings.retrain, request.seed, request.params),
            self._champion(request.domain),
        )
        record.champion_version = run.champion.target.version if run.champion else None
        with self._step(record, "read"):
            if not self._read(run):
                return
        with self._step(record, "fit"):
            run.trained = train_and_score(
                spec,
                run.snapshot,
                run.recipe,
                nice=self.settings.retrain.fit_nice,
                progress=self.progress,
            )
        record.examples, record.holdout = len(run.trained.examples), len(run.trained.split.holdout)
        record.durations_s.update(
            {f"fit.{k}": round(v, 3) for k, v in run.trained.durations_s.items()}
        )
        record.holdout_positives = int(run.trained.holdout_y.sum())
        with self._step(record, "evaluate"):
            run.evaluation = self._evaluate(run)
        record.primary_metric = spec.primary_metric
        record.candidate = run.evaluation.gate.candidate
        record.champion = run.evaluation.gate.champion
        record.threshold_source = run.evaluation.threshold.source
        record.champion_below_floor = run.evaluation.gate.champion_below_floor
        with self._step(record, "register"):
            version = self._register(run)
            self._report(run, version)
            self._act(run, version)

    def _check_signing(self) -> None:
        # Fail before reading and fitting, not at registration minutes later.
        section = self.settings.registry
        if section.signing_key_path is None and not section.allow_unsigned:
            raise RetrainError(
                "no signing key to register versions with: set "
                "INFERLOOP_REGISTRY__SIGNING_KEY_PATH (development only: "
                "INFERLOOP_REGISTRY__ALLOW_UNSIGNED=true)"
            )

    def _champion(self, name: str) -> Champion | None:
        target = self.registry.resolve(name)
        if target is None:
            return None
        return Champion(target, self.registry.get_version(name, target.version))

    def _read(self, run: _Run) -> bool:
        """Take the snapshot (False: skipped, too few new labels)."""
        retrain = self.settings.retrain
        topic = for_settings(self.settings, run.request.domain).labels
        cache = SnapshotCache(retrain.snapshot_dir, run.spec) if retrain.use_cache else None
        with SnapshotReader(self.settings.kafka, run.spec, cache, self.progress) as reader:
            taken_at = time.time()
            ranges = reader.plan(topic, taken_at - retrain.window_s if retrain.window_s else None)
            skip = self._skip_reason(run, topic, {r.partition: r.end for r in ranges})
            if skip is not None:
                run.record.outcome, run.record.reason = "skipped", skip
                return False
            started = time.perf_counter()
            run.snapshot = reader.read(topic, ranges, taken_at)
            read_s = time.perf_counter() - started
            per_partition = max(1, math.ceil(retrain.golden_events / max(len(ranges), 1)))
            golden = golden_events(run.spec, reader.tail(topic, ranges, per_partition))
        run.record.durations_s["read.snapshot"] = round(read_s, 3)
        run.record.durations_s["read.parse"] = round(run.snapshot.parse_s, 3)
        run.golden = golden[: retrain.golden_events]
        run.record.records_read = run.snapshot.records_from_kafka
        return True

    def _skip_reason(self, run: _Run, topic: str, ends: dict[int, int]) -> str | None:
        """Why the run need not fit (None: it must).

        New labels are counted since the champion's data set, and since the data set of
        the newest version fitted with this very recipe, whatever the gate made of it: a
        refused candidate refitted on the same data with the same recipe is the same
        candidate, so a schedule waits for new labels rather than refit it every tick.
        """
        needed = self.settings.retrain.min_new_labels
        if run.request.force:
            return None
        references = [] if run.champion is None else [run.champion.version]
        references += self._same_recipe(run)
        for version in references:
            new = new_label_count(ends, dict(version.lineage), topic)
            if new is not None and new < needed:
                which = "champion " if run.champion and version is run.champion.version else ""
                return (
                    f"{new} new labelled records since {which}v{version.version}'s data set; "
                    f"{needed} needed (--force runs anyway)"
                )
        return None

    def _same_recipe(self, run: _Run) -> list[ModelVersion]:
        """The newest version fitted with ``run``'s recipe (none, or one)."""
        if run.champion is None:
            return []
        recipe = run.recipe.sha256()
        versions = self.registry.list_versions(run.spec.name)
        same = [v for v in versions if v.lineage.get("training_config_sha256") == recipe]
        return same[-1:]

    def _evaluate(self, run: _Run) -> Evaluation:
        spec, trained = run.spec, run.trained
        choice = choose_threshold(spec, trained)
        # A threshold chosen with the holdout makes its figures there in-sample: the
        # gate gets the calibration threshold's (out of sample) for when it cannot judge
        # at a matched operating point; choice.metrics are reported.
        candidate = Contender(
            ModelScores(trained.holdout_scores, choice.threshold),
            trained.metrics if choice.in_sample else choice.metrics,
            threshold_in_sample=choice.in_sample,
        )
        # A champion that cannot be compared is not scored: no figure of it on data it
        # was trained on reaches the gate, the record or the log.
        why_not = comparable_holdout(run.champion, trained)
        champion = None
        if why_not is None:
            champion, why_not = self._score_champion(run)
        retrain = self.settings.retrain
        config = GateConfig(
            primary_metric=spec.primary_metric,
            floor=spec.floor,
            margin=retrain.promotion_margin,
            min_positives=retrain.min_holdout_positives,
            rounds=retrain.bootstrap_rounds,
            seed=run.recipe.seed,
            guardrails=GUARDRAILS.get(spec.name, ()),
            target=spec.target(),
        )
        gate = decide(
            config,
            trained.holdout_y,
            candidate,
            champion,
            not_comparable=why_not,
            fallback=lambda y, s, t: spec.metrics(y, s, t)[spec.primary_metric],
        )
        return Evaluation(candidate, champion, gate, choice)

    def _score_champion(self, run: _Run) -> tuple[Contender | None, str | None]:
        if run.champion is None:
            return None, None
        target = run.champion.target
        try:
            loaded = self.registry.load(run.spec.name, target.version, digest=target.digest)
        except RegistryError as exc:
            log.warning("champion %s could not be loaded: %s", target, exc)
            return None, f"champion {target} could not be scored: {exc}"
        with threadpool_limits(limits=run.recipe.fit_threads):
            scores = loaded.pipeline.predict_proba(holdout_rows(run.spec, run.trained))[:, 1]
        threshold = run.champion.version.threshold
        metrics = run.spec.metrics(run.trained.holdout_y, scores, threshold)
        return Contender(ModelScores(scores, threshold), metrics), None

    def _register(self, run: _Run) -> ModelVersion:
        spec, trained, recipe, request = run.spec, run.trained, run.recipe, run.request
        gate, choice = run.evaluation.gate, run.evaluation.threshold
        params = {
            "seed": recipe.seed,
            "folds": recipe.folds,
            "fit_threads": recipe.fit_threads,
            "pipeline": recipe.pipeline,
            "durations_s": dict(run.record.durations_s),
            "gate": gate.as_dict(),
            "threshold": choice.as_dict(),
            "run_id": request.run_id,
            "trigger": request.trigger,
            "champion_version": run.record.champion_version,
        }
        champion = run.evaluation.champion
        version = self.registry.register(
            spec.name,
            trained.fitted.pipeline,
            domain=spec.name,
            threshold=choice.threshold,
            input_schema_version=spec.schema_version,
            golden_events=run.golden,
            params=params,
            metrics=choice.metrics,
            champion_metrics=None if champion is None else dict(champion.metrics),
            lineage=build_lineage(spec, run.snapshot, trained, recipe),
            created_by=run.lease.holder,
            description=f"{request.trigger} retrain {request.run_id}: {gate.decision}",
            tags={
                "run_id": request.run_id,
                "trigger": request.trigger,
                "decision": gate.decision,
                "threshold_source": choice.source,
                # Not a metric: a rebuild compares every metric with its own.
                "champion_below_floor": str(gate.champion_below_floor).lower(),
            },
        )
        run.record.version = version.version
        return version

    def _report(self, run: _Run, version: ModelVersion) -> None:
        spec, trained, record = run.spec, run.trained, run.record
        champion, choice = run.evaluation.champion, run.evaluation.threshold
        summary = {
            "model": {"name": spec.name, "version": version.version},
            "run": {
                "id": record.run_id,
                "trigger": record.trigger,
                "durations_s": record.durations_s,
            },
            "candidate": choice.metrics,
            "threshold": choice.as_dict(),
            "calibration": trained.fitted.describe_calibration(
                trained.examples.event_time_s[trained.split.train]
            ),
            "champion": {
                "version": record.champion_version,
                "metrics": None if champion is None else dict(champion.metrics),
            },
            "gate": run.evaluation.gate.as_dict(),
            "split": trained.split.describe(trained.examples),
            "holdout_predictions_sha256": trained.predictions_sha256,
        }
        files = build_report(
            summary=summary,
            y=trained.holdout_y,
            candidate=(trained.holdout_scores, choice.threshold),
            champion=None
            if champion is None
            else (champion.scores.scores, champion.scores.threshold),
            label_names=spec.label_names,
            title=f"{spec.name} v{version.version}",
        )
        self.registry.put_report(spec.name, version.version, files)
        folder = report_folder(self.settings, spec.name, version.version)
        record.report_dir = str(write_report(folder, files))

    def _act(self, run: _Run, version: ModelVersion) -> None:
        gate, record, lease, name = run.evaluation.gate, run.record, run.lease, run.spec.name
        if gate.champion_below_floor:
            log.warning(
                "ALARM %s: the champion is below the floor (%s %.4f < %.4f) after this run",
                name,
                gate.primary_metric,
                gate.candidate if gate.decision == "promote" else (gate.champion or math.nan),
                run.spec.floor,
            )
        if gate.decision == "insufficient_evidence":
            record.outcome, record.reason = "insufficient_evidence", gate.reason
            return
        if gate.decision == "not_comparable":
            self.registry.reject(
                name, version.version, gate.reason, actor=lease.holder, status="not_comparable"
            )
            record.outcome, record.reason = "not_comparable", gate.reason
            return
        if gate.decision == "reject":
            self.registry.reject(name, version.version, gate.reason, actor=lease.holder)
            record.outcome, record.reason = "rejected", gate.reason
            return
        try:
            record.outcome, record.reason = self._go_live(run, version)
        except LockLostError as exc:
            record.outcome, record.reason = "lease_lost", str(exc)
        except PromotionConflictError as exc:
            record.outcome, record.reason = "conflict", str(exc)
        else:
            return
        self.registry.reject(
            name, version.version, f"not promoted: {record.reason}", actor=lease.holder
        )

    def _go_live(self, run: _Run, version: ModelVersion) -> tuple[Outcome, str]:
        """Promote the gate's winner, or under shadow-first make it the challenger.

        Both moves name what they replace and the run's lease, checked by the registry
        in one atomic step, and verify the version as a worker would.
        """
        gate, lease, name = run.evaluation.gate, run.lease, run.spec.name
        guard = LockGuard(lease.key, lease.token)
        why = self._shadow_first(run)
        if why is None:
            self.registry.promote(
                name,
                version.version,
                expected_current=run.champion.target if run.champion else None,
                reason=gate.reason,
                actor=lease.holder,
                guard=guard,
                digest=version.artifact_digest,
            )
            return "promoted", gate.reason
        reason = f"shadow-first: {why}; {gate.reason}"
        # The champion stays: the alarm is about it, not about the candidate the gate's
        # flag judged as the next champion.
        run.record.champion_below_floor = (
            gate.champion is not None and gate.champion < run.spec.floor
        )
        self.registry.set_alias(
            name,
            CHALLENGER,
            version.version,
            expected_current=self.registry.resolve(name, CHALLENGER),
            reason=reason,
            actor=lease.holder,
            guard=guard,
            digest=version.artifact_digest,
        )
        return "challenger", reason

    def _shadow_first(self, run: _Run) -> str | None:
        """Why the run's winner becomes the challenger rather than the champion (None:
        it is promoted): the domain's policy, or the cool-down a rollback set.

        A first model is promoted whatever the policy: a challenger is judged against a
        champion, and there is none.
        """
        if run.champion is None:
            return None
        name = run.spec.name
        if self.settings.retrain.promotion_policy(name) == "shadow-first":
            return f"the {name}_promotion_policy setting"
        with redis_errors(self.settings.redis):
            rolled_back = self.registry.client.get(self.keys.shadow_first(name))
        if rolled_back is None:
            return None
        if isinstance(rolled_back, bytes):
            rolled_back = rolled_back.decode()
        return f"cool-down after the rollback of v{rolled_back}"


def comparable_holdout(champion: Champion | None, trained: Trained) -> str | None:
    """Why the holdout is not newer than everything the champion was trained on (None: it
    is, or there is no champion)."""
    if champion is None:
        return None
    split = dict(champion.version.lineage).get("split") or {}
    trained_until = (split.get("train") or {}).get("event_time_max_s")
    if trained_until is None:
        return (
            f"champion {champion.target}'s lineage does not say what it was "
            "trained on: the holdout cannot be shown to be new to it"
        )
    if float(trained_until) >= trained.split.cutoff_s:
        return (
            f"the holdout starts at event time {trained.split.cutoff_s:.0f}, not "
            f"after the champion's training data (up to {float(trained_until):.0f}): "
            "the champion would be scored on examples it was trained on"
        )
    return None


def golden_events(spec: DomainSpec, values: list[bytes]) -> list[dict[str, Any]]:
    """The valid events among raw labelled values, without their label fields."""
    batch = spec.validate_batch(values)
    events = []
    for index in batch.indices:
        event = json.loads(values[index])
        for name in LABEL_FIELDS:
            event.pop(name, None)
        events.append(event)
    return events


def build_lineage(
    spec: DomainSpec, snapshot: Snapshot, trained: Trained, recipe: Recipe
) -> dict[str, Any]:
    """What the version was trained on, exactly enough to rebuild it from the log."""
    examples = trained.examples
    positives = examples.positives
    return {
        "source": {
            "topic": snapshot.topic,
            "partitions": {
                str(r.partition): {"start": r.start, "end": r.end} for r in snapshot.ranges
            },
            "taken_at_s": snapshot.taken_at_s,
        },
        "records": snapshot.records,
        "examples_read": len(snapshot.columns),
        "rejects": snapshot.rejects,
        "duplicates": trained.duplicates,
        "examples": len(examples),
        "labels": {spec.label_names[0]: len(examples) - positives, spec.label_names[1]: positives},
        "event_time_min_s": float(examples.event_time_s.min()) if len(examples) else None,
        "event_time_max_s": float(examples.event_time_s.max()) if len(examples) else None,
        "split": trained.split.describe(examples),
        "code_commit": code_commit(),
        "lock_file_sha256": lock_file_sha256(),
        "seeds": {"fit": recipe.seed, "bootstrap": recipe.seed},
        "training_config": recipe.as_config(),
        "training_config_sha256": recipe.sha256(),
        "holdout_predictions_sha256": trained.predictions_sha256,
        "holdout_metrics": trained.metrics,
        "calibration": trained.fitted.describe_calibration(
            examples.event_time_s[trained.split.train]
        ),
    }
