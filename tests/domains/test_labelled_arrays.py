"""The fast labelled-transactions parser gives exactly the pydantic path's result."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from inferloop.domains import get_domain
from inferloop.domains import schemas as s
from inferloop.domains.labelled_arrays import parse_labelled_transactions, parse_one
from inferloop.domains.spec import DomainSpec
from tests.domains.factories import encode, transaction_dict, without

TRANSACTIONS = get_domain("transactions")


def labelled(i: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid labelled transaction as a dict."""
    event = transaction_dict(
        i,
        label="fraud" if i % 7 == 0 else "legit",
        labelled_at=f"2013-10-01T08:00:{i % 60:02d}.25+01:00",
        label_source="chargeback",
    )
    event.update(changes)
    return event


def pydantic_path(values: list[Any]) -> s.LabelledBatch:
    """The generic (pydantic) parser, as every domain had it."""
    return DomainSpec.parse_labelled(TRANSACTIONS, values)


def assert_same(fast: s.LabelledBatch, slow: s.LabelledBatch) -> None:
    assert fast.ids == slow.ids
    np.testing.assert_array_equal(fast.event_time_s, slow.event_time_s)
    np.testing.assert_array_equal(fast.labelled_at_s, slow.labelled_at_s)
    np.testing.assert_array_equal(fast.y, slow.y)
    assert fast.rows.dtype == slow.rows.dtype
    assert fast.rows.shape == slow.rows.shape
    np.testing.assert_array_equal(fast.rows, slow.rows)
    assert fast.rejects == slow.rejects
    assert fast.extra_fields == slow.extra_fields


# Each a record the fast path must not take as it is: invalid, or valid but unusual.
SPOILED: dict[str, Any] = {
    "null": None,
    "not_json": b"{not json",
    "not_utf8": b'{"id": "\xff"}',
    "array": b"[1, 2]",
    "nan": encode(labelled(1)).replace(b'"amount": 12.5', b'"amount": NaN'),
    "overflow": encode(labelled(2)).replace(b'"amount": 12.5', b'"amount": 1e400'),
    "lone_surrogate": encode(labelled(3, id="\ud800x")),
    "missing_v7": encode(without(labelled(4), "v7")),
    "missing_label": encode(without(labelled(5), "label")),
    "string_number": encode(labelled(6, v3="1.5")),
    "bool_number": encode(labelled(7, amount=True)),
    "huge_int": encode(labelled(9, amount=2**60 + 1)),
    "unknown_label": encode(labelled(10, label="maybe")),
    "empty_id": encode(labelled(11, id="")),
    "long_id": encode(labelled(12, id="x" * 257)),
    "int_id": encode(labelled(13, id=13)),
    "naive_time": encode(labelled(14, event_time="2013-09-01T00:00:00")),
    "space_time": encode(labelled(15, event_time="2013-09-01 00:00:00Z")),
    "seven_digits": encode(labelled(16, labelled_at="2013-10-01T00:00:00.1234567Z")),
    "bad_date": encode(labelled(17, event_time="2013-02-30T00:00:00Z")),
    "number_time": encode(labelled(18, event_time=1378000000)),
    "version_0": encode(labelled(19, schema_version=0)),
    "version_2": encode(labelled(20, schema_version=2)),
    "version_float": encode(labelled(21, schema_version=1.0)),
    "version_bool": encode(labelled(22, schema_version=True)),
    "currency": encode(labelled(23, currency="EURO")),
    "null_currency": encode(labelled(24, currency=None)),
    "card_id_number": encode(labelled(25, card_id=5)),
    "empty_source": encode(labelled(26, label_source="")),
    "oversize": encode(labelled(27, pad="x" * (s.MAX_EVENT_BYTES + 1))),
    "too_deep": encode(labelled(28, deep=json.loads("[" * 300 + "]" * 300))),
}


@pytest.mark.parametrize("name", sorted(SPOILED))
def test_a_spoiled_record_goes_the_pydantic_way(name: str) -> None:
    raw = SPOILED[name]
    if raw is not None:
        assert parse_one(raw, TRANSACTIONS.label_names, TRANSACTIONS.schema_version) is None
    values = [encode(labelled(100)), raw, encode(labelled(101))]
    assert_same(TRANSACTIONS.parse_labelled(values), pydantic_path(values))


def test_valid_records_in_many_spellings_parse_the_same() -> None:
    times = [
        "2013-09-01T00:00:00Z",
        "2013-09-01T00:00:00+00:00",
        "2013-09-01T23:59:59.5-05:30",
        "1969-12-31T23:59:59.999999+14:00",
        "2038-01-19T03:14:08.000001-00:00",
        "0001-01-01T00:00:00+00:00",
    ]
    values = [
        encode(labelled(i, event_time=times[i % len(times)], amount=[0.0, 1e-300, -3.25][i % 3]))
        for i in range(60)
    ]
    values.append(encode(labelled(60, card_id=None, merchant_id="m" * 256, currency="USD")))
    values.append(encode(without(without(labelled(61), "label_source"), "card_id")))
    values.append(encode(labelled(62, extra_a=1, extra_b={"x": [1]})))
    values.append(encode(labelled(63, id="ünïcødé-€")))
    values.append(encode(labelled(64, amount=10, v1=-(2**53), deep=[[[[1]]]])))
    fast = TRANSACTIONS.parse_labelled(values)
    assert not fast.rejects
    assert fast.extra_fields == 3
    assert_same(fast, pydantic_path(values))
    assert all(
        parse_one(v, TRANSACTIONS.label_names, TRANSACTIONS.schema_version) for v in values
    ), "every valid record above takes the fast path"


def test_a_mixed_batch_keeps_record_order_and_reject_positions() -> None:
    rng = np.random.default_rng(7)
    names = sorted(SPOILED)
    values: list[Any] = []
    for i in range(300):
        if rng.random() < 0.3:
            values.append(SPOILED[names[int(rng.integers(len(names)))]])
        else:
            values.append(encode(labelled(i)))
    fast = TRANSACTIONS.parse_labelled(values)
    assert fast.rejects
    assert len(fast) > 150
    assert_same(fast, pydantic_path(values))


def test_empty_and_all_bad_batches() -> None:
    assert_same(TRANSACTIONS.parse_labelled([]), pydantic_path([]))
    bad = [None, b"{", encode(labelled(1, label="x"))]
    batch = TRANSACTIONS.parse_labelled(bad)
    assert len(batch) == 0
    assert batch.rows.shape == (0, 29)
    assert [r.reason for r in batch.rejects] == [s.NULL_VALUE, s.NOT_JSON, s.BAD_VALUE]
    assert_same(batch, pydantic_path(bad))


def test_the_slow_path_gets_only_what_the_fast_path_left() -> None:
    seen: list[Any] = []

    def slow(values: Any) -> s.LabelledBatch:
        seen.extend(values)
        return pydantic_path(list(values))

    values = [encode(labelled(0)), SPOILED["empty_id"], encode(labelled(2))]
    batch = parse_labelled_transactions(values, TRANSACTIONS.label_names, 1, slow)
    assert seen == [SPOILED["empty_id"]]
    assert batch.ids == ["tx-0", "tx-2"]
    assert [(r.index, r.reason) for r in batch.rejects] == [(1, s.BAD_VALUE)]


def test_a_newer_schema_version_is_rejected_at_its_own_position() -> None:
    # An earlier reject must not shift the position of an unsupported-version reject.
    values = [b"{", encode(labelled(1)), encode(labelled(2, schema_version=2))]
    for batch in (TRANSACTIONS.parse_labelled(values), pydantic_path(values)):
        assert batch.ids == ["tx-1"]
        assert [(r.index, r.reason) for r in batch.rejects] == [
            (0, s.NOT_JSON),
            (2, s.UNSUPPORTED_VERSION),
        ]
