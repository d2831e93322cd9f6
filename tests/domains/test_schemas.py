"""Hostile input: every kind of bad message is rejected with its precise reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from inferloop.domains import DomainSpec, UnknownDomainError, get_domain
from inferloop.domains import schemas as s
from tests.domains.factories import email_dict, encode, transaction_dict, without

EMAILS = get_domain("emails")
TRANSACTIONS = get_domain("transactions")


def only_reject(spec: DomainSpec, value: bytes | None) -> s.Reject:
    batch = spec.validate_batch([value])
    assert batch.events == []
    assert batch.indices == []
    assert len(batch.rejects) == 1
    assert batch.rejects[0].index == 0
    return batch.rejects[0]


def tx(i: int = 0, **changes: Any) -> bytes:
    return encode(transaction_dict(i, **changes))


def em(**changes: Any) -> bytes:
    return encode(email_dict(**changes))


def _with_raw_amount(literal: str) -> bytes:
    # NaN and Infinity are not JSON, but Python's json and many producers write them.
    return tx(amount=123456.0).replace(b"123456.0", literal.encode())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(None, s.NULL_VALUE, id="tombstone"),
        pytest.param(b"\xff\xfe{}", s.NOT_UTF8, id="not-utf8-garbage"),
        pytest.param(
            tx(card_id="caf\u00e9").replace(b"\\u00e9", b"\xe9"),
            s.NOT_UTF8,
            id="latin1-inside-valid-json",
        ),
        pytest.param(b'{"id": "tx-1",', s.NOT_JSON, id="truncated-json"),
        pytest.param(b"", s.NOT_JSON, id="empty"),
        pytest.param(tx() + b" trailing", s.NOT_JSON, id="trailing-garbage"),
        pytest.param(b"[1, 2, 3]", s.NOT_OBJECT, id="array"),
        pytest.param(b'"just a string"', s.NOT_OBJECT, id="string"),
        pytest.param(b"null", s.NOT_OBJECT, id="json-null"),
        pytest.param(b'{"id": ' + b"[" * 300 + b"]" * 300 + b"}", s.TOO_DEEP, id="nested-300"),
        pytest.param(b"[" * 5_000 + b"]" * 5_000, s.TOO_DEEP, id="nested-5000-recursion"),
        pytest.param(b"[" * 100_000, s.TOO_DEEP, id="nested-100000-unclosed"),
        pytest.param(
            encode(without(transaction_dict(), "amount")), s.MISSING_FIELD, id="missing-amount"
        ),
        pytest.param(encode(without(transaction_dict(), "id")), s.MISSING_FIELD, id="missing-id"),
        pytest.param(
            encode(without(transaction_dict(), "event_time")), s.MISSING_FIELD, id="missing-time"
        ),
        pytest.param(
            encode(without(transaction_dict(), "schema_version")),
            s.MISSING_FIELD,
            id="missing-schema-version",
        ),
        pytest.param(tx(amount="12.50"), s.WRONG_TYPE, id="amount-as-string"),
        pytest.param(tx(amount=True), s.WRONG_TYPE, id="amount-as-bool"),
        pytest.param(tx(amount=None), s.WRONG_TYPE, id="amount-null"),
        pytest.param(tx(v3=[1.0]), s.WRONG_TYPE, id="feature-as-list"),
        pytest.param(tx(id=17), s.WRONG_TYPE, id="id-as-number"),
        pytest.param(tx(schema_version="1"), s.WRONG_TYPE, id="version-as-string"),
        pytest.param(tx(event_time=1_377_993_600), s.WRONG_TYPE, id="time-as-number"),
        pytest.param(_with_raw_amount("NaN"), s.NOT_FINITE, id="amount-nan"),
        pytest.param(_with_raw_amount("Infinity"), s.NOT_FINITE, id="amount-infinity"),
        pytest.param(_with_raw_amount("-Infinity"), s.NOT_FINITE, id="amount-minus-infinity"),
        pytest.param(_with_raw_amount("1e999"), s.NOT_FINITE, id="amount-overflows-to-inf"),
        pytest.param(tx(event_time="2013-09-01T00:00:00"), s.NAIVE_TIME, id="naive-time"),
        pytest.param(tx(event_time="2013-09-01"), s.BAD_TIME, id="date-only"),
        pytest.param(tx(event_time="yesterday"), s.BAD_TIME, id="not-a-time"),
        pytest.param(tx(event_time="2013-13-01T00:00:00Z"), s.BAD_TIME, id="month-13"),
        pytest.param(tx(id="x" * (s.MAX_ID_CHARS + 1)), s.OVERSIZE_FIELD, id="oversize-id"),
        pytest.param(tx(id=""), s.BAD_VALUE, id="empty-id"),
        pytest.param(tx(schema_version=0), s.BAD_VALUE, id="version-zero"),
        pytest.param(tx(currency="EURO"), s.OVERSIZE_FIELD, id="oversize-currency"),
        pytest.param(tx(schema_version=2), s.UNSUPPORTED_VERSION, id="newer-version"),
        pytest.param(
            tx(card_id="\ud800").replace(b"\\ud800", b"\\ud800"),
            s.LONE_SURROGATE,
            id="lone-high-surrogate",
        ),
        pytest.param(tx(card_id="a\udc00b"), s.LONE_SURROGATE, id="lone-low-surrogate"),
        pytest.param(
            encode(transaction_dict() | {"extra\udc00": 1}),
            s.LONE_SURROGATE,
            id="lone-surrogate-in-key",
        ),
        pytest.param(b"x" * (s.MAX_EVENT_BYTES + 1), s.OVERSIZE_EVENT, id="oversize-event"),
    ],
)
def test_bad_transaction_is_rejected_with_its_reason(value: bytes | None, reason: str) -> None:
    reject = only_reject(TRANSACTIONS, value)
    assert reject.reason == reason, reject.detail
    assert reject.detail
    assert reason in s.REJECT_REASONS


@pytest.mark.parametrize(
    ("value", "reason", "field"),
    [
        pytest.param(
            em(body="x" * (s.MAX_BODY_CHARS + 1)), s.OVERSIZE_FIELD, "body", id="oversize-body"
        ),
        pytest.param(
            em(subject="s" * (s.MAX_SUBJECT_CHARS + 1)),
            s.OVERSIZE_FIELD,
            "subject",
            id="oversize-subject",
        ),
        pytest.param(
            em(recipients=["a@b.c"] * (s.MAX_RECIPIENTS + 1)),
            s.OVERSIZE_FIELD,
            "recipients",
            id="too-many-recipients",
        ),
        pytest.param(
            em(headers={f"h{i}": "v" for i in range(s.MAX_HEADERS + 1)}),
            s.OVERSIZE_FIELD,
            "headers",
            id="too-many-headers",
        ),
        pytest.param(
            em(headers={"x-mailer": "m" * (s.MAX_HEADER_VALUE_CHARS + 1)}),
            s.OVERSIZE_FIELD,
            "headers.x-mailer",
            id="oversize-header",
        ),
        pytest.param(
            encode(without(email_dict(), "body")), s.MISSING_FIELD, "body", id="missing-body"
        ),
        pytest.param(
            encode(without(email_dict(), "sender")), s.MISSING_FIELD, "sender", id="missing-sender"
        ),
        pytest.param(
            em(recipients="bob@example.com"), s.WRONG_TYPE, "recipients", id="recipients-as-string"
        ),
        pytest.param(
            em(headers={"x-mailer": 5}), s.WRONG_TYPE, "headers.x-mailer", id="header-as-number"
        ),
        pytest.param(em(body=["text"]), s.WRONG_TYPE, "body", id="body-as-list"),
        pytest.param(
            em(subject="hi \udbff there"), s.LONE_SURROGATE, "subject", id="lone-surrogate-subject"
        ),
        pytest.param(
            em(event_time="2024-05-01 12:00"), s.NAIVE_TIME, "event_time", id="naive-time"
        ),
    ],
)
def test_bad_email_is_rejected_with_its_reason(value: bytes, reason: str, field: str) -> None:
    reject = only_reject(EMAILS, value)
    assert reject.reason == reason, reject.detail
    assert reject.detail.startswith(field), reject.detail


def test_a_50_mb_body_is_a_reject_not_a_crash() -> None:
    value = em(body="spam " * 10_000_000)
    assert only_reject(EMAILS, value).reason == s.OVERSIZE_EVENT


def test_labelled_example_needs_a_known_label() -> None:
    good = encode(email_dict(label="spam", labelled_at="2024-05-02T00:00:00Z"))
    bad = encode(email_dict(label="junk", labelled_at="2024-05-02T00:00:00Z"))
    naive = encode(email_dict(label="ham", labelled_at="2024-05-02T00:00:00"))
    missing = encode(email_dict(label="ham"))
    batch = EMAILS.parse_labelled([good, bad, naive, missing])
    assert batch.ids == ["email-0"]
    assert [(r.index, r.reason) for r in batch.rejects] == [
        (1, s.BAD_VALUE),
        (2, s.NAIVE_TIME),
        (3, s.MISSING_FIELD),
    ]


def test_good_events_keep_input_order_and_bad_ones_their_index() -> None:
    values: list[bytes | None] = [tx(0), b"nonsense", tx(1), None, tx(2)]
    batch = TRANSACTIONS.validate_batch(values)
    assert [e.id for e in batch.events] == ["tx-0", "tx-1", "tx-2"]
    assert batch.indices == [0, 2, 4]
    assert [(r.index, r.reason) for r in batch.rejects] == [(1, s.NOT_JSON), (3, s.NULL_VALUE)]


def test_unknown_fields_are_accepted_counted_and_dropped() -> None:
    values = [
        encode(transaction_dict(0) | {"new_field": 1, "another": {"nested": [1, 2]}}),
        encode(transaction_dict(1) | {"new_field": 2}),
        tx(2),
    ]
    batch = TRANSACTIONS.validate_batch(values)
    assert len(batch.events) == 3
    assert batch.rejects == []
    assert batch.extra_fields == 3
    assert all(not e.__pydantic_extra__ for e in batch.events)


def test_paired_surrogates_are_fine() -> None:
    batch = EMAILS.validate_batch([em(subject="\U0001f600 offer")])
    assert batch.rejects == []
    assert batch.events[0].subject == "\U0001f600 offer"  # type: ignore[attr-defined]


def test_times_keep_their_zone() -> None:
    (event,) = EMAILS.validate_batch([em()]).events
    assert event.event_time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_prediction_round_trips_with_its_schema_version() -> None:
    prediction = s.Prediction(
        event_id="tx-1",
        domain="transactions",
        label="fraud",
        score=0.93,
        threshold=0.41,
        model=s.ModelRef(name="transactions", version=3),
        event_time=datetime(2013, 9, 1, tzinfo=UTC),
        predicted_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    again = s.Prediction.model_validate_json(prediction.model_dump_json())
    assert again == prediction
    assert again.schema_version == s.PREDICTIONS_SCHEMA_VERSION


def test_unknown_domain_is_a_typed_error() -> None:
    with pytest.raises(UnknownDomainError):
        get_domain("sms")


def test_specs_follow_the_contract() -> None:
    assert EMAILS.name == "emails"
    assert EMAILS.label_names == ("ham", "spam")
    assert TRANSACTIONS.name == "transactions"
    assert TRANSACTIONS.label_names == ("legit", "fraud")
    assert get_domain("emails") is EMAILS
    for spec in (EMAILS, TRANSACTIONS):
        assert spec.schema_version >= 1
        assert spec.primary_metric in {"f1", "auprc", "mcc", "roc_auc"}
        assert 0 < spec.floor < 1
