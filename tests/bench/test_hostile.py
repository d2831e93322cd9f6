"""Every hostile message of the fault runs is rejected by the domain's own validation
with the reason the fault run expects of the worker (the run itself checks the worker)."""

from __future__ import annotations

from collections import Counter

from bench.faults.hostile import TEN_MB, expected_reason_counts, hostile_messages
from inferloop.domains import get_domain


def test_each_hostile_message_gets_its_expected_reason() -> None:
    messages = hostile_messages("h", copies=1)
    validated = get_domain("transactions").validate_batch([m.value for m in messages])
    got = {r.index: r.reason for r in validated.rejects}
    assert {m.kind: got.get(i) for i, m in enumerate(messages)} == {
        m.kind: m.rejected_as for m in messages
    }


def test_the_kinds_the_issue_names_are_all_there() -> None:
    kinds = {m.kind for m in hostile_messages("h", copies=1)}
    assert {"malformed_json", "amount_as_string", "missing_amount", "oversize_card_id",
            "non_utf8", "nan_amount", "ten_mb_message", "deeply_nested",
            "duplicate_id"} <= kinds  # fmt: skip
    big = [m for m in hostile_messages("h", copies=1) if m.kind == "ten_mb_message"]
    assert big[0].value is not None
    assert len(big[0].value) > TEN_MB
    assert big[0].reason == "too_large"


def test_copies_have_their_own_ids_except_the_duplicates() -> None:
    messages = hostile_messages("h", copies=3)
    keys = Counter(m.key for m in messages)
    assert keys["h-duplicate_id"] == 3
    assert all(n == 1 for k, n in keys.items() if k != "h-duplicate_id")
    assert expected_reason_counts(messages)["not_json"] == 6
