"""Topic names and Redis keys are built in one place each."""

from __future__ import annotations

import pytest

from inferloop.keys import Keys
from inferloop.settings import TopicSettings
from inferloop.topics import domain_topics


def test_domain_has_five_topics_under_prefix() -> None:
    names = domain_topics(TopicSettings(prefix="dev-"), "transactions")
    assert names.all() == (
        "dev-transactions",
        "dev-transactions.predictions",
        "dev-transactions.labels",
        "dev-transactions.dlq",
        "dev-transactions.shadow",
    )


def test_shadow_topic_is_kept_like_predictions() -> None:
    names = domain_topics(TopicSettings(), "transactions")
    assert names.shadow == "transactions.shadow"
    assert names.config_for(names.shadow) == names.config_for(names.predictions) == {}


def test_only_labels_topic_is_kept_forever() -> None:
    names = domain_topics(TopicSettings(), "emails")
    assert names.config_for(names.labels)["retention.ms"] == "-1"
    assert names.config_for(names.labels)["cleanup.policy"] == "delete"
    assert names.config_for(names.events) == {}


def test_unknown_domain_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown domain"):
        domain_topics(TopicSettings(), "sms")  # type: ignore[arg-type]


def test_model_keys_share_one_cluster_hash_tag() -> None:
    keys = Keys("p")
    model_keys = [
        keys.model("spam"),
        keys.aliases("spam"),
        keys.version_counter("spam"),
        keys.versions("spam"),
        keys.version("spam", 3),
        keys.artifact("spam", 3),
        keys.history("spam"),
    ]
    assert all(k.startswith("p:") for k in model_keys)
    assert {k[k.index("{") : k.index("}") + 1] for k in model_keys} == {"{spam}"}


@pytest.mark.parametrize("name", ["", "a:b", "a{b", "a}b", "a b"])
def test_key_parts_that_would_break_the_layout_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must be non-empty"):
        Keys("p").model(name)
