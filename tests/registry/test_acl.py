"""The Redis ACL users of docs/operating.md allow and deny what they claim, on the real Redis."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from pydantic import SecretStr

from inferloop.keys import Keys
from inferloop.registry import LockGuard, Registry, RegistryPermissionError
from inferloop.registry.acl import setuser_line
from inferloop.settings import Settings
from tests.registry.factories import Register, RegistryFactory, Trained, train_transactions

MakeUser = Callable[[str], Registry]


@pytest.fixture
def as_role(
    registry_settings: Settings, registry_factory: RegistryFactory, redis_client: redis.Redis
) -> Iterator[MakeUser]:
    """``as_role(role)``: a registry logged in as a new Redis user made by the role's
    ``ACL SETUSER`` line for the test's key prefix (deleted at the end)."""
    users: list[str] = []

    def make(role: str) -> Registry:
        user, password = f"{role}-{uuid.uuid4().hex[:8]}", secrets.token_hex(16)
        line = setuser_line(role, user, registry_settings.redis.key_prefix, secret=password)
        _, _, user_, *rules = line.split()
        assert user_ == user
        redis_client.acl_setuser(user, reset=True)
        redis_client.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
        users.append(user)
        redis_section = registry_settings.redis.model_copy(
            update={"username": user, "password": SecretStr(password)}
        )
        settings = registry_settings.model_copy(update={"redis": redis_section})
        return registry_factory(settings)

    yield make
    for user in users:
        redis_client.acl_deluser(user)


def _raw(registry: Registry) -> redis.Redis:
    return registry.client


@pytest.fixture
def stored(registry: Registry, register: Register, tx_model: Trained) -> Registry:
    """Two versions, v1 champion, made by the default user."""
    register(tx_model)
    register(train_transactions(seed=1))
    registry.promote("transactions", 1, expected_current=None, reason="first")
    return registry


def test_a_worker_reads_and_loads_but_cannot_write(stored: Registry, as_role: MakeUser) -> None:
    worker = as_role("worker")
    target = worker.resolve("transactions")
    assert target == stored.resolve("transactions")
    assert [v.version for v in worker.list_versions("transactions")] == [1, 2]
    assert [m.name for m in worker.list_models()] == ["transactions"]
    assert worker.history("transactions")[0].action == "promote"
    assert worker.load("transactions", 1).target == target
    assert worker.verify("transactions", 2).ok
    with worker.watch("transactions") as watcher:
        watcher.wait(timeout_s=0.3)
        stored.promote("transactions", 2, expected_current=1, reason="seen by the worker")
        assert watcher.wait(timeout_s=10) == stored.resolve("transactions")

    with pytest.raises(RegistryPermissionError):
        worker.promote("transactions", 1, expected_current=2, reason="x")
    with pytest.raises(RegistryPermissionError):
        worker.rollback("transactions", "x")
    keys = stored.keys
    raw = _raw(worker)
    for write in (
        lambda: raw.set(keys.artifact("transactions", 1), b"evil"),
        lambda: raw.hset(keys.aliases("transactions"), "champion", "1 x"),
        lambda: raw.delete(keys.artifact("transactions", 1)),
        lambda: raw.get("elsewhere:secret"),
        raw.flushdb,
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    assert worker.resolve("transactions") == stored.resolve("transactions")


def test_an_operator_promotes_rolls_back_and_rejects_but_cannot_register_or_delete(
    stored: Registry, as_role: MakeUser, register: Register, tx_model: Trained
) -> None:
    operator = as_role("operator")
    entry = operator.promote("transactions", 2, expected_current=1, reason="operator's call")
    assert entry.user == operator.redis_settings.username
    operator.rollback("transactions", "back")
    assert operator.resolve("transactions") == stored.get_version("transactions", 1).target
    operator.reject("transactions", 2, "not good enough")
    assert [(e.action, e.user) for e in stored.history("transactions", limit=3)] == [
        ("reject", operator.redis_settings.username),
        ("rollback", operator.redis_settings.username),
        ("promote", operator.redis_settings.username),
    ]

    with pytest.raises(RegistryPermissionError):
        register(tx_model, into=operator)
    with pytest.raises(RegistryPermissionError):
        operator.delete_version("transactions", 2, reason="x")
    raw = _raw(operator)
    with pytest.raises(redis.exceptions.NoPermissionError):
        raw.set(stored.keys.artifact("transactions", 2), b"evil")
    with pytest.raises(redis.exceptions.NoPermissionError):
        raw.incr(stored.keys.version_counter("transactions"))
    # It may queue a retrain, not take the retrain lock.
    assert raw.xadd(stored.keys.retrain_triggers(), {"domain": "transactions"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        raw.set(stored.keys.retrain_lock("transactions"), "mine")
    assert [v.version for v in stored.list_versions("transactions")] == [1, 2]
    assert stored.get_version("transactions", 2).has_artifact


def test_the_retrain_job_registers_promotes_under_its_lock_and_prunes(
    stored: Registry, as_role: MakeUser, register: Register, tx_model: Trained
) -> None:
    retrain = as_role("retrain")
    lock = Keys(stored.keys.prefix).retrain_lock("transactions")
    raw = _raw(retrain)
    assert raw.set(lock, "token", nx=True, px=60_000)
    version = register(train_transactions(seed=2), into=retrain).version
    retrain.put_report("transactions", version, {"report.md": b"# report\n"})
    retrain.promote(
        "transactions", version, expected_current=1, reason="better", guard=LockGuard(lock, "token")
    )
    retrain.reject("transactions", 2, "worse")
    assert retrain.apply_retention("transactions", keep=1) == [2]
    assert stored.history("transactions", limit=1)[0].user == retrain.redis_settings.username
    # Shadow-first: it sets the challenger, and reads the monitor's cool-down, read-only.
    challenger = register(train_transactions(seed=3), into=retrain).version
    retrain.set_alias(
        "transactions",
        "challenger",
        challenger,
        expected_current=None,
        reason="shadow-first",
        guard=LockGuard(lock, "token"),
    )
    assert stored.resolve("transactions", "challenger") is not None
    cool_down = Keys(stored.keys.prefix).shadow_first("transactions")
    stored.client.set(cool_down, "3", ex=60)
    assert raw.get(cool_down) == b"3"
    with pytest.raises(redis.exceptions.NoPermissionError):
        raw.set(cool_down, "4")
    with pytest.raises(redis.exceptions.NoPermissionError):
        raw.delete(cool_down)

    with pytest.raises(redis.exceptions.NoPermissionError):
        raw.get("elsewhere:secret")
    with pytest.raises(redis.exceptions.NoPermissionError):
        raw.flushdb()


def test_the_monitor_keeps_its_state_sends_triggers_and_rolls_back_but_cannot_register(
    stored: Registry, as_role: MakeUser, register: Register, tx_model: Trained
) -> None:
    from inferloop.monitor.state import Changes, StateStore
    from inferloop.monitor.window import Entry
    from inferloop.triggers import Trigger, publish_once

    monitor = as_role("monitor")
    raw = _raw(monitor)
    keys = Keys(stored.keys.prefix)
    # Its state: the lease, one batch in one MULTI/EXEC under a WATCH, read back.
    store = StateStore(raw, keys, "transactions", lease_s=5.0)
    store.acquire()
    entry = Entry(7, 1, 0, 1.0, 2.0, {1: 0.5})
    store.commit(Changes(offsets={"labels:0": 3}, appended=[entry], dropped=0))
    assert store.load().entries == [entry]
    assert raw.set(keys.monitor_decision("transactions"), "me", nx=True, px=1000)
    # A retrain trigger, once.
    trigger = Trigger("monitor-floor-1", "transactions", False, "monitor", "2026-12-07T00:00Z")
    assert publish_once(raw, keys, trigger, dedupe_s=60) is not None
    # A rollback, as the registry records it.
    stored.promote("transactions", 2, expected_current=1, reason="new")
    monitor.rollback("transactions", "paired loss", actor="monitor")
    assert stored.resolve("transactions") == stored.get_version("transactions", 1).target
    assert stored.history("transactions", limit=1)[0].user == monitor.redis_settings.username

    with pytest.raises(RegistryPermissionError):
        register(tx_model, into=monitor)
    for write in (
        lambda: raw.set(stored.keys.artifact("transactions", 1), b"evil"),
        lambda: raw.delete(stored.keys.artifact("transactions", 1)),
        lambda: raw.set(keys.retrain_lock("transactions"), "mine"),
        lambda: raw.get("elsewhere:secret"),
        raw.flushdb,
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()


@pytest.mark.parametrize("role", ["operator", "monitor"])
def test_the_alias_roles_promote_the_challenger_and_remove_an_alias(
    stored: Registry, as_role: MakeUser, role: str
) -> None:
    # Both scripts delete a field of the aliases hash (HDEL), which the roles must allow.
    user = as_role(role)
    v1, v2 = (stored.get_version("transactions", n).target for n in (1, 2))
    user.set_alias("transactions", "challenger", 2, expected_current=None, reason="shadow v2")
    entry = user.promote_challenger("transactions", reason="better in shadow", actor=role)
    assert (entry.action, entry.from_target, entry.to_target) == ("promote_challenger", v1, v2)
    assert stored.resolve("transactions") == v2
    assert stored.resolve("transactions", "challenger") is None

    user.set_alias("transactions", "challenger", 1, expected_current=None, reason="shadow v1")
    user.remove_alias("transactions", "challenger", expected_current=1, reason="enough")
    assert stored.resolve("transactions", "challenger") is None
    assert [(e.action, e.user) for e in stored.history("transactions", limit=4)] == [
        ("remove_alias", user.redis_settings.username),
        ("set_alias", user.redis_settings.username),
        ("promote_challenger", user.redis_settings.username),
        ("set_alias", user.redis_settings.username),
    ]


def test_a_viewer_reads_what_the_console_shows_and_writes_nothing(
    stored: Registry, as_role: MakeUser
) -> None:
    from inferloop.ops.retrain_status import read_retrain

    keys = stored.keys
    stored.client.set(keys.monitor_status("transactions"), '{"roles": {}, "alarms": []}')
    stored.client.hset(keys.retrain_status("transactions"), "next_run_at", "soon")
    viewer = as_role("viewer")
    assert [v.version for v in viewer.list_versions("transactions")] == [1, 2]
    assert viewer.history("transactions")[0].action == "promote"
    assert read_retrain(viewer.client, keys, "transactions").next_run_at == "soon"
    assert viewer.client.get(keys.monitor_status("transactions")) is not None
    with pytest.raises(RegistryPermissionError):
        viewer.promote("transactions", 2, expected_current=1, reason="x")
    raw = _raw(viewer)
    for write in (
        lambda: raw.xadd(keys.retrain_triggers(), {"domain": "transactions"}),
        lambda: raw.set(keys.monitor_status("transactions"), "{}"),
        lambda: raw.hset(keys.aliases("transactions"), "champion", "2 x"),
        lambda: raw.get("elsewhere:secret"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    # The operator's console reads the monitor's keys too, and still cannot write them.
    operator = _raw(as_role("operator"))
    assert operator.get(keys.monitor_status("transactions")) is not None
    with pytest.raises(redis.exceptions.NoPermissionError):
        operator.set(keys.monitor_status("transactions"), "{}")
