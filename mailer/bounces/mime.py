"""MIME walking for inbound reports: a bounded parse budget, the parts that matter found in one walk, decoded text and
header values.

Only the head of a message is parsed (:data:`~mailer.bounces.vocabulary.MAX_PARSE_BYTES`) and only
:data:`~mailer.bounces.vocabulary.MAX_TEXT_BYTES` of text is decoded, so a huge attachment costs nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import Parser
from email.policy import compat32
from email.utils import collapse_rfc2231_value, getaddresses

from mailer.bounces.fields import clean_address, clean_text, html_to_text
from mailer.bounces.vocabulary import MAX_DEPTH, MAX_PARSE_BYTES, MAX_PARTS, MAX_STRUCTURE_LINES, MAX_TEXT_BYTES

logger = logging.getLogger(__name__)
_FIELD_NAME_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
_BLANK_RUN_RE = re.compile(rb"\n{3,}")
_STRUCTURE_LINE_RE = re.compile(rb"\n(?:\n|--)")
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_FEEDBACK_TYPES = frozenset({"message/feedback-report"})
_MDN_TYPES = frozenset({"message/disposition-notification", "message/global-disposition-notification"})
_ORIGINAL_TYPES = frozenset({
    "message/rfc822", "message/global", "message/rfc822-headers", "message/global-headers",
    "text/rfc822-headers",
})


@dataclass
class Parts:
    """The parts of a message that matter, found in one bounded walk."""

    status: Message | None = None
    feedback: Message | None = None
    mdn: bool = False
    original: Message | None = None
    notice: str = ""


def collect_parts(msg: Message) -> Parts:
    """Walk at most MAX_PARTS parts, MAX_DEPTH deep, without descending into the returned original."""
    found = Parts()
    plain: list[str] = []
    markup: list[str] = []
    budget = MAX_TEXT_BYTES
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        ctype = _content_type(part)
        # `is None` rather than `or`: a Message with no headers is falsy.
        if ctype in _STATUS_TYPES:
            if found.status is None:
                found.status = part
            continue
        if ctype in _FEEDBACK_TYPES:
            if found.feedback is None:
                found.feedback = part
            continue
        if ctype in _MDN_TYPES:
            found.mdn = True
            continue
        if depth > 0 and ctype in _ORIGINAL_TYPES:
            # The original's own text is the newsletter, not the notice; only its headers are useful.
            if found.original is None:
                found.original = _original_headers(part)
            continue
        payload = _payload(part)
        if isinstance(payload, list):
            if depth < MAX_DEPTH:
                stack.extend((child, depth + 1) for child in reversed(payload) if isinstance(child, Message))
            continue
        # Attached text is usually the original in disguise (text/plain "message.txt"), not the notice.
        if budget <= 0 or _is_attachment(part):
            continue
        if ctype == "text/plain":
            text = _decoded_text(part, budget)
            plain.append(text)
            budget -= len(text)
        elif ctype == "text/html":
            text = html_to_text(_decoded_text(part, budget))
            markup.append(text)
            budget -= len(text)
    # Plain text is what MTAs mean to be read; HTML only when there is nothing else (some Exchange NDRs).
    found.notice = "\n".join(plain or markup)
    return found


def _original_headers(part: Message) -> Message | None:
    """Headers of a returned original, whether attached whole (message/rfc822) or as text/rfc822-headers."""
    payload = _payload(part)
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    text = _decoded_text(part, MAX_TEXT_BYTES).lstrip("\r\n")
    if not text.strip():
        return None
    return Parser(policy=compat32).parsestr(text, headersonly=True)


def report_text(part: Message) -> str:
    """Flatten a delivery-status or feedback-report part back into 'Name: value' lines and blank lines."""
    payload = _payload(part)
    if not isinstance(payload, list):
        return _decoded_text(part, MAX_TEXT_BYTES)
    # The stdlib parses each block of a delivery-status part (and a feedback-report) into a headers-only
    # message.
    chunks: list[str] = []
    size = 0
    for block in payload[:MAX_PARTS]:
        if not isinstance(block, Message):
            continue
        lines = [f"{name}: {_header_text(value)}" for name, value in block.items()]
        body = _payload(block)
        if isinstance(body, str):
            lines.append(body)
        chunk = "\n".join(lines)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_TEXT_BYTES:
            break
    return "\n\n".join(chunks)[:MAX_TEXT_BYTES]


def parse_fields(text: str) -> list[dict[str, str]]:
    """Parse 'Name: value' blocks separated by blank lines; continuation lines fold in, first name wins."""
    blocks: list[dict[str, str]] = []
    current: dict[str, list[str]] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append({k: " ".join(v) for k, v in current.items()})
                current, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:
                current[last].append(line.strip())
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if colon and name not in current and _FIELD_NAME_RE.fullmatch(name):
            current[name] = [value.strip()]
            last = name
        else:
            last = None
    if current:
        blocks.append({k: " ".join(v) for k, v in current.items()})
    return blocks


def as_bytes(raw: object) -> bytes | None:
    """Accept bytes-like input (and str, leniently); anything else has nothing to classify."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, bytearray | memoryview):
        return bytes(raw[:MAX_PARSE_BYTES])
    if isinstance(raw, str):
        return raw[:MAX_PARSE_BYTES].encode("utf-8", "surrogatepass")
    return None


def parse_budget(data: bytes) -> bytes:
    """Cut input down to what the stdlib parser can handle quickly whatever its shape."""
    if len(data) > MAX_PARSE_BYTES:
        logger.debug("inbound message of %d bytes cut to %d before parsing", len(data), MAX_PARSE_BYTES)
        data = data[:MAX_PARSE_BYTES]
    # The parser takes a lone CR as a line break too; one convention makes the line counts below hold.
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    # Runs of blank lines mean nothing to classification, but inside message/delivery-status each one opens
    # a new block object.
    data = _BLANK_RUN_RE.sub(b"\n\n", data)
    for count, match in enumerate(_STRUCTURE_LINE_RE.finditer(data)):
        if count >= MAX_STRUCTURE_LINES:
            return data[: match.start() + 1]
    return data


def _payload(part: Message) -> object:
    try:
        return part.get_payload()
    except Exception:
        return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:
        return None
    if value is None:
        return None
    return str(collapse_rfc2231_value(value)).strip().lower()


def _is_attachment(part: Message) -> bool:
    try:
        return (part.get_content_disposition() or "") == "attachment"
    except Exception:
        return False


def _decoded_text(part: Message, limit: int) -> str:
    """Transfer-decode and charset-decode a leaf part, at most limit bytes, never raising on bad charsets."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        return ""
    data = data[: max(limit, 0)]
    try:
        charset = part.get_content_charset() or "utf-8"
        text = data.decode(charset, errors="replace")
    except Exception:  # unknown or non-text codec named by the sender
        text = data.decode("utf-8", errors="replace")
    return clean_text(text.replace("\r\n", "\n").replace("\r", "\n"))


def _header_text(value: object) -> str:
    """A header value (str or email.header.Header) as unicode, with RFC 2047 encoded words decoded."""
    text = str(value)
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except Exception:  # broken encoded-words are common in the wild; the raw text is still useful
            pass
    return clean_text(text)


def header_values(msg: Message, names: Iterable[str]) -> list[str]:
    values: list[str] = []
    for name in names:
        try:
            found = msg.get_all(name) or []
        except Exception:
            found = []
        values.extend(_header_text(v) for v in found[:20])
    return values


def first_header(msg: Message, name: str) -> str | None:
    values = header_values(msg, (name,))
    return values[0] if values else None


def header_addresses(msg: Message, names: Iterable[str]) -> list[str]:
    values = header_values(msg, names)
    try:
        pairs = getaddresses(values)
    except Exception:
        return []
    return [a for a in (clean_address(addr) for _, addr in pairs) if a]


def first_address(msg: Message, names: Iterable[str]) -> str | None:
    found = header_addresses(msg, names)
    return found[0] if found else None
