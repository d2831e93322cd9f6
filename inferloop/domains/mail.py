"""Raw RFC 822 messages to email events: headers decoded, HTML reduced to text.

Real mail is messy: undeclared or unknown charsets, bytes that are not UTF-8, HTML-only
bodies, broken multipart structure. Everything here degrades to replacement characters
rather than failing, and every string comes out as valid Unicode (no lone surrogates),
so the event it makes always passes the schema.
"""

from __future__ import annotations

import email
import email.utils
import re
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError, MessageError
from email.message import EmailMessage, Message
from html.parser import HTMLParser
from typing import Any

from inferloop.domains import schemas as s

# The few headers that carry signal, as the email schema keeps them (lower case).
SIGNAL_HEADERS: tuple[str, ...] = (
    "reply-to",
    "x-mailer",
    "user-agent",
    "content-type",
    "message-id",
    "list-id",
    "in-reply-to",
    "references",
    "precedence",
    "list-unsubscribe",
    "x-priority",
    "x-msmail-priority",
    "importance",
    "organization",
    "mime-version",
    "content-transfer-encoding",
)
_HEADER_ERRORS = (HeaderParseError, MessageError, ValueError, IndexError, TypeError, AttributeError)
_BLOCK_TAGS = frozenset(
    {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr", "title"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "head"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: bytes smuggled as surrogates are decoded or replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            # The email package keeps undecodable header bytes as surrogate escapes.
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "replace").decode("utf-8")
    return text


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML document, a line per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS and self._skipping:
            self._skipping -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML document; scripts, styles and tags dropped."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except AssertionError:
        # html.parser asserts on some malformed declarations; keep what was read.
        pass
    text = _SPACES.sub(" ", "".join(extractor.parts))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _decode_payload(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        # An unknown or made-up charset name: most such mail is Latin-1 or UTF-8.
        return payload.decode("utf-8", "replace")


def _part_text(part: Message, subtype: str) -> str:
    text = _decode_payload(part)
    if subtype == "html":
        text = html_to_text(text)
    return clean_text(text)


def body_text(message: Message) -> str:
    """The plain-text rendering of a message: text parts in order, HTML reduced to text.

    When a part is offered both as plain text and as HTML (multipart/alternative), the
    plain text is taken. Attachments are left out.
    """
    # Each part's Content-Type parsed once: the email package parses the header again on
    # every get_content_type(), and the sibling check asks it of every container.
    types = {id(part): part.get_content_type() for part in message.walk()}
    texts: list[str] = []
    for part in message.walk():
        maintype, _, subtype = types[id(part)].partition("/")
        if part.is_multipart() or maintype != "text":
            continue
        if part.get_content_disposition() == "attachment":
            continue
        if subtype == "html" and _has_plain_sibling(message, part, types):
            continue
        texts.append(_part_text(part, subtype))
    return "\n".join(t for t in texts if t)[: s.MAX_BODY_CHARS]


def _has_plain_sibling(message: Message, part: Message, types: dict[int, str]) -> bool:
    for container in message.walk():
        if types[id(container)] != "multipart/alternative":
            continue
        children = container.get_payload()
        if isinstance(children, list) and any(c is part for c in children):
            return any(
                isinstance(c, Message)
                and (types[id(c)] if id(c) in types else c.get_content_type()) == "text/plain"
                for c in children
            )
    return False


def header(message: Message, name: str, limit: int = s.MAX_HEADER_VALUE_CHARS) -> str:
    """A header's decoded value ("" when absent or unparseable), cut to ``limit``."""
    try:
        value = message.get(name)
    except _HEADER_ERRORS:
        return ""
    return "" if value is None else clean_text(str(value)).strip()[:limit]


def message_time(message: Message) -> datetime | None:
    """When a message was sent: its Date header, else its newest Received header."""
    candidates = [header(message, "date")]
    try:
        # The newest (first) Received header only: get_all would parse every hop's.
        received = message.get("received")
    except _HEADER_ERRORS:
        received = None
    if received is not None:
        candidates.append(str(received).rpartition(";")[2])
    for candidate in candidates:
        moment = parse_mail_date(candidate)
        if moment is not None:
            return moment
    return None


def parse_mail_date(value: str) -> datetime | None:
    """An RFC 2822 date as an aware datetime (no zone means UTC), or None."""
    if not value.strip():
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def recipients(message: Message) -> list[str]:
    """The addresses in To and Cc, at most as many as the schema allows."""
    values = [header(message, name, limit=100_000) for name in ("to", "cc")]
    try:
        pairs = email.utils.getaddresses([v for v in values if v])
    except _HEADER_ERRORS:
        return []
    addresses = [clean_text(addr)[: s.MAX_ADDRESS_CHARS] for _, addr in pairs if addr]
    return addresses[: s.MAX_RECIPIENTS]


def parse_message(raw: bytes) -> EmailMessage:
    """Parse raw RFC 822 bytes with the modern email policy."""
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def email_fields(message: Message) -> dict[str, Any]:
    """The email schema's fields (all but id, time and version) from a parsed message."""
    headers = {name: header(message, name) for name in SIGNAL_HEADERS}
    return {
        "sender": header(message, "from", limit=s.MAX_ADDRESS_CHARS),
        "recipients": recipients(message),
        "subject": header(message, "subject", limit=s.MAX_SUBJECT_CHARS),
        "body": body_text(message),
        "headers": {name: value for name, value in headers.items() if value},
    }
