"""Labelled examples built with the domains' schemas, and a producer for the labels topic.

The synthetic emails are drawn from word lists so that a test decides how separable
they are: a spam campaign with its own vocabulary, or labels shuffled at random.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from inferloop.connections import make_producer
from inferloop.settings import Settings

HAM_WORDS = (*tuple(f"ham{i}" for i in range(60)), "meeting", "report", "lunch", "draft")
SPAM_A = (*tuple(f"prize{i}" for i in range(60)), "winner", "free", "cash")
COMMON = ("the", "and", "you", "for", "this", "today", "please", "thanks")
# A newsletter's own words: the body, not only the sender, tells it from spam (the
# emails model reads no header tokens since 4096e50).
NEWS_WORDS = tuple(f"digest{i}" for i in range(30))
ORIGIN = datetime(2024, 5, 1, tzinfo=UTC)


def labelled_email(
    i: int,
    label: str,
    body: str,
    event_time: datetime,
    *,
    sender: str = "ann@corp.example",
    labelled_at: datetime | None = None,
    prefix: str = "m",
) -> dict[str, Any]:
    """A labelled email example (the event, its label, when and by whom)."""
    when = labelled_at or event_time + timedelta(hours=1)
    return {
        "id": f"{prefix}{i}",
        "event_time": event_time.isoformat(),
        "schema_version": 1,
        "sender": sender,
        "recipients": ["bob@corp.example"],
        "subject": f"note {i}",
        "body": body,
        "headers": {"content-type": "text/plain"},
        "label": label,
        "labelled_at": when.isoformat(),
        "label_source": "test",
    }


def emails(
    n: int,
    *,
    start: int = 0,
    spam_words: Sequence[str] = SPAM_A,
    spam_sender: str = "promo@deals.example",
    spam_rate: float = 0.3,
    newsletters: float = 0.0,
    shuffle_labels: bool = False,
    seed: int = 0,
    prefix: str = "m",
) -> list[dict[str, Any]]:
    """``n`` labelled emails, one a minute from ``start`` minutes after the origin.

    Spam draws its words from ``spam_words`` and comes from ``spam_sender``; a share
    ``newsletters`` of the legitimate mail is a newsletter from a new sender written
    mostly in the words of the first spam campaign (what an older model takes for spam)
    with a few of its own (what a newer model learns to let through);
    ``shuffle_labels`` deals the labels out at random, so they say nothing about the
    text.
    """
    rng = np.random.default_rng(seed + start)
    y = rng.random(n) < spam_rate
    letter = ~y & (rng.random(n) < newsletters)
    labels = rng.permutation(y) if shuffle_labels else y
    out = []
    for k in range(n):
        if y[k]:
            drawn, sender = list(rng.choice(spam_words, 12)), spam_sender
        elif letter[k]:
            drawn = [*rng.choice(SPAM_A, 8), *rng.choice(NEWS_WORDS, 4)]
            sender = "news@letters.example"
        else:
            drawn = [*rng.choice(HAM_WORDS, 8), *rng.choice(COMMON, 4)]
            sender = "ann@corp.example"
        body = " ".join(drawn)
        when = ORIGIN + timedelta(minutes=start + k)
        label = "spam" if labels[k] else "ham"
        out.append(labelled_email(start + k, label, body, when, sender=sender, prefix=prefix))
    return out


def produce(
    settings: Settings,
    topic: str,
    examples: Iterable[dict[str, Any]],
    raw: Iterable[bytes] = (),
    timestamp_ms: int | None = None,
) -> int:
    """Send ``examples`` (keyed by id) and ``raw`` values (no key) to ``topic``."""
    producer = make_producer(settings.kafka, acks="all", linger_ms=5)
    count = 0
    try:
        for example in examples:
            producer.send(
                topic,
                key=example["id"].encode(),
                value=json.dumps(example).encode(),
                timestamp_ms=timestamp_ms,
            )
            count += 1
        for value in raw:
            producer.send(topic, key=None, value=value)
            count += 1
        producer.flush(timeout=30)
    finally:
        producer.close()
    return count
