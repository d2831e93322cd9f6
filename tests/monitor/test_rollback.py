"""After a promotion the previous champion is re-scored beside the new one; a paired
loss rolls the new one back (marked rolled_back), equal versions never are (real Kafka,
Redis and registry). The loss and the rollback are kept with their time, versions and
evidence, and shown by the next monitor too."""

from __future__ import annotations

from collections.abc import Callable

import redis

from inferloop.keys import Keys
from inferloop.ops.monitor_history import read_actions
from inferloop.registry import Registry
from inferloop.settings import Settings
from inferloop.topics import DomainTopics
from tests.monitor.conftest import MonitorThread, positives, publish_labels
from tests.monitor.test_rescoring import status
from tests.worker.conftest import Champion
from tests.worker.factories import Fitted

IDS = list(range(800))


def test_a_promotion_that_loses_on_live_labels_is_rolled_back_and_marked(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    registry: Registry,
    model_v1: Fitted,
    redis_client: redis.Redis,
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    good = champion(model_v1)
    # The same trees behind a threshold that flags almost nothing: it misses the fraud.
    bad = champion(Fitted(model_v1.pipeline, 0.9999))
    assert positives(IDS) >= 50
    publish_labels(msettings, topics.labels, IDS)

    monitor_thread(msettings, until_idle_s=4.0).join(120)

    assert registry.resolve("transactions") == good.target
    # Rolled back, not rejected: promotable again once reviewed, as the design says.
    assert registry.get_version("transactions", bad.version).status == "rolled_back"
    (last,) = registry.history("transactions", limit=1)
    assert (last.action, last.actor) == ("rollback", "monitor")
    keys = Keys(msettings.redis.key_prefix)
    assert redis_client.get(keys.shadow_first("transactions")) == str(bad.version).encode()
    snapshot = status(msettings)
    assert any(a["action"] == "Rollback" and a["outcome"] == "done" for a in snapshot["actions"])
    # Kept with its time, the versions and the evidence.
    kept = read_actions(redis_client, keys, "transactions")
    (rollback,) = [a for a in kept if a.kind == "rollback"]
    assert (rollback.outcome, rollback.champion) == ("done", bad.version)
    assert (rollback.version, rollback.other) == (bad.version, good.version)
    assert rollback.figure == "e_loss"
    assert rollback.value is not None
    assert rollback.threshold is not None
    assert rollback.threshold == rollback.evidence["threshold_e"]
    assert rollback.value >= rollback.threshold
    assert rollback.evidence["decision"] == "probation"
    assert rollback.evidence["outcome"] == "loss"
    assert rollback.labelled == rollback.evidence["n"] > 0
    (loss,) = [a for a in kept if a.kind == "probation-loss"]
    assert (loss.outcome, loss.at_s, loss.evidence) == ("raised", rollback.at_s, rollback.evidence)
    assert snapshot["alarm_log"][0] == kept[0].as_status()

    # Another monitor process: the rollback is still in its status.
    monitor_thread(msettings, until_idle_s=2.0).join(120)
    assert rollback.as_status() in status(msettings)["alarm_log"]


def test_an_equal_version_on_probation_is_never_rolled_back(
    *,
    msettings: Settings,
    topics: DomainTopics,
    champion: Champion,
    registry: Registry,
    model_v1: Fitted,
    monitor_thread: Callable[..., MonitorThread],
) -> None:
    champion(model_v1)
    same = champion(model_v1)
    publish_labels(msettings, topics.labels, IDS)

    monitor_thread(msettings, until_idle_s=4.0).join(120)

    assert registry.resolve("transactions") == same.target
    assert registry.history("transactions", limit=1)[0].action == "promote"
    snapshot = status(msettings)
    assert snapshot["probation"]["version"] == same.version
    assert snapshot["probation"]["positives_compared"] == positives(IDS)
    assert snapshot["probation"]["discordant"] == 0
    assert set(snapshot["roles"]) == {"champion", "previous"}
