"""One inbound reply read from its raw bytes: who wrote, what they answer, the new text (quoted history and
signature stripped), the whole text and the sanitised HTML, each size-limited.

Reading never raises on garbage: a part that cannot be decoded is read with replacement characters, a header that
cannot be parsed counts as absent. HTML is kept only after nh3 cleaned it (no scripts, styles, event handlers,
images or forms), so nothing a sender wrote can run or load anything in the admin.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from email.utils import parseaddr

import nh3
from mailparser_reply import EmailReplyParser

from campaigns.recipient_urls import REPLY_PREFIX

MAX_RAW = 1024 * 1024              # bytes of a message read at all
MAX_TEXT = 10_000                  # the new text shown in the inbox and forwarded
MAX_ORIGINAL_TEXT = 100_000
MAX_ORIGINAL_HTML = 200_000
MAX_SUBJECT = 998
PROBE_LINES = 200                  # what the quote finder reads (see new_text)
PROBE_WIDTH = 200
# Languages whose reply headers ("On … wrote", "Am … schrieb", "Le … a écrit"…) and signatures are recognised.
LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "ja", "ko", "zh"]

_REPLY_TOKEN_RE = re.compile(REPLY_PREFIX + r"\+([A-Za-z0-9_-]{1,256})@", re.I)
_MSGID_RE = re.compile(r"<([^<>\s]{1,996})>")
_ADDRESS_HEADERS = ("to", "cc", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
# Images would be fetched when an admin opens the reply (a tracking pixel of the sender's); forms and media too.
_HTML_TAGS = set(nh3.ALLOWED_TAGS) - {"img", "picture", "source", "video", "audio", "track", "map", "area"}
_BLOCK_RE = re.compile(r"(?i)<br\s*/?>|</?(?:p|div|li|tr|table|h[1-6]|blockquote|pre|hr)\b[^>]*>")
_TAG_RE = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class InboundReply:
    """What a reply says, read from its bytes."""

    from_name: str
    from_email: str
    subject: str
    message_id: str                                   # with angle brackets, '' when absent
    references: list[str] = field(default_factory=list)   # In-Reply-To and References ids, with brackets
    reply_tokens: list[str] = field(default_factory=list)  # reply+TOKEN@ found in the envelope and address headers
    text: str = ""                                    # new text only
    original_text: str = ""
    original_html: str = ""                           # sanitised
    precedence: str = ""


def storable(text: str) -> str:
    """Text every database stores: no NUL (PostgreSQL refuses it), no lone surrogates (undecodable header bytes)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
        return storable(" ".join(str(value).split())) if value is not None else ""
    except Exception:   # a header the parser cannot make sense of counts as absent
        return ""


def _all_headers(msg: Message, name: str) -> list[str]:
    try:
        return [storable(str(v)) for v in msg.get_all(name) or []]
    except Exception:
        return []


def _decoded(part: Message) -> str:
    try:
        content = part.get_content()
        return content if isinstance(content, str) else ""
    except Exception:   # unknown charset or broken transfer encoding: read what there is
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _bodies(msg: Message) -> tuple[str, str]:
    """The first inline text/plain and text/html parts (attachments and forwarded messages are not read)."""
    plain = rich = ""
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            if part.get_content_type() == "message/rfc822":
                break
            continue
        if (part.get_content_disposition() or "inline") != "inline":
            continue
        if part.get_content_subtype() == "plain" and not plain:
            plain = _decoded(part)
        elif part.get_content_subtype() == "html" and not rich:
            rich = _decoded(part)
    return plain, rich


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body (line breaks kept, tags and entities gone)."""
    cleaned = nh3.clean(markup[:MAX_ORIGINAL_HTML * 2], tags=_HTML_TAGS)
    text = html.unescape(_TAG_RE.sub("", _BLOCK_RE.sub("\n", cleaned)))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.strip() for line in text.splitlines())).strip()


def sanitise_html(markup: str) -> str:
    """HTML safe to show: nh3's allow-list minus anything that loads from elsewhere; '' when nothing is left."""
    cleaned = nh3.clean(markup[:MAX_ORIGINAL_HTML * 2], tags=_HTML_TAGS, link_rel="noopener noreferrer nofollow")
    return cleaned[:MAX_ORIGINAL_HTML] if cleaned.strip() else ""


def new_text(text: str) -> str:
    """The text the person wrote now: quoted history ("On … wrote:", "Am … schrieb", Outlook's From/Sent block,
    "> " lines) and the signature cut off. Falls back to the whole text when stripping leaves nothing.

    The parser's patterns slow down with long lines and many of them (a crafted message of 40 lines of 2,000
    characters took seconds), so it reads a probe: the first PROBE_LINES lines, each cut to PROBE_WIDTH characters.
    Where it cut the probe, the original is cut at the same line; when it cut nothing, nothing is cut.
    """
    text = text.replace("\r\n", "\n").strip()
    if not text:
        return ""
    lines = text.split("\n")
    probe = [line[:PROBE_WIDTH] for line in lines[:PROBE_LINES]]
    try:
        found = EmailReplyParser(languages=LANGUAGES).read("\n".join(probe))
        body = found.replies[0].body.strip() if found.replies else ""
    except Exception:   # the parser must never lose a reply: keep the text as it came
        body = ""
    kept = body.split("\n") if body else []
    if not kept:
        return text[:MAX_TEXT]
    start = next((i for i, line in enumerate(probe) if line.strip() == kept[0].strip()), None)
    end = None if start is None else start + len(kept)
    if end is None or end > len(probe) or probe[end - 1].strip() != kept[-1].strip():
        return body[:MAX_TEXT]     # the parser rewrote lines: its text is the best there is
    if end == len(probe) and len(lines) > len(probe):
        return text[:MAX_TEXT]     # nothing cut within the probe: the quote, if any, is further down
    return "\n".join(lines[start:end]).strip()[:MAX_TEXT]


def reply_tokens(msg: Message, envelope_recipient: str | None) -> list[str]:
    """Tokens of reply+TOKEN@ addresses: the envelope's first (authoritative), then the address headers'."""
    found: list[str] = []
    for source in [envelope_recipient or "", *(v for h in _ADDRESS_HEADERS for v in _all_headers(msg, h))]:
        for token in _REPLY_TOKEN_RE.findall(source):
            if token not in found:
                found.append(token)
    return found[:10]


def read_reply(raw: bytes, envelope_recipient: str | None = None) -> InboundReply:
    """Read one inbound message as a reply (never raises; garbage gives empty fields)."""
    try:
        msg = message_from_bytes(raw[:MAX_RAW], policy=policy.default)
    except Exception:
        msg = message_from_bytes(b"", policy=policy.default)
    name, address = parseaddr(_header(msg, "from"))
    if "@" not in address or len(address) > 320:
        name, address = name, ""
    plain, rich = (storable(body) for body in _bodies(msg))
    original_text = (plain.strip() or html_to_text(rich))[:MAX_ORIGINAL_TEXT]
    ids = [f"<{m}>" for h in ("in-reply-to", "references") for m in _MSGID_RE.findall(_header(msg, h))]
    own_id = _MSGID_RE.search(_header(msg, "message-id"))
    return InboundReply(
        from_name=name.strip()[:200], from_email=address.strip().lower(),
        subject=_header(msg, "subject")[:MAX_SUBJECT], message_id=f"<{own_id.group(1)}>" if own_id else "",
        references=list(dict.fromkeys(ids))[:50], reply_tokens=reply_tokens(msg, envelope_recipient),
        text=new_text(original_text), original_text=original_text,
        original_html=sanitise_html(rich) if rich else "",
        precedence=_header(msg, "precedence").lower(),
    )

