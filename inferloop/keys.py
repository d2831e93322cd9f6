"""Every Redis key and pub/sub channel inferloop uses is built here.

The whole storage schema fits on this screen. Keys of one registered model carry the
model name as a Redis Cluster hash tag (``{name}``), so the transactions and scripts
that touch several of them also run on a cluster.

    <p>:registry:models                      set     names of registered models
    <p>:model:{name}                         hash    registered model (description, tags, created)
    <p>:model:{name}:aliases                 hash    alias -> "version digest"
    <p>:model:{name}:counter                 string  last version number handed out
    <p>:model:{name}:versions                zset    version numbers, scored by version
    <p>:model:{name}:v:<n>                   hash    signed manifest, signature, status, tags
    <p>:model:{name}:v:<n>:artifact          string  compressed joblib bytes of the pipeline
    <p>:model:{name}:v:<n>:report            hash    report files (name -> bytes)
    <p>:model:{name}:history                 stream  alias moves, rejections, deletions: actor,
                                                     Redis user, from, to, reason
    <p>:model:{name}:previous                list    previous champions, newest first (rollback)
    <p>:model:{name}:notices                 channel a message per alias move
    <p>:retrain:{domain}:lock                string  lease of the one running retrain (token)
    <p>:retrain:{domain}:fire:<ts>           string  claim of one scheduled firing (SET NX)
    <p>:retrain:{domain}:status              hash    last run, last success, next run
    <p>:retrain:triggers                     stream  operator triggers, read by a consumer group
    <p>:retrain:outcome:<trigger id>         string  the outcome of one trigger (JSON)
    <p>:retrain:sent:<trigger id>            string  marker of a trigger id added once (SET NX)
    <p>:retrain:services                     hash    service instance -> domains, heartbeat (JSON)
    <p>:monitor:{domain}:shadow-first        string  cool-down after a rollback (TTL): the next
                                                     candidate is promoted shadow-first
    <p>:monitor:{domain}:offsets             hash    "labels|predictions:<partition>" -> next offset
    <p>:monitor:{domain}:window              list    labelled events, oldest first (packed, bounded)
    <p>:monitor:{domain}:counts              hash    labelled, predicted per version and class
    <p>:monitor:{domain}:served              hash    sampled id hash -> served version, score
    <p>:monitor:{domain}:detectors           hash    drift detector -> its state (JSON)
    <p>:monitor:{domain}:status              string  the last evaluation, per role (JSON)
    <p>:monitor:{domain}:history:<version>   list    a version's live figures over time, oldest
                                                     first (JSON; capped by count, age and TTL)
    <p>:monitor:{domain}:alarms              list    drift alarms, oldest first (JSON, capped)
    <p>:monitor:{domain}:actions             list    the policy's other alarms and its actions
                                                     (floor, probation, challenger, trigger),
                                                     oldest first (JSON, capped)
    <p>:monitor:{domain}:labelled:<hour>     hash    id hashes of explicit labels of events of
                                                     one hour (implicit negatives skip them)
    <p>:monitor:{domain}:lease               string  the one monitor of the domain (token, PX)
    <p>:monitor:{domain}:decision            string  the one rollback decision in flight (SET NX PX)
    <p>:worker:{domain}:attempts:<t>:<p>:<o> string  scoring attempts of a failing batch
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The first part of every key after the prefix: what an ACL rule's pattern selects.
Area = Literal["registry", "model", "retrain", "monitor", "worker"]


def _check_part(kind: str, value: str) -> str:
    # Braces would break the hash tag and colons the key layout.
    if not value or any(c in value for c in "{}:\n\r "):
        raise ValueError(f"{kind} {value!r} must be non-empty, without braces, colons or spaces")
    return value


@dataclass(frozen=True)
class Keys:
    """Key builder under one prefix (the ``redis.key_prefix`` setting)."""

    prefix: str

    def area(self, area: Area) -> str:
        """Glob of every key and channel of one area, ``<p>:<area>:*`` (ACL patterns)."""
        return f"{self.prefix}:{area}:*"

    # -- registry ---------------------------------------------------------------
    def models(self) -> str:
        """Set of the names of every registered model."""
        return f"{self.prefix}:registry:models"

    def model(self, name: str) -> str:
        """Hash of a registered model's own fields."""
        return f"{self.prefix}:model:{{{_check_part('model name', name)}}}"

    def aliases(self, name: str) -> str:
        """Hash of alias -> version number."""
        return f"{self.model(name)}:aliases"

    def version_counter(self, name: str) -> str:
        """Counter that hands out version numbers."""
        return f"{self.model(name)}:counter"

    def versions(self, name: str) -> str:
        """Sorted set of the version numbers of a model."""
        return f"{self.model(name)}:versions"

    def version(self, name: str, version: int) -> str:
        """Hash of one version's metadata."""
        return f"{self.model(name)}:v:{int(version)}"

    def artifact(self, name: str, version: int) -> str:
        """The compressed artifact bytes of one version."""
        return f"{self.version(name, version)}:artifact"

    def report(self, name: str, version: int) -> str:
        """Hash of the report files of one version."""
        return f"{self.version(name, version)}:report"

    def history(self, name: str) -> str:
        """Stream of alias moves."""
        return f"{self.model(name)}:history"

    def previous_champions(self, name: str) -> str:
        """List of the champions before the current one, newest first."""
        return f"{self.model(name)}:previous"

    def notices(self, name: str) -> str:
        """Pub/sub channel announcing alias moves."""
        return f"{self.model(name)}:notices"

    # -- retrain ----------------------------------------------------------------
    def retrain_lock(self, domain: str) -> str:
        """Lease held by the one retrain of a domain that may run."""
        return f"{self.prefix}:retrain:{{{_check_part('domain', domain)}}}:lock"

    def retrain_fire(self, domain: str, fire_time: str) -> str:
        """Claim of one scheduled firing, so it runs once across service instances."""
        return f"{self.prefix}:retrain:{{{_check_part('domain', domain)}}}:fire:{fire_time}"

    def retrain_status(self, domain: str) -> str:
        """Hash of a domain's last run, last success and next scheduled run."""
        return f"{self.prefix}:retrain:{{{_check_part('domain', domain)}}}:status"

    def retrain_triggers(self) -> str:
        """Stream of operator triggers for the retrain service."""
        return f"{self.prefix}:retrain:triggers"

    def retrain_outcome(self, trigger_id: str) -> str:
        """The recorded outcome of one trigger."""
        return f"{self.prefix}:retrain:outcome:{_check_part('trigger id', trigger_id)}"

    def retrain_sent(self, trigger_id: str) -> str:
        """Marker of a trigger id already added to the stream (publish adds it once)."""
        return f"{self.prefix}:retrain:sent:{_check_part('trigger id', trigger_id)}"

    def retrain_services(self) -> str:
        """Hash of running retrain service instances: their domains and last heartbeat."""
        return f"{self.prefix}:retrain:services"

    # -- monitor ----------------------------------------------------------------
    def shadow_first(self, domain: str) -> str:
        """Cool-down flag set after a rollback: while it lives (its TTL), the next
        candidate of the domain is promoted shadow-first, whatever its policy."""
        return f"{self.prefix}:monitor:{{{_check_part('domain', domain)}}}:shadow-first"

    def _monitor(self, domain: str, what: str) -> str:
        return f"{self.prefix}:monitor:{{{_check_part('domain', domain)}}}:{what}"

    def monitor_offsets(self, domain: str) -> str:
        """Hash of the monitor's next offsets per topic and partition (its Kafka position)."""
        return self._monitor(domain, "offsets")

    def monitor_window(self, domain: str) -> str:
        """List of the labelled events of the window, packed, oldest first."""
        return self._monitor(domain, "window")

    def monitor_counts(self, domain: str) -> str:
        """Hash of counters: labelled and predicted per version and class, checks."""
        return self._monitor(domain, "counts")

    def monitor_served(self, domain: str) -> str:
        """Hash of the served sample: event id hash -> served version, score, sequence."""
        return self._monitor(domain, "served")

    def monitor_detectors(self, domain: str) -> str:
        """Hash of drift detector name -> its state (JSON)."""
        return self._monitor(domain, "detectors")

    def monitor_status(self, domain: str) -> str:
        """The monitor's last evaluation of every watched version (JSON)."""
        return self._monitor(domain, "status")

    def monitor_history(self, domain: str, version: int) -> str:
        """List of one version's live figures at each evaluation, oldest first (capped)."""
        return self._monitor(domain, f"history:{int(version)}")

    def monitor_alarms(self, domain: str) -> str:
        """List of the domain's drift alarms with their time, oldest first (capped)."""
        return self._monitor(domain, "alarms")

    def monitor_actions(self, domain: str) -> str:
        """List of the policy's floor and probation alarms and its actions (rollbacks,
        challenger moves, retrain triggers) with their time, oldest first (capped)."""
        return self._monitor(domain, "actions")

    def monitor_labelled_ids(self, domain: str, hour: int) -> str:
        """Hash of the id hashes of explicitly labelled events whose event time falls in
        ``hour`` (hours since the epoch): events that are not implicit negatives."""
        return self._monitor(domain, f"labelled:{int(hour)}")

    def monitor_lease(self, domain: str) -> str:
        """Lease of the one monitor process of a domain (its token)."""
        return self._monitor(domain, "lease")

    def monitor_decision(self, domain: str) -> str:
        """Lease of the one rollback decision of a domain in flight."""
        return self._monitor(domain, "decision")

    # -- worker -----------------------------------------------------------------
    def scoring_attempts(self, domain: str, topic: str, partition: int, offset: int) -> str:
        """Attempts at scoring the batch that starts at one offset."""
        return (
            f"{self.prefix}:worker:{{{_check_part('domain', domain)}}}:attempts:"
            f"{_check_part('topic', topic)}:{int(partition)}:{int(offset)}"
        )
