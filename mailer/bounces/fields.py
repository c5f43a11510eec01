"""Bounded readers for the small values found in reports: VERP tokens, addresses, Message-IDs and text snippets.

Every function here takes hostile input: quantifiers are bounded and results are cut to their field's limit, so a
crafted report cannot make a search slow or a stored value huge.
"""

from __future__ import annotations

import html
import re

from mailer.bounces.vocabulary import (
    BOUNCE_PREFIX,
    MAX_ADDRESS,
    MAX_DIAGNOSTIC,
    MAX_MESSAGE_ID,
    MAX_TOKEN,
    UNSUBSCRIBE_PREFIX,
)

TOKEN_PATTERN = rf"[A-Za-z0-9_-]{{1,{MAX_TOKEN}}}"
TOKEN_RE = re.compile(TOKEN_PATTERN)
_DOMAIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?\.?")
_PREFIX_SCAN = {
    prefix: re.compile(
        r"(?<![A-Za-z0-9._%+-])(?i:" + re.escape(prefix) + r")\+(" + TOKEN_PATTERN + r")@[A-Za-z0-9]"
    )
    for prefix in (BOUNCE_PREFIX, UNSUBSCRIBE_PREFIX)
}
_ADDRESS_TYPE_RE = re.compile(r"[ \t]{0,16}[A-Za-z0-9-]{1,32}[ \t]{0,16};")
MSGID_RE = re.compile(rf"<([^<>\s]{{1,{MAX_MESSAGE_ID - 2}}})>")
ADDR_RE = re.compile(
    r"(?<![A-Za-z0-9._%+'-])([A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8})"
)
_HTML_TAG_RE = re.compile(r"<[^<>]*>")

# Where a text bounce starts quoting the returned message; codes and addresses after it are the newsletter's.
_ORIGINAL_MARKER_RE = re.compile(
    r"(?im)^[ \t]{0,16}(?:-{2,20}[ \t]*[^\n]{0,40}?(?:copy of the message|original message"
    r"|(?:message|mail) follows|headers follow|returned message|unsent message)"
    r"|original message headers:?[ \t]*$)"
)


def extract_token(address: str, prefix: str) -> str | None:
    """'bounces+TOKEN@domain' -> 'TOKEN' (prefix='bounces'); None if it doesn't match; prefix ignores case."""
    if not isinstance(address, str) or not isinstance(prefix, str) or not prefix or len(address) > 1024:
        return None
    text = address.strip()
    bracketed = re.search(r"<([^<>]*)>", text)
    if bracketed:
        text = bracketed.group(1).strip()
    local, at, domain = text.rpartition("@")
    if not at or not _DOMAIN_RE.fullmatch(domain):
        return None
    head, plus, token = local.partition("+")
    # The token is opaque base64url and case-sensitive, so only the prefix is compared case-insensitively.
    if not plus or head.casefold() != prefix.casefold() or not TOKEN_RE.fullmatch(token):
        return None
    return token


def html_to_text(markup: str) -> str:
    # Crude on purpose: only phrases, codes and addresses are looked for, never layout.
    return html.unescape(_HTML_TAG_RE.sub(" ", markup))


def first_address_in(text: str) -> str | None:
    match = ADDR_RE.search(text)
    return clean_address(match.group(1)) if match else None


def scan_token(text: str, prefix: str) -> str | None:
    match = _PREFIX_SCAN[prefix].search(text)
    return match.group(1) if match else None


def valid_token(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if TOKEN_RE.fullmatch(value) else None


def strip_address_type(value: str) -> str:
    """'rfc822; user@example.com' -> 'user@example.com'; 'smtp; 550 ...' -> '550 ...'."""
    match = _ADDRESS_TYPE_RE.match(value)
    return value[match.end():].strip() if match else value.strip()


def clean_address(value: str | None) -> str | None:
    """A single bare addr-spec from a DSN/ARF field or header value, or None if it does not look like one."""
    if not value:
        return None
    text = strip_address_type(clean_text(value)[: MAX_ADDRESS * 4])
    bracketed = re.search(r"<([^<>]*)>", text)
    if bracketed:
        text = bracketed.group(1).strip()
    words = text.split()
    if not words:
        return None
    text = words[0].strip("<>")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or "@" in local or len(text) > MAX_ADDRESS:
        return None
    return text


def clean_message_id(value: str | None) -> str | None:
    """Message-ID with its angle brackets, as Rapport generated it; bare ids get brackets added."""
    if not value:
        return None
    match = MSGID_RE.search(value)
    if match:
        return f"<{match.group(1)}>"
    bare = value.strip()
    clean = not any(c.isspace() or c in "<>" for c in bare)
    if bare and clean and "@" in bare and len(bare) <= MAX_MESSAGE_ID - 2:
        return f"<{bare}>"
    return None


def before_original(text: str) -> str:
    marker = _ORIGINAL_MARKER_RE.search(text)
    return text[: marker.start()] if marker else text


def text_around(text: str, start: int, end: int, margin: int = 300) -> str:
    return text[max(0, start - margin): end + margin]


def line_at(text: str, match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return squash(text[start: end if end != -1 else len(text)])


def clean_text(text: str) -> str:
    # compat32 keeps undecodable bytes as lone surrogates; they must not leak into results or logs.
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def squash(text: str) -> str:
    text = "".join(c if c.isprintable() or c.isspace() else " " for c in text[: MAX_DIAGNOSTIC * 8])
    return " ".join(text.split())[:MAX_DIAGNOSTIC]


def cut_to(value: str | None, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return clean_text(value)[:limit]
