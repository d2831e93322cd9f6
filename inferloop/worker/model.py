"""The model a worker scores with, and how it follows the registry's champion.

At start the worker waits for a champion without consuming. Then a background thread
watches the registry (the promotion notice, and a periodic alias check in case a
notice is missed), loads and verifies a new version off the loop, re-checks its golden
scores through this process's own validation and featurisation, and hands it over; the
loop swaps it in between two batches. A version that fails is refused and reported;
the worker keeps the one it has. When Redis is unreachable the worker goes on scoring
and the thread reconnects with backoff.

A worker that starts while the champion fails verification serves the most recent
earlier champion that verifies (neither rejected nor rolled back), loudly: an ERROR log,
the ``model_fallback`` gauge at 1, ``/healthz`` degraded with the reason. It switches to
the champion as soon as one that verifies is promoted. With nothing that verifies it
consumes nothing, and its health says why.

With shadow scoring on (``worker.shadow_sample`` > 0) the keeper follows the model's
``challenger`` alias too, read with the champion in one step: it loads and verifies the
challenger the same way, and hands both over as one swap, so a ``promote_challenger``
(the challenger becomes champion, no challenger left) is never half seen: no batch is
scored by the new champion while it is still the shadow, or the other way round. A
challenger that fails verification is refused and reported; the champion serves on,
without shadow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from threadpoolctl import threadpool_limits

from inferloop.backoff import Backoff
from inferloop.domains import DomainSpec
from inferloop.errors import RedisUnavailableError
from inferloop.registry import CHALLENGER, CHAMPION, AliasTarget, ChampionWatcher, Registry
from inferloop.registry.errors import (
    ArtifactDeletedError,
    GoldenMismatchError,
    IncompatibleLibraryError,
    IntegrityError,
    RegistryError,
    SchemaMismatchError,
    VersionStateError,
)
from inferloop.registry.serving import ActiveModel, activate, check_golden
from inferloop.settings import Settings
from inferloop.worker.health import HealthState
from inferloop.worker.metrics import WorkerMetrics

# ActiveModel, activate and check_golden live in the registry (batch scorers and the
# monitor use them without the worker); re-exported for the worker's modules.
__all__ = ["ActiveModel", "Backoff", "ModelKeeper", "activate", "check_golden"]

log = logging.getLogger(__name__)

# A target failing with one of these is refused for good: its signed bytes (or the
# artifact its digest names) can never serve here. Any other registry error (an ACL
# refusal, an unexpected answer from Redis) may pass: the load is tried again with backoff.
REFUSING_ERRORS = (
    IntegrityError,
    GoldenMismatchError,
    SchemaMismatchError,
    IncompatibleLibraryError,
    ArtifactDeletedError,
    VersionStateError,
)
REDIS_DOWN_ERRORS = (RedisUnavailableError, redis.ConnectionError, redis.TimeoutError)
# How long one wait on the watcher lasts: the keeper's stop is noticed this fast.
WATCH_SLICE_S = 0.25


class ModelKeeper:
    """Loads the champion, follows promotions in a background thread, hands swaps over."""

    def __init__(
        self,
        settings: Settings,
        spec: DomainSpec,
        metrics: WorkerMetrics,
        health: HealthState,
        registry_factory: Callable[[Settings], Registry] = Registry.from_settings,
    ) -> None:
        self._settings = settings
        self._spec = spec
        self._name = spec.name
        self._metrics = metrics
        self._health = health
        self._registry_factory = registry_factory
        self._registry: Registry | None = None
        self._current: ActiveModel | None = None
        self._challenger: ActiveModel | None = None
        # The next (champion, challenger), complete, swapped in at once.
        self._pending: tuple[ActiveModel, ActiveModel | None] | None = None
        # Off when shadow scoring is (the loop turns it off when the topic is missing).
        self.follow_challenger = settings.worker.shadow_sample > 0
        self._pending_seen_at = 0.0
        self._refused: dict[AliasTarget, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(settings.worker.redis_backoff_max_s)
        self._redis_was_down = False

    @property
    def current(self) -> ActiveModel | None:
        """The model the loop scores with."""
        return self._current

    @property
    def challenger(self) -> ActiveModel | None:
        """The challenger the loop scores in shadow, if any."""
        return self._challenger

    # -- start -------------------------------------------------------------------------
    def wait_for_champion(self, should_stop: Callable[[], bool]) -> ActiveModel | None:
        """Block until a model is loaded and verified (None if asked to stop first): the
        champion, or while it fails verification the most recent earlier one that
        verifies."""
        said_waiting = False
        while not should_stop():
            pause_s = self._settings.worker.model_check_interval_s
            try:
                target = self._registry_or_connect().resolve(self._name, CHAMPION)
                self._redis_ok()
                model = self._first_model(target) if target is not None else None
            except REDIS_DOWN_ERRORS as exc:
                pause_s = self._redis_down(exc)
                target = model = None
            except RegistryError:  # reported by _load; neither refused nor Redis down
                pause_s = self._backoff.next()
                target = model = None
            if model is not None:
                self._first_challenger(model)
                return model
            if target is None and not said_waiting and not self._redis_was_down:
                log.info("no champion for %s yet: waiting, not consuming", self._name)
                said_waiting = True
            self._sleep(pause_s, should_stop)
        return None

    def _first_model(self, champion: AliasTarget) -> ActiveModel | None:
        """The champion, verified and installed; else the fallback (see ``_fallback``)."""
        model = self._load(champion) if champion not in self._refused else None
        if model is not None:
            self._install(model)
            return model
        return self._fallback(champion)

    def _first_challenger(self, champion: ActiveModel) -> None:
        """The challenger at start, when there is one that verifies; else the watcher
        brings it (Redis down) or nothing (refused)."""
        if not self.follow_challenger:
            return
        try:
            target = self._registry_or_connect().resolve(self._name, CHALLENGER)
            model = self._model_for(target) if target != champion.target else None
        except (*REDIS_DOWN_ERRORS, RegistryError) as exc:
            log.warning("challenger of %s not read at start (%s); following it", self._name, exc)
            return
        self._set_challenger(model)

    def _fallback(self, champion: AliasTarget) -> ActiveModel | None:
        """The most recent earlier champion that verifies, installed as a fallback; None
        (health says why) when none does."""
        why = f"champion {champion} refused: {self._refused.get(champion, 'unverified')}"
        for target in self._registry_or_connect().fallback_targets(self._name):
            model = self._load(target) if target not in self._refused else None
            if model is not None:
                reason = f"{why}; serving v{model.version}, the most recent earlier that verifies"
                log.error("model %s: %s", self._name, reason)
                self._install(model, degraded_reason=reason)
                return model
        reason = f"{why}; no earlier version verifies: consuming nothing"
        if self._health.degraded_reason != reason:
            log.error("model %s: %s", self._name, reason)
        self._health.degraded_reason = reason
        return None

    def start(self) -> None:
        """Start following promotions in the background."""
        self._thread = threading.Thread(target=self._follow, name="model-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and close the registry's connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._registry is not None:
            self._registry.close()

    # -- the loop's side -----------------------------------------------------------------
    def take_swap(self) -> ActiveModel | None:
        """The champion to swap in now (between two batches), with its challenger, if a
        change is ready (the champion returned may be the one serving)."""
        if self._pending is None:
            return None
        started = time.perf_counter()
        with self._lock:
            (new, challenger), self._pending = self._pending, None
            seen_at = self._pending_seen_at
        old, old_challenger = self._current, self._challenger
        if new is not old:
            self._install(new)
        self._set_challenger(challenger)
        pause_s = time.perf_counter() - started
        self._metrics.swaps.labels(self._name).inc()
        self._metrics.swap_pause.labels(self._name).observe(pause_s)
        log.info(
            "model swapped: %s v%s -> v%s (challenger %s -> %s), %.3f s after the change "
            "was seen, loop pause %.6f s",
            self._name, old.version if old else None, new.version, _v(old_challenger),
            _v(challenger), time.monotonic() - seen_at, pause_s,
        )  # fmt: skip
        return new

    def _set_challenger(self, model: ActiveModel | None) -> None:
        self._challenger = model
        self._metrics.challenger_version.labels(self._name).set(model.version if model else 0)

    def _install(self, model: ActiveModel, degraded_reason: str | None = None) -> None:
        """Serve ``model``: the champion, or a fallback with the reason it is one."""
        self._current = model
        self._health.model_version = model.version
        self._health.degraded_reason = degraded_reason
        self._metrics.model_fallback.labels(self._name).set(0 if degraded_reason is None else 1)
        self._metrics.model_version.labels(self._name).set(model.version)
        if model.holdout_positive_rate is not None:
            self._metrics.holdout_positive_rate.labels(self._name, str(model.version)).set(
                model.holdout_positive_rate
            )

    # -- the background thread -------------------------------------------------------------
    def _follow(self) -> None:
        """Reconcile the model with where the watcher says the champion points."""
        # OpenMP's thread count is per thread: the loop's limit does not reach this one,
        # whose golden checks ran scikit-learn's predictions on every core; under load
        # their threads spun against the loop, and one check took 0.7 s instead of 0.03.
        with threadpool_limits(self._settings.worker.scoring_threads):
            self._follow_limited()

    def _follow_limited(self) -> None:
        watcher: ChampionWatcher | None = None
        while not self._stop.is_set():
            try:
                if watcher is None:
                    watcher = self._watcher()
                watcher.wait(timeout_s=WATCH_SLICE_S)
                self._metrics.redis_up.labels(self._name).set(1 if watcher.healthy else 0)
                self._health.redis_ok = watcher.healthy
                challenger = watcher.also.get(CHALLENGER)
                if watcher.current is not None and self._changed(watcher.current, challenger):
                    self._take_in(watcher.current, challenger)
                if watcher.healthy:  # it has read the alias: ``current`` is no baseline
                    self._champion_is_current(watcher.current)
            except REDIS_DOWN_ERRORS as exc:
                self._stop.wait(self._redis_down(exc))
            except RegistryError:  # a load that may pass later (reported by _load)
                self._stop.wait(self._backoff.next())
            except Exception:  # the thread must outlive a bug in one attempt
                log.exception("model keeper: unexpected error; retrying")
                self._metrics.errors.labels(self._name, "model_keeper").inc()
                self._stop.wait(self._backoff.next())
        if watcher is not None:
            watcher.close()

    def _watcher(self) -> ChampionWatcher:
        current = self._current
        return ChampionWatcher(
            self._registry_or_connect(),
            self._name,
            CHAMPION,
            current=current.target if current is not None else None,
            check_interval_s=self._settings.worker.model_check_interval_s,
            also=self._challenger_baseline(),
        )

    def _challenger_baseline(self) -> dict[str, AliasTarget | None] | None:
        if not self.follow_challenger:
            return None
        challenger = self._challenger
        return {CHALLENGER: challenger.target if challenger is not None else None}

    def _champion_is_current(self, champion: AliasTarget | None) -> None:
        """A fallback that the champion now points at (a rollback to it) is the champion."""
        current = self._current
        fallback = self._health.degraded_reason is not None and current is not None
        if fallback and current is not None and champion == current.target:
            log.info("model %s: the champion is v%s again", self._name, current.version)
            self._install(current)

    def _upcoming(self) -> tuple[ActiveModel | None, ActiveModel | None]:
        """The (champion, challenger) the loop will serve after the pending swap."""
        pending = self._pending
        return pending if pending is not None else (self._current, self._challenger)

    def _changed(self, champion: AliasTarget, challenger: AliasTarget | None) -> bool:
        """Whether the aliases ask for a swap not made or pending yet (refused targets
        and a challenger that is the champion ask for nothing)."""
        serving, shadow = self._upcoming()
        if champion != _target(serving) and champion not in self._refused:
            return True
        if challenger == champion or challenger in self._refused:
            challenger = None
        return challenger != _target(shadow)

    def _take_in(self, champion: AliasTarget, challenger: AliasTarget | None) -> None:
        seen_at = time.monotonic()
        serving, _ = self._upcoming()
        model = serving
        if champion != _target(serving):
            log.info("champion of %s is now %s; loading it in the background", self._name,
                     champion)  # fmt: skip
            model = self._model_for(champion)
            if model is None:
                self._champion_refused(champion)
                model = serving
        if model is None:
            return
        try:
            shadow = self._model_for(challenger) if challenger != model.target else None
        except RegistryError:
            # The champion goes in without waiting for the challenger, tried again later.
            self._set_pending(model, None, seen_at)
            raise
        self._set_pending(model, shadow, seen_at)

    def _set_pending(self, model: ActiveModel, shadow: ActiveModel | None, seen_at: float) -> None:
        with self._lock:
            self._pending = (model, shadow)
            self._pending_seen_at = seen_at

    def _model_for(self, target: AliasTarget | None) -> ActiveModel | None:
        """``target``'s model: one in hand when it is one, else loaded; None if refused."""
        if target is None or target in self._refused:
            return None
        pending: tuple[ActiveModel | None, ...] = self._pending or ()
        for model in (self._current, self._challenger, *pending):
            if model is not None and model.target == target:
                return model
        return self._load(target)

    def _champion_refused(self, target: AliasTarget) -> None:
        if self._current is not None:
            # Kept serving what it has, which is no longer the champion: say so.
            self._health.degraded_reason = (
                f"champion {target} refused: {self._refused.get(target)}; "
                f"keeping v{self._current.version}"
            )
            self._metrics.model_fallback.labels(self._name).set(1)

    def _load(self, target: AliasTarget) -> ActiveModel | None:
        """Load and verify ``target``; None when refused for good (and reported).

        Redis errors and other registry errors propagate: the caller retries with backoff.
        """
        started = time.monotonic()
        try:
            loaded = self._registry_or_connect().load(
                self._name, target.version, digest=target.digest
            )
            model = activate(loaded, self._spec)
        except REDIS_DOWN_ERRORS:
            raise
        except REFUSING_ERRORS as exc:
            self._refuse(target, exc)
            return None
        except RegistryError as exc:
            self._load_failed(target, exc)
            raise
        self._backoff.reset()
        elapsed = time.monotonic() - started
        self._metrics.load_seconds.labels(self._name).observe(elapsed)
        log.info(
            "model %s v%s loaded and verified in %.2f s; scoring with %s",
            self._name, target.version, elapsed, model.scorer.name,
        )  # fmt: skip
        return model

    def _refuse(self, target: AliasTarget, exc: Exception) -> None:
        self._refused[target] = f"{type(exc).__name__}: {exc}"
        self._health.refused_versions.append(target.version)
        self._metrics.refused.labels(self._name, str(target.version)).inc()
        current = self._current
        log.error(
            "model %s v%s refused (%s: %s); keeping %s",
            self._name, target.version, type(exc).__name__, exc,
            f"v{current.version}" if current else "no model",
        )  # fmt: skip

    def _load_failed(self, target: AliasTarget, exc: Exception) -> None:
        self._metrics.errors.labels(self._name, "model_load").inc()
        log.warning(
            "model %s v%s not loaded (%s: %s); trying again with backoff",
            self._name, target.version, type(exc).__name__, exc,
        )  # fmt: skip

    # -- Redis ---------------------------------------------------------------------------
    def _registry_or_connect(self) -> Registry:
        if self._registry is None:
            self._registry = self._registry_factory(self._settings)
        return self._registry

    def _redis_ok(self) -> None:
        if self._redis_was_down:
            log.info("Redis reachable again; following the champion of %s", self._name)
        self._redis_was_down = False
        self._health.redis_ok = True
        self._backoff.reset()
        self._metrics.redis_up.labels(self._name).set(1)

    def _redis_down(self, exc: BaseException) -> float:
        """Record that Redis is unreachable; how long to wait before trying again."""
        if not self._redis_was_down:
            log.warning("Redis unreachable (%s); scoring on, retrying with backoff", exc)
        self._redis_was_down = True
        self._health.redis_ok = False
        self._metrics.redis_up.labels(self._name).set(0)
        self._metrics.errors.labels(self._name, "redis").inc()
        return self._backoff.next()

    def _sleep(self, seconds: float, should_stop: Callable[[], bool]) -> None:
        deadline = time.monotonic() + seconds
        while not should_stop() and time.monotonic() < deadline:
            self._health.turned()
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))


def _target(model: ActiveModel | None) -> AliasTarget | None:
    return model.target if model is not None else None


def _v(model: ActiveModel | None) -> str:
    return f"v{model.version}" if model is not None else "none"
