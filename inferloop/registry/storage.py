"""The registry's atomic steps in Redis (Lua scripts) and the translation of Redis errors.

Every script names all the keys it touches in KEYS, and all of them carry the model's
hash tag ``{name}`` (the retrain lock ``<p>:retrain:{domain}:lock`` too, since model
name = domain name), so each one runs on a single Redis Cluster slot. Scripts answer
with a status word first (``ok``, ``conflict``, ...): errors are values at the boundary
and become typed exceptions in Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from inferloop.connections import redis_address
from inferloop.registry.errors import (
    RegistryPermissionError,
    RegistryStorageError,
    RegistryUnavailableError,
)
from inferloop.settings import RedisSettings

# Bounded history: alias moves are rare, 10,000 of them is years of hourly promotions.
HISTORY_MAXLEN = 10_000

_HISTORY_FIELDS = """
local function history(key, action, alias, from, to, version, actor, user, reason, reviewed)
  if reviewed then
    return redis.call('XADD', key, 'MAXLEN', '~', 'HISTORY_MAXLEN', '*',
      'action', action, 'alias', alias, 'from', from, 'to', to, 'version', version,
      'actor', actor, 'user', user, 'reason', reason, 'reviewed', '1')
  end
  return redis.call('XADD', key, 'MAXLEN', '~', 'HISTORY_MAXLEN', '*',
    'action', action, 'alias', alias, 'from', from, 'to', to, 'version', version,
    'actor', actor, 'user', user, 'reason', reason)
end
local function matches(current, expected)
  if expected == '' or string.find(expected, ' ', 1, true) then return current == expected end
  return string.match(current, '^(%d+) ') == expected
end
local function alias_of(aliases, version)
  local pairs_ = redis.call('HGETALL', aliases)
  for i = 1, #pairs_, 2 do
    if string.match(pairs_[i + 1], '^(%d+) ') == version then return pairs_[i] end
  end
  return false
end
""".replace("HISTORY_MAXLEN", str(HISTORY_MAXLEN))

# KEYS: version hash, artifact, versions zset, model hash
# ARGV: version, artifact bytes, now, field, value, field, value, ...
REGISTER = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return {'exists'}
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
redis.call('HSETNX', KEYS[4], 'created_at', ARGV[3])
redis.call('HSET', KEYS[4], 'updated_at', ARGV[3])
return {'ok'}
"""

# KEYS: aliases, new version hash, expected current's version hash, previous champions,
#       history, guard lock key
# ARGV: alias, version, expected ('' = unset, 'N' = version N, 'N DIGEST' = exactly),
#       guard token ('' = none), required digest ('' = any; promote passes the digest it
#       verified), actor, user, reason, channel, previous champions kept, reviewed ('1' lets
#       a rolled-back version move, '' refuses it)
SET_ALIAS = (
    _HISTORY_FIELDS
    + """
local alias = ARGV[1]
if ARGV[4] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[4] then
  return {'lock_lost'}
end
local v = redis.call('HMGET', KEYS[2], 'status', 'artifact_digest', 'deleted_at')
if not v[1] then return {'no_version'} end
if ARGV[5] ~= '' and v[2] ~= ARGV[5] then return {'digest', v[2]} end
if v[3] then return {'tombstone'} end
if v[1] == 'rejected' then return {'rejected'} end
local reviewed = v[1] == 'rolled_back' and ARGV[11] == '1'
if v[1] == 'rolled_back' and not reviewed then return {'rolled_back'} end
local current = redis.call('HGET', KEYS[1], alias) or ''
if not matches(current, ARGV[3]) then return {'conflict', current} end
local target = ARGV[2] .. ' ' .. v[2]
if current == target then return {'unchanged', current} end
redis.call('HSET', KEYS[1], alias, target)
if alias == 'champion' then
  redis.call('HSET', KEYS[2], 'status', 'champion')
  if current ~= '' then
    if redis.call('EXISTS', KEYS[3]) == 1 then
      redis.call('HSET', KEYS[3], 'status', 'archived')
    end
    redis.call('LPUSH', KEYS[4], current)
    redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[10]) - 1)
  end
end
local action = 'set_alias'
if alias == 'champion' then action = 'promote' end
local id = history(KEYS[5], action, alias, current, target, ARGV[2], ARGV[6], ARGV[7], ARGV[8],
  reviewed)
redis.call('PUBLISH', ARGV[9], cjson.encode({id = id, action = action, alias = alias,
  from = current, to = target}))
return {'ok', id, current, target, reviewed and '1' or ''}
"""
)

# KEYS: aliases, history
# ARGV: alias, expected, actor, user, reason, channel
REMOVE_ALIAS = (
    _HISTORY_FIELDS
    + """
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if not matches(current, ARGV[2]) then return {'conflict', current} end
if current == '' then return {'unchanged', ''} end
redis.call('HDEL', KEYS[1], ARGV[1])
local version = string.match(current, '^(%d+) ')
local id = history(KEYS[2], 'remove_alias', ARGV[1], current, '', version, ARGV[3], ARGV[4],
  ARGV[5])
redis.call('PUBLISH', ARGV[6], cjson.encode({id = id, action = 'remove_alias',
  alias = ARGV[1], from = current, to = ''}))
return {'ok', id, current, ''}
"""
)

# KEYS: aliases, current champion's version hash, previous champion's version hash,
#       previous champions, history
# ARGV: expected current, expected previous, previous version number, actor, user, reason,
#       channel
ROLLBACK = (
    _HISTORY_FIELDS
    + """
local current = redis.call('HGET', KEYS[1], 'champion') or ''
if not matches(current, ARGV[1]) then return {'conflict', current} end
local previous = redis.call('LINDEX', KEYS[4], 0) or ''
if previous ~= ARGV[2] then return {'conflict', current} end
if previous == '' then return {'no_previous'} end
local p = redis.call('HMGET', KEYS[3], 'status', 'artifact_digest', 'deleted_at')
if not p[1] then return {'no_version'} end
if previous ~= ARGV[3] .. ' ' .. p[2] then return {'digest', p[2]} end
if p[3] then return {'tombstone'} end
if p[1] == 'rejected' then return {'rejected'} end
if p[1] == 'rolled_back' then return {'rolled_back'} end
redis.call('LPOP', KEYS[4])
redis.call('HSET', KEYS[1], 'champion', previous)
redis.call('HSET', KEYS[3], 'status', 'champion')
if current ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'status', 'rolled_back')
end
local id = history(KEYS[5], 'rollback', 'champion', current, previous, ARGV[3], ARGV[4],
  ARGV[5], ARGV[6])
redis.call('PUBLISH', ARGV[7], cjson.encode({id = id, action = 'rollback',
  alias = 'champion', from = current, to = previous}))
return {'ok', id, current, previous}
"""
)

# KEYS: aliases, challenger's version hash, current champion's version hash, previous
#       champions, history
# ARGV: challenger as verified ('N DIGEST'), expected champion ('' = unset, 'N DIGEST'),
#       actor, user, reason, channel, previous champions kept, reviewed ('1' or '')
PROMOTE_CHALLENGER = (
    _HISTORY_FIELDS
    + """
local challenger = redis.call('HGET', KEYS[1], 'challenger') or ''
if challenger ~= ARGV[1] then return {'challenger_moved', challenger} end
local version = string.match(challenger, '^(%d+) ')
local v = redis.call('HMGET', KEYS[2], 'status', 'artifact_digest', 'deleted_at')
if not v[1] then return {'no_version'} end
if challenger ~= version .. ' ' .. v[2] then return {'digest', v[2]} end
if v[3] then return {'tombstone'} end
if v[1] == 'rejected' then return {'rejected'} end
local reviewed = v[1] == 'rolled_back' and ARGV[8] == '1'
if v[1] == 'rolled_back' and not reviewed then return {'rolled_back'} end
local current = redis.call('HGET', KEYS[1], 'champion') or ''
if not matches(current, ARGV[2]) then return {'conflict', current} end
if current == challenger then return {'unchanged', current} end
redis.call('HSET', KEYS[1], 'champion', challenger)
redis.call('HDEL', KEYS[1], 'challenger')
redis.call('HSET', KEYS[2], 'status', 'champion')
if current ~= '' then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('HSET', KEYS[3], 'status', 'archived')
  end
  redis.call('LPUSH', KEYS[4], current)
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[7]) - 1)
end
local id = history(KEYS[5], 'promote_challenger', 'champion', current, challenger, version,
  ARGV[3], ARGV[4], ARGV[5], reviewed)
redis.call('PUBLISH', ARGV[6], cjson.encode({id = id, action = 'promote_challenger',
  alias = 'champion', from = current, to = challenger}))
return {'ok', id, current, challenger, reviewed and '1' or ''}
"""
)

# KEYS: version hash, aliases, history
# ARGV: version, actor, user, reason, status ('rejected' or 'not_comparable', also the
#       history action, 'reject' for 'rejected')
REJECT = (
    _HISTORY_FIELDS
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'no_version'} end
local alias = alias_of(KEYS[2], ARGV[1])
if alias then return {'aliased', alias} end
if status == 'rejected' or status == ARGV[5] then return {'unchanged', ''} end
redis.call('HSET', KEYS[1], 'status', ARGV[5])
local action = 'reject'
if ARGV[5] ~= 'rejected' then action = ARGV[5] end
local id = history(KEYS[3], action, '', '', '', ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return {'ok', id}
"""
)

# KEYS: version hash, artifact, aliases, previous champions, history
# ARGV: version, actor, user, reason, now
DELETE_ARTIFACT = (
    _HISTORY_FIELDS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_version'} end
if redis.call('HEXISTS', KEYS[1], 'deleted_at') == 1 then return {'unchanged', ''} end
local alias = alias_of(KEYS[3], ARGV[1])
if alias then return {'aliased', alias} end
for _, target in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
  if string.match(target, '^(%d+) ') == ARGV[1] then return {'rollback_target', ''} end
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'deleted_at', ARGV[5], 'deleted_by', ARGV[2],
  'deleted_reason', ARGV[4])
local id = history(KEYS[5], 'delete', '', '', '', ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return {'ok', id}
"""
)

# KEYS: version hash, report hash
# ARGV: file name, bytes, file name, bytes, ...
PUT_REPORT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_version'} end
redis.call('HSET', KEYS[2], unpack(ARGV))
return {'ok'}
"""


class Scripts:
    """The registry's scripts, bound to one client (loaded on first use, by SHA after)."""

    def __init__(self, client: redis.Redis) -> None:
        self.register = client.register_script(REGISTER)
        self.set_alias = client.register_script(SET_ALIAS)
        self.remove_alias = client.register_script(REMOVE_ALIAS)
        self.rollback = client.register_script(ROLLBACK)
        self.promote_challenger = client.register_script(PROMOTE_CHALLENGER)
        self.reject = client.register_script(REJECT)
        self.delete_artifact = client.register_script(DELETE_ARTIFACT)
        self.put_report = client.register_script(PUT_REPORT)


def run(script: Any, keys: Sequence[str], args: Sequence[Any]) -> list[str]:
    """Run ``script``; its answer as text (status word first)."""
    answer = script(keys=list(keys), args=list(args))
    return [part.decode() if isinstance(part, bytes) else str(part) for part in answer]


def _is_permission_error(exc: redis.ResponseError) -> bool:
    text = str(exc)
    # Outside a script Redis says NOPERM; inside one, that the user "can't run" a command.
    return isinstance(exc, redis.exceptions.NoPermissionError) or (
        "NOPERM" in text or "no permissions" in text or "can't run this command" in text
    )


@contextmanager
def translated_errors(settings: RedisSettings) -> Iterator[None]:
    """Turn Redis client errors into registry errors that name the server's address."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RegistryUnavailableError(
            f"Redis unreachable at {redis_address(settings)}: {exc}"
        ) from exc
    except redis.ResponseError as exc:
        if _is_permission_error(exc):
            raise RegistryPermissionError(
                f"Redis at {redis_address(settings)} refused: {exc} "
                f"(user {settings.username or 'default'})"
            ) from exc
        raise RegistryStorageError(f"Redis at {redis_address(settings)}: {exc}") from exc
    except redis.RedisError as exc:
        raise RegistryStorageError(f"Redis at {redis_address(settings)}: {exc}") from exc
