"""Event, labelled-example and prediction schemas, and the reasons an event is rejected.

Every message on a domain topic is JSON. An event carries a stable ``id`` (the Kafka
key), an ``event_time`` with a time zone, a ``schema_version`` and the domain's fields.
A labelled example is the same event plus ``label``, ``labelled_at`` and
``label_source``. Unknown extra fields are accepted, ignored and counted, so an upstream
producer can add a field without sending the stream to the dead-letter topic.

Validation is strict: a string is never taken for a number, a number never for a
string, and every string and list has a size limit, so a 50 MB body is a rejected
event, not an out-of-memory worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# -- reject reasons ------------------------------------------------------------------
# One constant per way a message can be bad; the worker puts it on the dead letter.
NULL_VALUE = "null_value"  # a tombstone: the record has no value at all
OVERSIZE_EVENT = "oversize_event"  # the whole message is larger than any valid event
NOT_UTF8 = "not_utf8"  # the bytes are not valid UTF-8
NOT_JSON = "not_json"  # not parseable as JSON
TOO_DEEP = "too_deep"  # JSON nested deeper than any event can be
LONE_SURROGATE = "lone_surrogate"  # a string with half of a UTF-16 surrogate pair
NOT_OBJECT = "not_object"  # valid JSON, but not an object
MISSING_FIELD = "missing_field"  # a required field is absent
WRONG_TYPE = "wrong_type"  # a field has the wrong JSON type
OVERSIZE_FIELD = "oversize_field"  # a string or list field is over its limit
NOT_FINITE = "not_finite"  # NaN or an infinite number
NAIVE_TIME = "naive_time"  # a time without a time zone
BAD_TIME = "bad_time"  # a string that is not an ISO 8601 time
BAD_VALUE = "bad_value"  # right type, value out of range (empty id, unknown label, ...)
UNSUPPORTED_VERSION = "unsupported_version"  # schema_version newer than this code knows

REJECT_REASONS: tuple[str, ...] = (
    NULL_VALUE,
    OVERSIZE_EVENT,
    NOT_UTF8,
    NOT_JSON,
    TOO_DEEP,
    LONE_SURROGATE,
    NOT_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    OVERSIZE_FIELD,
    NOT_FINITE,
    NAIVE_TIME,
    BAD_TIME,
    BAD_VALUE,
    UNSUPPORTED_VERSION,
)

# -- limits ----------------------------------------------------------------------------
# Kafka's default largest message is about 1 MB; nothing bigger can be a valid event.
MAX_EVENT_BYTES = 1_000_000
# Deeper than this cannot be an event (they are flat objects); the JSON parser refuses
# it anyway, well below the depth at which Python's own parser would recurse too far.
MAX_JSON_DEPTH = 32
MAX_ID_CHARS = 256
MAX_ADDRESS_CHARS = 1_024
MAX_RECIPIENTS = 500
MAX_SUBJECT_CHARS = 4_096
MAX_BODY_CHARS = 200_000
MAX_HEADERS = 64
MAX_HEADER_NAME_CHARS = 128
MAX_HEADER_VALUE_CHARS = 4_096
MAX_LABEL_SOURCE_CHARS = 256

EMAILS_SCHEMA_VERSION = 1
TRANSACTIONS_SCHEMA_VERSION = 1
PREDICTIONS_SCHEMA_VERSION = 1

EventId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
Address = Annotated[str, Field(max_length=MAX_ADDRESS_CHARS)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
OptionalId = Annotated[str | None, Field(default=None, max_length=MAX_ID_CHARS)]
SchemaVersion = Annotated[int, Field(ge=1)]


class _Message(BaseModel):
    # strict: JSON types are taken as they are (no "12" for 12); extra fields are
    # kept aside by pydantic, counted by the validator, then dropped.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Event(_Message):
    """The fields every event has, whatever its domain."""

    id: EventId
    event_time: AwareDatetime
    schema_version: SchemaVersion


class EmailEvent(Event):
    """An email as the mail system hands it over: addresses, subject, text, a few headers.

    ``body`` is a plain-text rendering of the message (HTML reduced to text, attachments
    left out); ``headers`` holds the few headers that carry signal (lower-case names,
    e.g. ``reply-to``, ``x-mailer``, ``content-type``, ``message-id``, ``list-id``).
    """

    sender: Address
    recipients: Annotated[list[Address], Field(max_length=MAX_RECIPIENTS)] = []
    subject: Annotated[str, Field(max_length=MAX_SUBJECT_CHARS)] = ""
    body: Annotated[str, Field(max_length=MAX_BODY_CHARS)]
    headers: Annotated[
        dict[
            Annotated[str, Field(max_length=MAX_HEADER_NAME_CHARS)],
            Annotated[str, Field(max_length=MAX_HEADER_VALUE_CHARS)],
        ],
        Field(max_length=MAX_HEADERS),
    ] = {}


TRANSACTION_FEATURES: tuple[str, ...] = tuple(f"v{i}" for i in range(1, 29))


class TransactionEvent(Event):
    """A card payment as a processor sends it: amount, time, anonymised features, ids.

    ``v1`` .. ``v28`` are the processor's numeric features (in the ULB credit-card data,
    PCA components of the original attributes).
    """

    amount: FiniteFloat
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "EUR"
    card_id: OptionalId = None
    merchant_id: OptionalId = None
    v1: FiniteFloat
    v2: FiniteFloat
    v3: FiniteFloat
    v4: FiniteFloat
    v5: FiniteFloat
    v6: FiniteFloat
    v7: FiniteFloat
    v8: FiniteFloat
    v9: FiniteFloat
    v10: FiniteFloat
    v11: FiniteFloat
    v12: FiniteFloat
    v13: FiniteFloat
    v14: FiniteFloat
    v15: FiniteFloat
    v16: FiniteFloat
    v17: FiniteFloat
    v18: FiniteFloat
    v19: FiniteFloat
    v20: FiniteFloat
    v21: FiniteFloat
    v22: FiniteFloat
    v23: FiniteFloat
    v24: FiniteFloat
    v25: FiniteFloat
    v26: FiniteFloat
    v27: FiniteFloat
    v28: FiniteFloat


LabelSource = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_SOURCE_CHARS)]


class LabelledEmail(EmailEvent):
    """An email with the label that came back for it (a spam report, a "not spam" click)."""

    label: Literal["ham", "spam"]
    labelled_at: AwareDatetime
    label_source: LabelSource = "unknown"


class LabelledTransaction(TransactionEvent):
    """A transaction with the label that came back for it (a chargeback, an analyst)."""

    label: Literal["legit", "fraud"]
    labelled_at: AwareDatetime
    label_source: LabelSource = "unknown"


class ModelRef(BaseModel):
    """The exact model version that made a prediction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int


class Prediction(BaseModel):
    """What a worker publishes for one event (key = ``event_id``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    domain: Literal["emails", "transactions"]
    label: str
    score: float
    threshold: float
    model: ModelRef
    event_time: AwareDatetime
    predicted_at: AwareDatetime
    schema_version: int = PREDICTIONS_SCHEMA_VERSION


# -- batch results ---------------------------------------------------------------------
# What the pipeline takes: one 2-D numpy array per batch (floats for transactions,
# strings for emails), built from events by the domain's to_rows only.
Rows: TypeAlias = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class Reject:
    """One message that is not a valid event: its index in the batch and why."""

    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class ValidatedBatch:
    """The outcome of validating a batch: valid events in input order, and the rest."""

    events: list[Event] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    extra_fields: int = 0


@dataclass(slots=True)
class LabelledBatch:
    """Labelled examples parsed for training, as arrays aligned with ``rows``."""

    ids: list[str]
    event_time_s: np.ndarray[Any, np.dtype[np.float64]]
    labelled_at_s: np.ndarray[Any, np.dtype[np.float64]]
    y: np.ndarray[Any, np.dtype[np.int8]]
    rows: Rows
    rejects: list[Reject] = field(default_factory=list)
    extra_fields: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def epoch_s(moment: datetime) -> float:
    """Seconds since the Unix epoch of an aware datetime."""
    return moment.timestamp()
