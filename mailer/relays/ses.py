"""Amazon SES notifications delivered by SNS: bounces, complaints, deliveries, opens and clicks.

A request is accepted in two steps. The webhook URL carries Rapport's shared secret as its HTTP Basic password
(SNS sends it after a challenge); then the SNS message must verify against the certificate SNS names
(SignatureVersion 1: SHA1, 2: SHA256). That certificate is fetched only from ``https://sns.<region>.amazonaws.com``
(``.com.cn`` in China) URLs ending in ``.pem``, without user info in the URL; subscription confirmations are
fetched from the same kind of address only. The fetcher is injectable so tests never reach the network.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.request
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailer.relays.base import (
    BounceType,
    Relay,
    RelayEvent,
    RelayEventType,
    RelayForbidden,
    RelayPayloadError,
    check_shared_secret,
    json_body,
)
from mailer.relays.fields import array, brackets, obj, short, smtp_code

Fetch = Callable[[str], bytes]

MAX_FETCH_BYTES = 256 * 1024
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# The fields each SNS message type signs, in the order of the canonical string.
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
# Signing certificates by URL, shared by every request of the process; SNS rotates them rarely.
_certificates: dict[str, x509.Certificate] = {}
_MAX_CACHED = 50


def sns_url_ok(url: object) -> bool:
    """Whether url is an https address of SNS itself (no user info): the only place anything is fetched from."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or "")) and not parts.username


def fetch_from_sns(url: str) -> bytes:
    """GET an SNS URL (a signing certificate, a subscription confirmation); refuses any other address."""
    if not sns_url_ok(url):
        raise ValueError(f"not an SNS address: {url[:200]!r}")
    with urllib.request.urlopen(url, timeout=10) as resp:   # sns_url_ok above: https://sns.*.amazonaws.com only
        return resp.read(MAX_FETCH_BYTES)


class SesRelay(Relay):
    """SES through SNS: the shared secret, then the SNS signature, then (optionally) the topic."""

    name = "ses"

    def __init__(self, secret: str, *, topic_arns: Sequence[str] = (), fetch: Fetch | None = None,
                 certificates: MutableMapping[str, x509.Certificate] | None = None) -> None:
        self.secret = secret
        self.topic_arns = [arn for arn in topic_arns if arn]
        self.fetch = fetch or fetch_from_sns
        self.certificates = _certificates if certificates is None else certificates

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Shared secret (RelayAuthError), then the SNS signature and topic (RelayForbidden).

        A body that is not JSON at all passes on to :meth:`parse`, which refuses it as malformed.
        """
        check_shared_secret(headers, self.secret)
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return
        if message is None:
            return
        if not isinstance(message, dict) or not self.signature_ok(message):
            raise RelayForbidden("The SNS message signature does not verify.")
        if self.topic_arns and message.get("TopicArn") not in self.topic_arns:
            raise RelayForbidden("Messages from this SNS topic are not accepted.")

    def signature_ok(self, message: Mapping[str, Any]) -> bool:
        """Verify an SNS message signature with the certificate SNS names (fetched once per URL)."""
        fields = _SNS_FIELDS.get(str(message.get("Type")))
        cert_url = message.get("SigningCertURL")
        if fields is None or not sns_url_ok(cert_url) or not str(cert_url).endswith(".pem"):
            return False
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            return False
        canonical = "".join(f"{k}\n{message[k]}\n" for k in fields if isinstance(message.get(k), str))
        try:
            cert = self.certificates.get(str(cert_url))
            if cert is None:
                cert = x509.load_pem_x509_certificate(self.fetch(str(cert_url)))
                if len(self.certificates) > _MAX_CACHED:
                    self.certificates.clear()
                self.certificates[str(cert_url)] = cert
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(base64.b64decode(str(message.get("Signature", ""))), canonical.encode(), padding.PKCS1v15(),
                       algorithm)
            return True
        except (ValueError, TypeError, binascii.Error, InvalidSignature, OSError):
            return False

    def confirm_subscription(self, body: bytes) -> str | None:
        """For a verified SubscriptionConfirmation, GET its SubscribeURL and return the topic; None otherwise.

        Raises RelayPayloadError when SubscribeURL is not an SNS address, OSError when SNS cannot be reached.
        """
        message = json_body(body)
        if not isinstance(message, dict) or message.get("Type") != "SubscriptionConfirmation":
            return None
        if not sns_url_ok(message.get("SubscribeURL")):
            raise RelayPayloadError("SubscribeURL is not an SNS address.")
        self.fetch(str(message["SubscribeURL"]))
        return str(message.get("TopicArn") or "")

    def parse(self, body: bytes) -> list[RelayEvent]:
        """The events of an SNS Notification; other SNS message types carry none."""
        message = json_body(body)
        if not isinstance(message, dict) or message.get("Type") != "Notification":
            return []
        try:
            return translate(json.loads(str(message.get("Message", ""))))
        except (ValueError, RecursionError) as exc:
            raise RelayPayloadError(f"The SNS message does not hold an SES notification: {str(exc)[:200]}") from None


def translate(message: Any) -> list[RelayEvent]:
    """The events of an SES notification (the Message of an SNS notification): notificationType or eventType."""
    if not isinstance(message, dict) or not isinstance(message.get("mail"), dict):
        raise RelayPayloadError("not an Amazon SES notification")
    kind = message.get("notificationType") or message.get("eventType")
    mail = message["mail"]
    common = obj(mail.get("commonHeaders"))
    headers = {str(h.get("name", "")).lower(): h.get("value") for h in array(mail.get("headers"))
               if isinstance(h, dict)}
    base: dict[str, Any] = {"rapport_id": short(headers.get("x-rapport-id"), 200),
                            "message_id": brackets(common.get("messageId") or headers.get("message-id"))}
    ses_id = str(mail.get("messageId", ""))[:100]
    if kind == "Bounce":
        bounce = obj(message.get("bounce"))
        hard = bounce.get("bounceType") == "Permanent"
        out = []
        for r in array(bounce.get("bouncedRecipients")):
            if not isinstance(r, dict):
                continue
            diagnostic = r.get("diagnosticCode")
            out.append(RelayEvent(
                RelayEventType.BOUNCE, bounce_type=BounceType.HARD if hard else BounceType.SOFT,
                recipient=short(r.get("emailAddress"), 320),
                id=f"ses:{bounce.get('feedbackId', ses_id)}:{r.get('emailAddress', '')}"[:200],
                timestamp=bounce.get("timestamp"), status=short(r.get("status"), 11),
                smtp_code=smtp_code(diagnostic), diagnostic=short(diagnostic, 1000), **base))
        return out or [RelayEvent.ignored("bounce without recipients")]
    if kind == "Complaint":
        complaint = obj(message.get("complaint"))
        return [RelayEvent(RelayEventType.COMPLAINT, recipient=short(r.get("emailAddress"), 320),
                           id=f"ses:{complaint.get('feedbackId', ses_id)}:{r.get('emailAddress', '')}"[:200],
                           timestamp=complaint.get("timestamp"),
                           feedback_type=short(complaint.get("complaintFeedbackType"), 64), **base)
                for r in array(complaint.get("complainedRecipients")) if isinstance(r, dict)] \
            or [RelayEvent.ignored("complaint without recipients")]
    if kind == "Delivery":
        delivery = obj(message.get("delivery"))
        return [RelayEvent(RelayEventType.DELIVERED, recipient=short(r, 320), id=f"ses:delivery:{ses_id}:{r}"[:200],
                           timestamp=delivery.get("timestamp"), **base)
                for r in array(delivery.get("recipients")) if isinstance(r, str)] \
            or [RelayEvent.ignored("delivery without recipients")]
    if kind in ("Open", "Click"):
        detail = obj(message.get(kind.lower()))
        return [RelayEvent(RelayEventType(kind.lower()), id=f"ses:{kind}:{ses_id}:{detail.get('timestamp', '')}",
                           timestamp=detail.get("timestamp"), url=short(detail.get("link"), 2000),
                           user_agent=short(detail.get("userAgent"), 300), ip=short(detail.get("ipAddress"), 64),
                           **base)]
    return [RelayEvent.ignored(f"SES {str(kind)[:40]} notifications are not used")]
