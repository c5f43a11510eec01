"""Recipient tokens and link rewriting.

A token names what a recipient URL is for (its *purpose*) and the ids it acts on. Ids are packed as varints and
sealed with AES-SIV (deterministic authenticated encryption, RFC 5297) with the purpose as associated data, so a
token is short, reveals no sequential id, cannot be forged or altered, and cannot be replayed for another purpose.
Determinism is deliberate: the same send always gets the same Message-ID and the same links.
The first byte is a key id, so keys can rotate: new tokens use the current key, old ones still verify.
A token is unpadded URL-safe base64 and opens only in exactly the spelling seal() made (docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from enum import IntEnum
from html import unescape

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 120   # longer input is rejected before any decoding work


class Purpose(IntEnum):
    """What a token may be used for; each purpose fixes how many ids it carries."""

    OPEN = 1          # (send_id,)
    CLICK = 2         # (send_id, link_id)
    UNSUBSCRIBE = 3   # (contact_id, campaign_id)   campaign_id 0: not from a campaign
    PREFERENCES = 4   # (contact_id,)
    MESSAGE = 5       # (send_id,)  Message-ID, VERP return path, X-Rapport-ID
    CONFIRM = 6       # (contact_id, issued_day)  double opt-in
    SURVEY = 7        # (send_id, question, answer)
    WEB = 8           # (send_id,)  the web version of a message (digest "Read it"); not MESSAGE, which headers carry
    REPLY = 9         # (send_id,)  the per-recipient reply address reply+TOKEN@reply domain (campaigns.replies)
    TX_MESSAGE = 10   # (tx_message_id,)  MESSAGE for a transactional message, which has no send row
    DRAW = 11         # (draw_id, contact_id, via)  entry to a prize draw (confirmed by POST); via 0 a mail, 1 the page
    EVENT = 12        # (send_id, answer)  an event invitation's reply page (answer 0: none clicked; campaigns.events)
    TX_OPEN = 13      # (tx_message_id,)  OPEN of a transactional message
    TX_CLICK = 14     # (tx_message_id, link_id)  CLICK of a transactional message


ARITY = {
    Purpose.OPEN: 1, Purpose.CLICK: 2, Purpose.UNSUBSCRIBE: 2, Purpose.PREFERENCES: 1,
    Purpose.MESSAGE: 1, Purpose.CONFIRM: 2, Purpose.SURVEY: 3, Purpose.WEB: 1, Purpose.REPLY: 1,
    Purpose.TX_MESSAGE: 1, Purpose.DRAW: 3, Purpose.TX_OPEN: 1, Purpose.TX_CLICK: 2,
    Purpose.EVENT: 2,
}


# Associated data per purpose (a token opens only for the purpose it was sealed for), and base64's URL-safe alphabet.
_ASSOCIATED = {purpose: [bytes((purpose,))] for purpose in Purpose}
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class InvalidToken(ValueError):
    """The token is malformed, forged, altered, made for another purpose, or signed with an unknown key."""


def _derive(secret: str) -> tuple[int, AESSIV]:
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"rapport-token-v1", info=b"recipient-url").derive(
        secret.encode()
    )
    kid = hashlib.sha256(key).digest()[0]
    return kid, AESSIV(key)


def _encode_varints(values: Sequence[int]) -> bytes:
    # A message seals ~18 tokens, nearly all for the same send id: each id's encoding is made once and reused.
    if len(values) == 1:
        return _varint(values[0])
    return b"".join([_varint(value) for value in values])


@functools.lru_cache(maxsize=4096)
def _varint(value: int) -> bytes:
    """LEB128: seven bits a byte, low bits first, the high bit set on every byte but the last."""
    if value < 0:
        raise ValueError("token ids must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode_varints(data: bytes, count: int) -> tuple[int, ...]:
    values: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise InvalidToken("id too large")
        else:
            values.append(value)
            value = shift = 0
    if shift or len(values) != count:
        raise InvalidToken("wrong number of ids")
    return tuple(values)


class TokenCodec:
    """Seals and opens recipient tokens with a current key and any number of retired keys."""

    def __init__(self, secret: str, old_secrets: Sequence[str] = ()) -> None:
        if not secret:
            raise ValueError("a secret key is required for recipient tokens")
        self._current = _derive(secret)
        self._kid_byte = bytes((self._current[0],))
        self._encrypt = self._current[1].encrypt
        self._by_kid: dict[int, list[AESSIV]] = {}
        for kid, cipher in [self._current, *(_derive(s) for s in old_secrets)]:
            self._by_kid.setdefault(kid, []).append(cipher)

    def seal(self, purpose: Purpose, *ids: int) -> str:
        """Return a URL-safe token for purpose and ids."""
        # A message seals one token per link and recipient (about 18 for a newsletter): the per-purpose associated
        # data is made once, and the base64 is binascii's plus a translate (what urlsafe_b64encode does, in fewer
        # Python steps). The output is the same as before.
        if len(ids) != ARITY[purpose]:
            raise ValueError(f"{purpose.name} tokens carry {ARITY[purpose]} ids")
        sealed = self._encrypt(_encode_varints(ids), _ASSOCIATED[purpose])
        return binascii.b2a_base64(self._kid_byte + sealed, newline=False).translate(_URLSAFE).rstrip(b"=") \
            .decode("ascii")

    def open(self, purpose: Purpose, token: str) -> tuple[int, ...]:
        """Return the ids sealed in token, or raise InvalidToken."""
        if not isinstance(token, str) or not 24 <= len(token) <= MAX_TOKEN_LENGTH:
            raise InvalidToken("bad length")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise InvalidToken("not base64") from None
        # The decoder skips characters outside the alphabet and ignores unused trailing bits: only the one
        # spelling seal() produces is a token, so an altered link never opens anything.
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != token.encode("ascii", "replace"):
            raise InvalidToken("not in canonical form")
        if len(raw) < 18:
            raise InvalidToken("too short")
        for cipher in self._by_kid.get(raw[0], ()):
            try:
                plain = cipher.decrypt(raw[1:], [bytes((purpose,))])
            except InvalidTag:
                continue
            return _decode_varints(plain, ARITY[purpose])
        raise InvalidToken("signature does not verify")


# href="…" or href='…' on <a> and <area>; the compile step rewrites these once per campaign.
_HREF = re.compile(r"""(<(?:a|area)\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def trackable(url: str) -> bool:
    """Only absolute http(s) links without template code are tracked; mailto:, tel:, anchors and merge links pass."""
    lowered = url.strip().lower()
    return lowered.startswith(("http://", "https://")) and "{{" not in url and "{%" not in url


def rewrite_links(html: str, replace: Callable[[str], str | None]) -> str:
    """Replace each <a href> value with replace(url), keeping it where replace returns None."""

    def sub(match: re.Match[str]) -> str:
        new = replace(match.group(3))
        if new is None:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{new}{match.group(2)}"

    return _HREF.sub(sub, html)


def distinct_links(html: str) -> list[str]:
    """The trackable URLs of html (entity-decoded, as a browser would follow them) in first-seen order, each once."""
    seen: dict[str, None] = {}
    for match in _HREF.finditer(html):
        url = match.group(3).strip()
        if trackable(url):
            seen.setdefault(unescape(url), None)
    return list(seen)
