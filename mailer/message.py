"""Build RFC 5322 message bytes fast: constant headers once per campaign, only what differs per recipient.

Bodies are quoted-printable, or base64 when that is shorter (mostly non-Latin text), encoded by the C routines in
binascii; every line ends in CRLF and stays far below the 998-octet limit.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import functools
import hashlib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

import idna

Headers = list[tuple[str, str]]
CRLF = b"\r\n"


def _is_ascii(value: str) -> bool:
    return value.isascii()


def fold_ascii(name: str, value: str, limit: int = 78) -> str:
    """Fold an ASCII header value at spaces (after commas first) so lines stay under limit."""
    if len(name) + 2 + len(value) <= limit:
        return value
    words = value.split(" ")
    lines: list[str] = []
    current = ""
    first_room = limit - len(name) - 2
    for word in words:
        room = first_room if not lines else limit - 1
        candidate = f"{current} {word}" if current else word
        if len(candidate) > room and current:
            lines.append(current)
            current = word
        else:
            current = candidate
    lines.append(current)
    return "\r\n ".join(lines)


def encoded_words(text: str, first_room: int = 75) -> str:
    """RFC 2047 base64 encoded-words for text, each at most 75 characters, never splitting a character.

    first_room: characters left on the first line after the header name, so that line stays within 78 too.
    """
    words = []
    piece: list[str] = []
    size = 0
    # Each 3 bytes become 4 base64 characters; 12 characters go to "=?utf-8?b?" and "?=".
    limit = max(3, min(_WORD_BYTES, (first_room - 12) // 4 * 3))
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > limit and piece:
            words.append(piece)
            piece, size, limit = [], 0, _WORD_BYTES
        piece.append(ch)
        size += n
    words.append(piece)
    return "\r\n ".join("=?utf-8?b?" + base64.b64encode("".join(p).encode("utf-8")).decode("ascii") + "?="
                         for p in words)


_WORD_BYTES = 45    # 45 bytes -> 60 base64 chars + 12 for "=?utf-8?b?" and "?=" = 72 <= 75


def encode_header(name: str, value: str) -> str:
    """Header value ready for the wire: RFC 2047 encoded when not ASCII, folded when long."""
    value = " ".join(value.replace("\r", " ").replace("\n", " ").split()) if "\n" in value or "\r" in value else value
    if _is_ascii(value):
        return fold_ascii(name, value)
    return encoded_words(value, first_room=78 - len(name) - 2)


def ascii_domain(address: str) -> str:
    """The address with an internationalized domain written as IDNA A-labels (RFC 5891: bücher.example ->
    xn--bcher-kva.example), so that it travels on any relay; the local part as it is (a non-ASCII local part needs
    SMTPUTF8, RFC 6531). Unchanged when ASCII or when the domain is no valid IDN."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except (idna.IDNAError, UnicodeError):
        return address


def format_address(name: str, address: str) -> str:
    """'Name <addr>' with the name quoted or RFC 2047 encoded as needed; bare address when no name.

    An internationalized domain becomes A-labels; a non-ASCII local part stays UTF-8 (an RFC 6532 header, sent
    with SMTPUTF8): encoding it as RFC 2047 words would make it no address at all.
    """
    address = ascii_domain(address)
    name = " ".join(name.split())
    if not name:
        return address
    if not name.isascii():
        return f"{encoded_words(name)} <{address}>"
    if address.isascii():
        return email.utils.formataddr((name, address))
    quoted = email.utils.formataddr((name, "x@y"))    # formataddr refuses a UTF-8 address; it quotes the name
    return f"{quoted[:-len('<x@y>')]}<{address}>"


def address_header(field: str, name: str, address: str) -> str:
    """A To-style header value for one mailbox, ready for the wire (folded; RFC 2047 name, address as above)."""
    return mailbox_header(field, format_address(name, address))


def mailbox_header(field: str, value: str) -> str:
    """format_address's value folded for the wire; a UTF-8 address is kept whole (never RFC 2047 encoded)."""
    if value.isascii():
        return fold_ascii(field, value)
    head, _, addr = value.rpartition(" <")    # only the address is not ASCII: fold before it when long
    if not head or len(field) + 2 + len(value) <= 78:
        return value
    return f"{fold_ascii(field, head)}\r\n <{addr}"


def encode_part(content: str, subtype: str) -> bytes:
    """A MIME part (headers + body) for text/<subtype> in UTF-8, QP or base64, whichever is shorter."""
    data = content.replace("\r\n", "\n").encode("utf-8", "replace")
    qp = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    # base64 lines are 76 chars + CRLF: 78 bytes per 57 input bytes.
    b64_len = (len(data) + 56) // 57 * 78
    if len(qp) + qp.count(b"\n") <= b64_len:
        if not qp.endswith(b"\n"):
            qp += b"\n"
        body = qp.replace(b"\n", CRLF)
        cte = b"quoted-printable"
    else:
        body = base64.encodebytes(data).replace(b"\n", CRLF)
        cte = b"base64"
    return (
        b"Content-Type: text/" + subtype.encode() + b"; charset=\"utf-8\"\r\n"
        b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body
    )


def qp_part(encoded: str, subtype: str) -> bytes:
    """A MIME part around an already quoted-printable body (see mailer.qp)."""
    return (
        b"Content-Type: text/" + subtype.encode() + b"; charset=\"utf-8\"\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded.encode("ascii")
    )


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message: its name as the recipient sees it, its MIME type and its bytes."""

    filename: str
    content_type: str
    data: bytes


def _param(name: str, value: str) -> str:
    """A MIME parameter: quoted when ASCII, RFC 2231 (utf-8'') otherwise; line breaks never pass."""
    value = " ".join(value.split())
    if value.isascii():
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{name}="{quoted}"'
    return f"{name}*=utf-8''{urllib.parse.quote(value, safe='')}"


def attachment_part(item: Attachment) -> bytes:
    """A base64 MIME part (headers + body) with Content-Disposition: attachment."""
    body = base64.encodebytes(item.data).replace(b"\n", CRLF)
    return (f"Content-Type: {item.content_type};\r\n {_param('name', item.filename)}\r\n"
            f"Content-Disposition: attachment;\r\n {_param('filename', item.filename)}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii") + body


@dataclass(frozen=True)
class MessageTemplate:
    """Header fragments shared by all messages of a campaign."""

    from_header: str
    reply_to: str = ""
    feedback_id: str = ""          # e.g. "42:nurture:rapport" — lets mailbox providers group complaint stats
    list_id: str = ""
    extra: Headers = field(default_factory=list)

    @classmethod
    def create(cls, *, from_name: str, from_email: str, reply_to: str = "", feedback_id: str = "",
               list_id: str = "", extra: Sequence[tuple[str, str]] = ()) -> MessageTemplate:
        """Encode the constant headers once."""
        return cls(
            from_header=encode_header("From", format_address(from_name, from_email)),
            reply_to=encode_header("Reply-To", reply_to) if reply_to else "",
            feedback_id=feedback_id,
            list_id=encode_header("List-Id", list_id) if list_id else "",
            extra=[(k, encode_header(k, v)) for k, v in extra],
        )

    def build(self, *, to_name: str, to_email: str, subject: str, message_id: str, date: str,
              html: str = "", text: str = "", parts: tuple[bytes, bytes] | None = None,
              list_unsubscribe: Sequence[str] = (), one_click: bool = True,
              extra: Sequence[tuple[str, str]] = (), reply_to: str = "",
              attachments: Sequence[Attachment] = ()) -> tuple[Headers, bytes]:
        """Headers (wire-ready values) and the multipart/alternative body for one recipient.

        parts: already encoded (text/plain, text/html) MIME parts; otherwise html and text are encoded here.
        reply_to: this recipient's own Reply-To (a per-recipient reply address, or the customer an answer goes
        to), as format_address wrote it, instead of the template's.
        attachments: the body becomes multipart/mixed, the alternative part first, then one part per file.
        """
        boundary = "=_r" + hashlib.blake2s(message_id.encode(), digest_size=12).hexdigest()
        headers: Headers = [
            ("From", self.from_header),
            ("To", address_header("To", to_name, to_email)),
            ("Subject", encode_header("Subject", subject)),
            ("Date", date),
            ("Message-ID", message_id),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'),
        ]
        if reply_to or self.reply_to:
            headers.append(("Reply-To", mailbox_header("Reply-To", reply_to) if reply_to else self.reply_to))
        if list_unsubscribe:
            value = ", ".join(f"<{u}>" for u in list_unsubscribe)
            headers.append(("List-Unsubscribe", fold_ascii("List-Unsubscribe", value)))
            if one_click:
                headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        if self.list_id:
            headers.append(("List-Id", self.list_id))
        if self.feedback_id:
            headers.append(("Feedback-ID", self.feedback_id))
        headers.extend(self.extra)
        headers.extend((k, encode_header(k, v)) for k, v in extra)
        b = boundary.encode()
        text_part, html_part = parts if parts is not None else (encode_part(text, "plain"), encode_part(html, "html"))
        body = b"".join((
            b"--", b, CRLF, text_part,
            b"--", b, CRLF, html_part,
            b"--", b, b"--", CRLF,
        ))
        if attachments:
            outer = "=_m" + boundary[3:]
            headers[6] = ("Content-Type", f'multipart/mixed;\r\n boundary="{outer}"')
            o = outer.encode()
            inner = f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode()
            body = b"".join((b"--", o, CRLF, inner, body,
                             *(b"".join((b"--", o, CRLF, attachment_part(a))) for a in attachments),
                             b"--", o, b"--", CRLF))
        return headers, body


def serialize(headers: Headers, body: bytes, prefix: bytes = b"") -> bytes:
    """Wire bytes: optional prefix (e.g. DKIM-Signature lines), headers, blank line, body."""
    # UTF-8: only a non-ASCII address (RFC 6532, sent with SMTPUTF8) is not ASCII; everything else is encoded.
    head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8")
    return prefix + head + CRLF + body


def format_date(timestamp: float) -> str:
    """RFC 5322 date in UTC with a numeric zone ("+0000"; "GMT" is obsolete syntax, RFC 5322 4.3)."""
    return _format_second(int(timestamp))      # whole seconds: the format has no finer part


@functools.lru_cache(maxsize=4)
def _format_second(second: int) -> str:
    # Every message of a second carries the same Date: made once, not per message on the send path.
    return email.utils.format_datetime(datetime.datetime.fromtimestamp(second, datetime.UTC))
