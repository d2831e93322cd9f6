"""Settings: one object per process, built once in ``main()`` and passed down.

Every field can be set from the environment with the ``INFERLOOP_`` prefix; nested
sections use a double underscore, e.g. ``INFERLOOP_KAFKA__BOOTSTRAP_SERVERS`` or
``INFERLOOP_REDIS__URL``. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inferloop.errors import UnknownSettingError

Domain = Literal["emails", "transactions"]
DOMAINS: tuple[Domain, ...] = ("emails", "transactions")

DeliveryGuarantee = Literal["at-least-once", "exactly-once"]
# How a candidate that clears the retrain gate goes live: champion at once, or
# challenger first (shadow-scored, promoted by the monitor on a paired live win).
PromotionPolicy = Literal["direct", "shadow-first"]

# The worker's uses of kafka-python's private internals (inferloop/kafka_internals.py
# says what each one saves, measured); each can be switched off.
KafkaShortcut = Literal[
    "coordinator_known", "fetches_in_flight", "top_up", "batch_append", "force_close"
]
KAFKA_SHORTCUTS: tuple[KafkaShortcut, ...] = (
    "coordinator_known", "fetches_in_flight", "top_up", "batch_append", "force_close",
)  # fmt: skip


def _cache_home() -> Path:
    return Path.home() / ".cache" / "inferloop"


def _state_home() -> Path:
    return Path.home() / ".local" / "state" / "inferloop"


def _default_data_dir() -> Path:
    # The data sets sit beside the project (../shared/data); from an installed copy
    # the working directory is the best guess.
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """How to reach Kafka; the security options pass straight to kafka-python."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "inferloop"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    request_timeout_ms: int = Field(default=30_000, gt=0)
    # How long a client may look for the cluster before it is called unreachable.
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # The longest pause between two attempts to reconnect to a broker. kafka-python's
    # default, 30 s, kept a worker away from its group coordinator for ~20 s after a
    # broker came back; 1 s is the Java client's default.
    reconnect_backoff_max_ms: int = Field(default=1_000, gt=0)

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_given(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("at least one host:port is needed")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list."""
        return self.bootstrap_servers.split(",")


class RedisSettings(_Section):
    """How to reach Redis, and the prefix of every key inferloop writes."""

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_certs: Path | None = None
    key_prefix: str = Field(default="inferloop", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    # Fail fast: an unreachable Redis is an error naming its address, not a hang.
    socket_timeout_s: float = Field(default=5.0, gt=0)
    connect_timeout_s: float = Field(default=2.0, gt=0)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class TopicSettings(_Section):
    """Topic names per domain and how new topics are made."""

    prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_.\-]*$")
    emails: str = Field(default="emails", pattern=r"^[A-Za-z0-9_.\-]+$")
    transactions: str = Field(default="transactions", pattern=r"^[A-Za-z0-9_.\-]+$")
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class LocalServicesSettings(_Section):
    """The Kafka and Redis that ``inferloop services up`` runs on this machine."""

    kafka_version: str = "4.3.1"
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_heap: str = "512m"
    redis_port: int = Field(default=6379, ge=1, le=65535)
    # Jars are cached here so a second start needs no network.
    cache_dir: Path = Field(default_factory=_cache_home)
    # Data, logs and pid files of the running services.
    state_dir: Path = Field(default_factory=_state_home)
    start_timeout_s: float = Field(default=60.0, gt=0)


class RegistrySettings(_Section):
    """Model registry: signing keys and retention."""

    # Ed25519 private key (PEM) of whoever registers versions: the retrain job or an
    # operator's import. Workers never have one.
    signing_key_path: Path | None = None
    # Public keys (PEM) that a loaded artifact may be signed by; several allow rotation.
    verify_key_paths: Annotated[tuple[Path, ...], NoDecode] = ()
    # Development only: accept unsigned artifacts. Loud when on.
    allow_unsigned: bool = False
    keep_versions: int = Field(default=10, ge=1)
    max_artifact_bytes: int = Field(default=256 * 1024 * 1024, gt=0, le=512 * 1024 * 1024)
    actor: str | None = None

    @field_validator("verify_key_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(p) for p in value.split(",") if p.strip())
        return value


class WorkerSettings(_Section):
    """The streaming worker."""

    delivery: DeliveryGuarantee = "at-least-once"
    # Part of every transactional id (inferloop-<domain>-<instance>-<slot>): two hosts
    # never fence each other, and a restarted slot fences its own zombie.
    instance_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.\-]+$")
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_batch_size: int = Field(default=1000, ge=1)
    poll_timeout_ms: int = Field(default=100, ge=0)
    # A batch whose newest record is older than this is topped up by one more poll
    # (waiting at most this long) with what arrived while the last batch was scored.
    top_up_ms: int = Field(default=5, ge=0)
    # Bytes a fetch brings per partition (kafka-python's max_partition_fetch_bytes,
    # 1 MiB by default). kafka-python keeps one fetch in flight per broker, for the
    # partitions with nothing buffered, so a larger answer means fewer polls that wait
    # for one: an emails worker ran at 7,191 msg/s with 4 MiB, 6,727 with 1 MiB and
    # 6,209 with 256 KiB (medians of four alternating runs each, 2026-12-06).
    fetch_partition_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # The broker answers a fetch once it holds fetch_min_bytes for it, or after
    # fetch_max_wait_ms. The defaults answer at once: the lowest latency, and at a low
    # rate a poll, a fetch and a produce request for every few records, whose CPU cost
    # does not shrink with them. A transactions worker at 500 msg/s kept 0.70-0.72 of a
    # core busy so, and 0.33 with 65,536 bytes and 10 ms, for a p50 of 20 ms instead of
    # 11-12 (`scripts/bench --sections lowrate`, 2026-12-07; docs/performance.md has the rest).
    fetch_min_bytes: int = Field(default=1, ge=1)
    fetch_max_wait_ms: int = Field(default=500, ge=0)
    max_poll_interval_ms: int = Field(default=300_000, gt=0)
    session_timeout_ms: int = Field(default=10_000, gt=0)
    heartbeat_interval_ms: int = Field(default=3_000, gt=0)
    transaction_timeout_ms: int = Field(default=10_000, gt=0)
    # A batch's predictions are appended at once (kafka_internals.py), yet 0 is no better:
    # it took 3-7 ms off the p50 at half load, but with a fit beside the worker the p99
    # went from 263-312 to 531-969 ms (three alternating pairs of loads each,
    # 2026-12-06; why is not measured: the sender may send a batch before it is whole).
    linger_ms: int = Field(default=5, ge=0)
    max_request_size: int = Field(default=1_048_576, gt=0)
    # Bytes per producer batch and partition: predictions are small, so many fit.
    producer_batch_bytes: int = Field(default=262_144, gt=0)
    # At-least-once pipelining: batches whose sends may be in flight at once.
    max_in_flight_batches: int = Field(default=2, ge=1, le=16)
    # At-least-once: acknowledged batches are committed (asynchronously) at most this
    # often; a crash reads up to this much again. 0: as soon as each is acknowledged.
    commit_interval_ms: int = Field(default=100, ge=0)
    # Periodic alias check, the fallback when a promotion notice is missed.
    model_check_interval_s: float = Field(default=5.0, gt=0)
    max_scoring_attempts: int = Field(default=3, ge=1)
    # Attempt counters outlive a crash loop, not a week.
    scoring_attempts_ttl_s: int = Field(default=86_400, gt=0)
    # Redis unreachable: retry after 0.5 s, doubling up to this.
    redis_backoff_max_s: float = Field(default=30.0, gt=0)
    # Threads for numpy/OpenMP inside one worker process (one process per core).
    scoring_threads: int = Field(default=1, ge=1)
    shutdown_grace_s: float = Field(default=30.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9300, ge=0, le=65535)
    # The share of event ids (a stable hash of the id, the monitor's) the registry's
    # challenger, when one is set, scores in shadow on <domain>.shadow. 0: shadow off.
    shadow_sample: float = Field(default=1.0, ge=0, le=1)
    # Tests only: "<point>:<action>[:<after batches>]" fires a fault at a named point.
    fault: str | None = None
    # The shortcuts into kafka-python's internals in use (comma-separated in the
    # environment; "none" or "" for none): one switched off takes the public API.
    kafka_shortcuts: Annotated[tuple[KafkaShortcut, ...], NoDecode] = KAFKA_SHORTCUTS

    @field_validator("kafka_shortcuts", mode="before")
    @classmethod
    def _split_shortcuts(cls, value: object) -> object:
        if isinstance(value, str):
            names = [n.strip() for n in value.split(",") if n.strip()]
            return () if names == ["none"] else tuple(names)
        return value


class RetrainSettings(_Section):
    """The retraining job and its scheduler service."""

    # Per-domain schedule, in UTC: a cron expression ("0 * * * *") or an interval
    # ("90s", "15m", "1h", "1d"); "off" schedules nothing (triggers still run).
    emails_schedule: str = "1h"
    transactions_schedule: str = "1h"
    # Per-domain promotion policy of a candidate the gate passes: "direct" makes it the
    # champion; "shadow-first" makes it the challenger, which the monitor promotes on a
    # paired live win or retires. A rollback's cool-down forces shadow-first meanwhile.
    emails_promotion_policy: PromotionPolicy = "direct"
    transactions_promotion_policy: PromotionPolicy = "direct"
    # Per-domain training window: fit on only the newest this many labelled examples of
    # the training side (the holdout is unchanged; None: all of them). When a new source
    # takes over, its few hundred labels are not outvoted by an old source's thousands.
    emails_train_window_labels: int | None = Field(default=None, ge=100)
    transactions_train_window_labels: int | None = Field(default=None, ge=100)
    # Fewer new labelled records than this since the champion's data set: skip the run.
    min_new_labels: int = Field(default=100, ge=0)
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    # Only events at least this old (at the snapshot) may be in the holdout.
    label_maturity_s: float = Field(default=0.0, ge=0)
    # Read only the labels that arrived in the last window_s (None: the whole topic).
    window_s: float | None = Field(default=None, gt=0)
    folds: int = Field(default=5, ge=2)
    min_holdout_positives: int = Field(default=30, ge=1)
    promotion_margin: float = Field(default=0.0, ge=0)
    bootstrap_rounds: int = Field(default=1000, ge=10)
    seed: int = 42
    fit_threads: int = Field(default=1, ge=1)
    fit_nice: int = Field(default=10, ge=0, le=19)
    lock_lease_s: float = Field(default=600.0, gt=0)
    # Events of the newest records kept with a version to check its scores on load.
    golden_events: int = Field(default=32, ge=1, le=1000)
    # Run reports, in <reports_dir>/<redis key prefix>/<domain>/v<N>/ (None: the local
    # state directory's reports/, never the working directory, shared by every prefix).
    reports_dir: Path | None = None
    snapshot_dir: Path = Field(default_factory=lambda: _cache_home() / "snapshots")
    # False: every run reads the whole range from Kafka (the cache is only a speed-up).
    use_cache: bool = True
    metrics_port: int = Field(default=9400, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    instance_id: str = Field(default_factory=socket.gethostname, pattern=r"^[^\s:{}]+$")
    # A firing may start this late and still run (None: however late; never skipped).
    misfire_grace_s: float | None = Field(default=3600.0, gt=0)
    # On SIGTERM a running fit gets this long to finish before its lease is released.
    shutdown_grace_s: float = Field(default=30.0, gt=0)
    # A trigger pending this long with a consumer that stopped renewing it is taken over.
    trigger_claim_idle_s: float = Field(default=60.0, gt=0)
    heartbeat_s: float = Field(default=5.0, gt=0)
    # How long a recorded trigger outcome stays readable.
    outcome_ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0)

    def promotion_policy(self, domain: str) -> PromotionPolicy:
        """``domain``'s promotion policy (the ``<domain>_promotion_policy`` setting)."""
        policy: PromotionPolicy = getattr(self, f"{domain}_promotion_policy")
        return policy


class ReplaySettings(_Section):
    """The replay producer (``inferloop replay``): pacing, delayed labels, batching."""

    # Events per second; None sends as fast as the broker takes them.
    rate_per_s: float | None = Field(default=None, gt=0)
    # A labelled example follows its event after this long (chargebacks, reports).
    label_delay_s: float = Field(default=30.0, ge=0)
    # The share of events whose label comes back (chosen by a hash of the event id).
    label_fraction: float = Field(default=1.0, ge=0, le=1)
    label_source: str = Field(default="replay", min_length=1, max_length=256)
    linger_ms: int = Field(default=20, ge=0)
    batch_size_bytes: int = Field(default=256 * 1024, gt=0)
    compression_type: Literal["none", "gzip"] = "none"
    # "original": an event keeps the data set's time; "send": its time is when it is
    # sent, so a second data set replayed after a first is newer than it.
    event_time: Literal["original", "send"] = "original"
    # "all": every chosen event's label comes back; "feedback": a positive's label comes
    # back as a report (spam report, chargeback) with positive_report_share, a
    # negative's only as an appealed flag, with false_positive_report_share.
    label_policy: Literal["all", "feedback"] = "all"
    positive_report_share: float = Field(default=1.0, ge=0, le=1)
    false_positive_report_share: float = Field(default=0.02, ge=0, le=1)
    # A send not acknowledged within this long fails the replay (which then writes a
    # resume file); a broker back within it is ridden out.
    delivery_timeout_s: float = Field(default=120.0, gt=0)
    # At most this many sends wait for their acknowledgement at once: replay waits for
    # the broker rather than piling an outage's worth of events into memory.
    max_unacknowledged: int = Field(default=20_000, ge=1)
    # And at most this many bytes (keys and values).
    max_unacknowledged_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024)
    # On SIGTERM/SIGINT, how long the sends in flight may take to be acknowledged.
    stop_grace_s: float = Field(default=10.0, ge=0)
    # Where a replay that failed or was stopped writes its resume file (None: replay/
    # under the local state directory, never the working directory).
    resume_dir: Path | None = None


class MonitorSettings(_Section):
    """The live-quality monitor (``inferloop monitor serve``)."""

    # Where a monitor with no stored offsets starts reading labels and predictions.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_batch_size: int = Field(default=2000, ge=1)
    poll_timeout_ms: int = Field(default=200, ge=0)
    fetch_partition_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # The window by positives: the last this many positives and the negatives among them.
    window_positives: int = Field(default=50, ge=1)
    # The window by time: labels that arrived in the last this many seconds.
    window_time_s: float = Field(default=3600.0, gt=0)
    # The hard bound of the stored window (events), whatever the two windows ask for:
    # the state's size never grows with the rate or the running time beyond it.
    max_window_events: int = Field(default=200_000, ge=100)
    # The share of event ids (chosen by a hash of the id) whose serving version and
    # score are kept, to report "served" figures and check re-scoring against serving.
    served_sample_fraction: float = Field(default=0.01, ge=0, le=1)
    max_served_samples: int = Field(default=100_000, ge=0)
    # Relative tolerance of the served-versus-re-scored check.
    served_score_rtol: float = Field(default=1e-6, ge=0)
    # Fraud: a transaction with no chargeback after this long is legitimate. None: off
    # (replays label everything they label, and no more).
    emails_implicit_negative_after_s: float | None = Field(default=None, gt=0)
    transactions_implicit_negative_after_s: float | None = Field(default=None, gt=0)
    # After a promotion the previous champion is re-scored beside the new one until the
    # policy's probation_positives were compared, and at most this long.
    probation_s: float = Field(default=3600.0, ge=0)
    # Figures, metrics and the status snapshot are recomputed at most this often.
    evaluate_interval_s: float = Field(default=5.0, gt=0)
    bootstrap_rounds: int = Field(default=200, ge=10)
    # Events per block of the block bootstrap (fraud comes in bursts).
    bootstrap_block_size: int = Field(default=50, ge=1)
    # Live floors (apart from the offline gate's): the champion's F1 and AUPRC on the
    # window by positives. None: no floor. Emails' F1 floor catches a champion that
    # flags little ham but misses most spam, which the ham-flagged floor cannot see.
    emails_live_floor_f1: float | None = Field(default=0.70, ge=0, le=1)
    transactions_live_floor_f1: float | None = Field(default=None, ge=0, le=1)
    emails_live_floor_auprc: float | None = Field(default=None, ge=0, le=1)
    transactions_live_floor_auprc: float | None = Field(default=None, ge=0, le=1)
    # The domains' target figures on the same window: emails' ham flagged at most,
    # transactions' fraud recall at least (whole interval past it). None: no floor.
    emails_live_max_ham_flagged: float | None = Field(default=0.02, ge=0, le=1)
    transactions_live_floor_fraud_recall: float | None = Field(default=0.5, ge=0, le=1)
    # Decisions (monitor/policy.py). Paired comparisons are decided every this many new
    # positives, at error bound paired_alpha (anytime-valid: any number of looks), once
    # min_discordant_pairs pairs differ.
    evaluation_positives: int = Field(default=5, ge=1)
    paired_alpha: float = Field(default=0.05, gt=0, lt=1)
    min_discordant_pairs: int = Field(default=10, ge=1)
    # "per_class": a clear loss on either class is a loss (positives and negatives tested
    # apart); "balanced": pairs weighted by 1 / their class's size, so a version may trade
    # one class's errors for the other's.
    paired_weighting: Literal["per_class", "balanced"] = "per_class"
    # Probation also ends after this many positives since the promotion.
    probation_positives: int = Field(default=300, ge=1)
    # A shadow-first challenger still undecided after this many positives is retired.
    challenger_max_positives: int = Field(default=500, ge=1)
    # After a rollback the next candidate is promoted shadow-first for this long.
    rollback_cooldown_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # At most one retrain trigger per reason (floor, drift) in this long.
    trigger_min_interval_s: float = Field(default=6 * 3600.0, gt=0)
    # Whether a drift alarm also triggers a retrain (a floor breach always does).
    drift_triggers: bool = True
    # A paired loss on probation only raises an alarm (no rollback).
    emails_alarm_only: bool = False
    transactions_alarm_only: bool = False
    model_check_interval_s: float = Field(default=5.0, gt=0)
    redis_backoff_max_s: float = Field(default=30.0, gt=0)
    # A second monitor of the same domain waits while this lease is held by the first.
    lease_s: float = Field(default=30.0, gt=0)
    scoring_threads: int = Field(default=1, ge=1)
    shutdown_grace_s: float = Field(default=30.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9500, ge=0, le=65535)

    def implicit_negative_after_s(self, domain: str) -> float | None:
        """The domain's ``implicit_negative_after_s`` (None: off)."""
        value: float | None = getattr(self, f"{domain}_implicit_negative_after_s")
        return value


class ConsoleSettings(_Section):
    """The operator console (``inferloop console serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    # Required on any address but loopback: the console refuses to start without them.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # Salted hashes made by ``inferloop console hash-token`` ("name$scrypt$..."), comma
    # separated; the name is the actor recorded in the registry's history.
    viewer_token_hashes: Annotated[tuple[str, ...], NoDecode] = ()
    operator_token_hashes: Annotated[tuple[str, ...], NoDecode] = ()
    # Signs the session cookie; a random one per process when unset (sessions end on restart).
    session_secret: SecretStr | None = None
    session_max_age_s: int = Field(default=8 * 3600, gt=0)
    # Host headers accepted (DNS rebinding); the bind host is always accepted too.
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1", "localhost")
    login_failures_max: int = Field(default=5, ge=1)
    login_failure_window_s: float = Field(default=60.0, gt=0)

    @field_validator("viewer_token_hashes", "operator_token_hashes", "allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value


class Settings(BaseSettings):
    """Everything one inferloop process is configured with."""

    model_config = SettingsConfigDict(
        env_prefix="INFERLOOP_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: TopicSettings = TopicSettings()
    services: LocalServicesSettings = LocalServicesSettings()
    registry: RegistrySettings = RegistrySettings()
    worker: WorkerSettings = WorkerSettings()
    retrain: RetrainSettings = RetrainSettings()
    replay: ReplaySettings = ReplaySettings()
    monitor: MonitorSettings = MonitorSettings()
    console: ConsoleSettings = ConsoleSettings()
    data_dir: Path = Field(default_factory=_default_data_dir)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def __init__(self, **values: Any) -> None:
        # A misspelt variable would be ignored and its default used in silence (an
        # INFERLOOP_LOCAL__KAFKA_PORT left `services up` looking at the default port):
        # refuse it before anything is built with the wrong value.
        check_environment(os.environ)
        super().__init__(**values)

    def to_env(self) -> dict[str, str]:
        """These settings as ``INFERLOOP_*`` variables, for a child process to rebuild them.

        Secrets are written as their values: the result is meant for a child's
        environment, never for a log.
        """
        env: dict[str, str] = {}
        for key, value in _flatten(self.model_dump()).items():
            env[f"INFERLOOP_{key.upper()}"] = _env_text(value)
        return env


# Variables of the project that are not settings (scripts/_env.sh's tool cache).
NOT_SETTINGS = frozenset({"INFERLOOP_TOOLS"})


def setting_variables() -> frozenset[str]:
    """Every variable a setting is read from: ``INFERLOOP_<FIELD>``,
    ``INFERLOOP_<SECTION>__<FIELD>``, and ``INFERLOOP_<SECTION>`` (a section as JSON)."""
    names = set()
    for name, info in Settings.model_fields.items():
        names.add(f"INFERLOOP_{name.upper()}")
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names |= {f"INFERLOOP_{name.upper()}__{f.upper()}" for f in section.model_fields}
    return frozenset(names)


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise UnknownSettingError naming each ``INFERLOOP_*`` variable that is no setting,
    with the nearest valid name (names are case-insensitive, as pydantic-settings reads
    them)."""
    known = setting_variables()
    unknown = sorted(
        n for n in environ if n.upper().startswith("INFERLOOP_") and n.upper() not in known
    )
    unknown = [n for n in unknown if n.upper() not in NOT_SETTINGS]
    if unknown:
        raise UnknownSettingError("; ".join(_unknown(n, known) for n in unknown))


def _unknown(name: str, known: frozenset[str]) -> str:
    text = f"{name} is not a setting"
    nearest = nearest_setting(name.upper(), known)
    return f"{text} (did you mean {nearest}?)" if nearest else text


def nearest_setting(name: str, known: frozenset[str]) -> str | None:
    """The valid name ``name`` most likely meant: the same field in another section when
    only one section has it, else the closest spelling (None: nothing close)."""
    field_name = name.rpartition("__")[2]
    same_field = [k for k in known if "__" in name and k.endswith(f"__{field_name}")]
    if len(same_field) == 1:
        return same_field[0]
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}__{key}" if prefix else key
        if isinstance(value, dict):
            flat |= _flatten(value, name)
        elif value is not None:
            flat[name] = value
    return flat


def _env_text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_env_text(v) for v in value)
    return str(value)
