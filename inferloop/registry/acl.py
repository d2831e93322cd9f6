"""Redis ACL users for the roles that touch the registry.

- ``worker``: reads the registry (resolve, load, watch, list, history) and writes nothing
  of it; it may count scoring attempts under ``<p>:worker:*``.
- ``retrain``: registers versions (artifacts, metadata, retention), promotes and rejects
  them, stores reports, and holds its lock and status under ``<p>:retrain:*``; it reads
  the monitor's keys (the shadow-first cool-down) and writes none of them.
- ``operator``: promotes, rolls back and rejects (alias, status and history writes), reads
  everything (the monitor's keys too, which the console shows), and queues retrain
  triggers; it cannot write or delete an artifact (no string writes, no DEL), so it
  cannot register a version.
- ``monitor``: reads the registry and rolls back (the alias scripts, as the operator);
  writes its own state under ``<p>:monitor:*`` and sends retrain triggers (the stream,
  and the sent markers under ``<p>:retrain:sent:*``). Its string writes and deletes are
  allowed on those keys only (a Redis 7 selector), so it cannot touch an artifact.
- ``viewer``: reads what the console shows (the registry, the retrain status, the monitor's
  keys) and writes nothing: the Redis user of a read-only console.

Every key pattern comes from :class:`inferloop.keys.Keys` (its areas and the keys the roles
name one by one), so a key added there falls under the rules of its area. Commands inside
the registry's Lua scripts are checked against the caller's ACL too, so
``EVALSHA`` grants nothing beyond the commands listed. The lines are built here, so the
docs (operating.md), ``inferloop registry acl`` and the tests that check them against a real
Redis say the same thing.
"""

from __future__ import annotations

from typing import Literal

from inferloop.keys import Keys

Role = Literal["worker", "retrain", "operator", "monitor", "viewer"]
ROLES: tuple[Role, ...] = ("worker", "retrain", "operator", "monitor", "viewer")

# Reads of every registry key type; MULTI/EXEC make a load's two reads one snapshot.
_READ = (
    "+ping +get +exists +hget +hgetall +hmget +hexists +zrange +zrevrange "
    "+zcard +smembers +lindex +lrange +xrange +xrevrange +multi +exec +discard "
    "+subscribe +unsubscribe"
)
# What the alias scripts (promote, set and remove an alias, promote the challenger,
# rollback, reject) run, and the Redis user they record.
_MOVE = "+evalsha +script|load +acl|whoami +hset +hdel +lpush +ltrim +lpop +xadd +publish"
_REGISTER = "+incr +incrby +sadd +hsetnx +set +del +zadd"
# The retrain job's own lock, status, triggers and outcomes.
_RETRAIN_OWN = "+pexpire +pttl +xreadgroup +xack +xautoclaim +xclaim +xdel +xgroup|create"
_WORKER_OWN = "+incr +incrby +expire +del"
# The monitor's state (one MULTI/EXEC under a WATCH of its lease) and trigger markers.
_MONITOR_OWN = (
    "+get +set +del +pexpire +rpush +ltrim +lrange +hget +hmget +hset +hdel +hincrby +hgetall "
    "+watch +unwatch +multi +exec +discard"
)


def acl_rules(role: Role | str, prefix: str) -> str:
    """The ACL rules of ``role`` for keys under ``prefix`` (without user or password)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    keys = Keys(prefix)
    model, models = keys.area("model"), keys.area("registry")
    retrain, monitor = keys.area("retrain"), keys.area("monitor")
    triggers = keys.retrain_triggers()
    # Alias-move notices are published on a channel under the model's keys.
    channels = f"resetchannels &{model}"
    if role == "worker":
        patterns = f"resetkeys %R~{model} %R~{models} ~{keys.area('worker')}"
        return f"{patterns} {channels} -@all {_READ} {_WORKER_OWN}"
    if role == "retrain":
        # It reads the monitor's shadow-first cool-down (Keys.shadow_first), never writes.
        patterns = f"resetkeys ~{model} ~{models} ~{retrain} %R~{monitor}"
        return f"{patterns} {channels} -@all {_READ} {_MOVE} {_REGISTER} {_RETRAIN_OWN}"
    if role == "monitor":
        patterns = f"resetkeys ~{model} %R~{models} %W~{triggers}"
        own = f"(~{monitor} ~{keys.retrain_sent('*')} {_MONITOR_OWN})"
        return f"{patterns} {channels} -@all {_READ} {_MOVE} {own}"
    if role == "viewer":
        patterns = f"resetkeys %R~{model} %R~{models} %R~{retrain} %R~{monitor}"
        return f"{patterns} {channels} -@all {_READ}"
    patterns = f"resetkeys ~{model} %R~{models} %R~{retrain} %R~{monitor} %W~{triggers}"
    return f"{patterns} {channels} -@all {_READ} {_MOVE}"


# Printed where the password goes, for the reader to replace.
PLACEHOLDER = "PASSWORD"


def setuser_line(role: Role | str, user: str, prefix: str, secret: str = PLACEHOLDER) -> str:
    """The ``ACL SETUSER`` command that creates (or resets) ``user`` for ``role``, with
    ``secret`` as its password (a placeholder to replace by default)."""
    return f"ACL SETUSER {user} reset on >{secret} {acl_rules(role, prefix)}"
