"""What the outbox shows of a captured message: keys and their arrival order, the header-only summary
(:class:`OutboxEntry`) and the full message with decoded parts (:class:`OutboxMessage`).

Header values are decoded leniently: captured mail is whatever a client sent, and a listing must never fail on it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from typing import Any

logger = logging.getLogger(__name__)

# A key is "<time_ns>.<pid>.<counter>"; time_ns stays 19 digits until the year 2286. [0-9] rather than \d
# because \d also matches non-ASCII digits, which must never reach a file name.
KEY_RE = re.compile(r"[0-9]{19}\.[0-9]{1,10}\.[0-9]{1,20}")
STAMP_LEN = 19
MSG_SUFFIX = ".eml"

# A whole message file name within "/"-joined directory listings.
NAME_RE = re.compile(r"(?<![^/])(" + KEY_RE.pattern + r")\.eml(?![^/])")
ENV_SUFFIX = ".env.json"

# Header blocks bigger than this are truncated for summaries; real mail never gets near it.
_MAX_HEADER_BYTES = 256 * 1024
_HEADER_CHUNK = 8192
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_LINESEP_RE = re.compile(r"\r\n|\r|\n")

# Summaries only need headers; compat32 never raises on malformed input, decoding happens per header below.
_header_parser = HeaderParser(policy=policy.compat32)
body_parser = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class OutboxEntry:
    """Summary of one captured message, built from its headers only."""

    key: str
    received_at: datetime
    envelope_from: str
    recipients: tuple[str, ...]
    subject: str
    from_: str
    to: str
    size: int
    # "campaign:kind:sender" as Rapport writes it (mailbox providers group complaint statistics by it).
    feedback_id: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class OutboxMessage(OutboxEntry):
    """A captured message with its exact bytes and decoded parts for display."""

    raw: bytes
    headers: list[tuple[str, str]]
    html: str | None
    text: str | None


def sort_key(key: str) -> tuple[int, int, int]:
    """Arrival order of a key; numeric because pid and counter are not zero-padded."""
    ts, pid, n = key.split(".")
    return int(ts), int(pid), int(n)


def arrival_time(key: str) -> datetime:
    """UTC arrival time encoded in the key, to the microsecond."""
    ns = int(key.split(".", 1)[0])
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)


def clean_text(value: str) -> str:
    """Replace lone surrogates (undecodable 8-bit input) so the value is safe to render and log."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decode_header_value(name: str, value: str) -> str:
    """Decode RFC 2047 words and unfold a raw header value for display."""
    try:
        return str(policy.default.header_fetch_parse(name, value))
    except Exception:
        # The modern header parsers still have crash bugs on hostile input; fall back to the legacy decoder.
        pass
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return _LINESEP_RE.sub("", value)


def read_header_block(f: Any) -> bytes:
    """Read a binary file only up to the blank line that ends the header section."""
    buf = b""
    while len(buf) < _MAX_HEADER_BYTES:
        chunk = f.read(_HEADER_CHUNK)
        if not chunk:
            break
        # Restart the search a little before the old end so a CRLFCRLF split across chunks is found.
        start = max(0, len(buf) - 3)
        buf += chunk
        if buf.startswith((b"\r\n", b"\n")):
            return b""
        match = _BLANK_LINE_RE.search(buf, start)
        if match:
            return buf[: match.start()]
    return buf[:_MAX_HEADER_BYTES]


def parse_headers(block: bytes) -> Message:
    """Parse a header block; 8-bit headers are taken as UTF-8 (RFC 6532) since that is what SMTPUTF8 sends."""
    return _header_parser.parsestr(block.decode("utf-8", "replace"), headersonly=True)


def part_text(msg: EmailMessage, subtype: str) -> str | None:
    """Decoded body part of the given text subtype, or None when the message has none."""
    try:
        part = msg.get_body(preferencelist=(subtype,))
    except Exception:
        logger.debug("Cannot locate text/%s body", subtype, exc_info=True)
        return None
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    try:
        content = part.get_content()
    except Exception:
        # Unknown or bogus charset: show the bytes as UTF-8 rather than nothing.
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    # The wire form is CRLF; Python strings and templates expect plain newlines.
    return content.replace("\r\n", "\n")


def header_block_of(raw: bytes) -> bytes:
    """Header section of an in-memory message."""
    if raw.startswith((b"\r\n", b"\n")):
        return b""
    match = _BLANK_LINE_RE.search(raw)
    return raw[: match.start()] if match else raw
