"""Raw RFC 822 messages become clean email events, however messy the mail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from inferloop.domains import get_domain
from inferloop.domains import schemas as s
from inferloop.domains.mail import email_fields, html_to_text, message_time, parse_message


def event_from(raw: bytes) -> s.EmailEvent:
    message = parse_message(raw)
    moment = message_time(message)
    assert moment is not None
    event = s.EmailEvent(id="m", event_time=moment, schema_version=1, **email_fields(message))
    # What the loader makes must pass the worker's validation unchanged.
    batch = get_domain("emails").validate_batch([event.model_dump_json().encode()])
    assert batch.rejects == []
    return event


def test_plain_message_with_headers() -> None:
    event = event_from(
        b"From: Ann <ann@example.org>\r\nTo: bob@example.com, Cy <cy@example.net>\r\n"
        b"Cc: dee@example.com\r\nSubject: Lunch\r\nDate: Tue, 3 Sep 2002 10:00:00 +0200\r\n"
        b"X-Mailer: Mutt 1.4\r\nX-Spam-Status: No\r\n\r\nNoon at the usual place?\r\n"
    )
    assert event.sender == "Ann <ann@example.org>"
    assert event.recipients == ["bob@example.com", "cy@example.net", "dee@example.com"]
    assert event.subject == "Lunch"
    assert event.body.strip() == "Noon at the usual place?"
    assert event.event_time == datetime(2002, 9, 3, 10, tzinfo=timezone(timedelta(hours=2)))
    assert event.headers == {"x-mailer": "Mutt 1.4"}  # spam-filter verdicts are not kept


def test_html_only_body_is_reduced_to_text() -> None:
    event = event_from(
        b"From: x@spam.biz\r\nDate: Mon, 1 Jul 2002 00:00:00 -0000\r\n"
        b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
        b"<html><head><style>p {color: red}</style></head><body><p>Cheap&nbsp;pills</p>"
        b"<script>alert(1)</script><a href='http://x'>Click here</a></body></html>"
    )
    assert "Cheap\xa0pills" in event.body
    assert "Click here" in event.body
    assert "color" not in event.body
    assert "alert" not in event.body
    assert event.event_time.tzinfo == UTC  # "-0000": no zone known, taken as UTC


def test_alternative_prefers_plain_text() -> None:
    event = event_from(
        b"From: a@b.c\r\nDate: Mon, 1 Jul 2002 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain\r\n\r\nplain version\r\n"
        b"--XX\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n--XX--\r\n"
    )
    assert "plain version" in event.body
    assert "html version" not in event.body


def test_bad_bytes_and_unknown_charsets_degrade_to_replacement_characters() -> None:
    event = event_from(
        b"From: \xe9l\xe8ve <e@x.fr>\r\nSubject: caf\xe9\r\n"
        b"Date: Mon, 1 Jul 2002 00:00:00 +0000\r\n"
        b"Content-Type: text/plain; charset=x-made-up\r\n\r\nna\xefve \xff body\r\n"
    )
    assert "\ufffd" in event.body
    assert event.body.startswith("na")
    for text in (event.sender, event.subject, event.body):
        text.encode("utf-8")  # no lone surrogates left


def test_declared_charset_is_used() -> None:
    event = event_from(
        b"From: a@b.c\r\nDate: Mon, 1 Jul 2002 00:00:00 +0000\r\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nGr\xfc\xdfe aus K\xf6ln\r\n"
    )
    assert event.subject == "Grüße"
    assert "Grüße aus Köln" in event.body


def test_missing_date_falls_back_to_received() -> None:
    message = parse_message(
        b"Received: from a by b; Wed, 2 Jan 2002 10:55:03 -0800\r\nFrom: a@b.c\r\n\r\nhi\r\n"
    )
    assert message_time(message) == datetime(
        2002, 1, 2, 10, 55, 3, tzinfo=timezone(timedelta(hours=-8))
    )
    assert message_time(parse_message(b"From: a@b.c\r\n\r\nno date at all\r\n")) is None
    # The newest hop (the first Received header) is the one taken.
    hops = parse_message(
        b"Received: from c by d; Thu, 3 Jan 2002 08:00:00 +0000\r\n"
        b"Received: from a by b; Wed, 2 Jan 2002 10:55:03 -0800\r\n\r\nhi\r\n"
    )
    assert message_time(hops) == datetime(2002, 1, 3, 8, tzinfo=UTC)


def test_html_to_text_survives_broken_markup() -> None:
    text = html_to_text("<p>one<p>two</b></i><!bad>&amp; three</p>")
    assert text.split() == ["one", "two&", "three"]
