"""Quoted-printable templates: encode a template's static text once, only interpolated values per recipient.

binascii.b2a_qp costs ~8 µs per KB, i.e. about half a millisecond for a 60 KB newsletter — more than rendering it.
A template is split into static text and Jinja tags; each static segment is encoded once at compile time and
ends in a soft line break, and each `{{ expr }}` becomes `{{ (expr)|qp }}`, which encodes just that value, also
ending in a soft line break. Soft breaks vanish when decoding, so the decoded part is byte-for-byte what the plain
template renders, and no encoded line can exceed 76 characters whatever a value contains.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from markupsafe import Markup, escape

WIDTH = 75            # encoded characters per line before the soft-break "="; RFC 2045 allows 76 in all
SOFT = "=\r\n"
# Printable ASCII except "=" passes through; spaces and tabs are handled by position (see _encode_line).
_NEEDS_ESCAPE = re.compile(rb"[^\x20-\x3c\x3e-\x7e\t]")
_TAG = re.compile(r"(\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\})", re.DOTALL)
_LINK = re.compile(r"_links\[(\d+)\]")


def _escape_byte(match: re.Match[bytes]) -> bytes:
    return b"=%02X" % match.group()[0]


def _wrap(line: bytes, width: int) -> list[bytes]:
    """Cut an encoded line into pieces of at most width characters without splitting an =XX escape."""
    pieces = []
    while len(line) > width:
        cut = width
        # Never cut inside "=XX": back up to before the escape.
        eq = line.rfind(b"=", cut - 2, cut)
        if eq != -1:
            cut = eq
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def _encode_line(line: bytes, hard_break_follows: bool, width: int) -> bytes:
    enc = _NEEDS_ESCAPE.sub(_escape_byte, line)
    if hard_break_follows and enc[-1:] in (b" ", b"\t"):
        # Whitespace before a hard line break would be stripped in transit: encode it.
        enc = enc[:-1] + (b"=20" if enc[-1:] == b" " else b"=09")
    return b"=\r\n".join(_wrap(enc, width))


def encode(data: bytes, width: int = WIDTH) -> str:
    """QP text for data (LF or CRLF line ends) that ends in a soft break, so anything may follow it."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    out = [_encode_line(line, i < len(lines) - 1, width) for i, line in enumerate(lines)]
    return (b"\r\n".join(out).decode("ascii")) + SOFT


def _encode_text(text: str) -> Markup:
    # Fast path: short plain ASCII (names, most URLs) needs no escaping at all.
    if len(text) <= WIDTH and text.isascii() and "=" not in text and text.isprintable() and \
            not text.endswith((" ", "\t")):
        return Markup(text + SOFT)
    return Markup(encode(text.encode("utf-8", "replace")))


# Values repeat across recipients and within a message (cities, first names, the postal address).
_encode_cached = lru_cache(maxsize=8192)(_encode_text)


def value_encoder(html: bool, *, cache: bool = True,
                  shown: Callable[[object], object] | None = None) -> Callable[[object], Markup]:
    """The per-recipient `qp` filter: (HTML-escape and) encode one interpolated value.

    cache=False for values that never repeat (tracked link URLs carry a per-recipient token). shown, if given,
    vets values that are not text first (it may raise, e.g. for a function, instead of encoding its repr).
    """
    encode_text = _encode_cached if cache else _encode_text

    def qp(value: object) -> Markup:
        if value is None:
            return Markup(SOFT)
        if shown is not None and value.__class__ is not str and not isinstance(value, Markup):
            value = shown(value)
        if isinstance(value, Markup) or not html:
            return encode_text(str(value))
        return encode_text(str(escape(value)))

    return qp


class Unsupported(ValueError):
    """The template uses a construct the QP compiler does not handle; the caller encodes per message instead."""


def compile_source(source: str) -> str:
    """Turn a Jinja template source into one that renders its own quoted-printable encoding (see module doc)."""
    if "{% raw" in source or "{%- raw" in source:
        raise Unsupported("{% raw %} blocks")
    # Jinja reads \r\n, \r and \n in template text all as a newline; so must the static segments.
    parts = _TAG.split(source.replace("\r\n", "\n").replace("\r", "\n"))
    # Apply Jinja's whitespace control ({{- / -}}) to the static text now, since soft breaks are added next to it.
    for i in range(1, len(parts), 2):
        tag = parts[i]
        if tag[2] == "-":
            parts[i - 1] = parts[i - 1].rstrip()
            tag = tag[:2] + tag[3:]
        if tag[-3] == "-":
            parts[i + 1] = parts[i + 1].lstrip()
            tag = tag[:-3] + tag[-2:]
        parts[i] = tag
    out: list[str] = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if part:
                out.append(encode(part.encode("utf-8")))
        elif part.startswith("{{"):
            expr = part[2:-2].strip()
            link = _LINK.fullmatch(expr)
            # Tracked links come pre-encoded from _qlinks (a subscript, far cheaper than a sandboxed call).
            out.append("{{ _qlinks[" + link.group(1) + "] }}" if link else "{{ (" + expr + ")|qp }}")
        else:
            out.append(part)
    # End with a hard line break so the part closes cleanly before the MIME boundary.
    out.append("\r\n")
    return "".join(out)


def non_ascii_share(source: str) -> float:
    """Share of non-ASCII characters in the static text: above ~1/6, base64 is shorter than QP."""
    static = "".join(_TAG.split(source)[0::2])
    if not static:
        return 0.0
    return sum(1 for ch in static if ord(ch) > 127) / len(static)
