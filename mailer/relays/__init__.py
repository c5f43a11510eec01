"""Relay webhooks without a web framework: check that a request comes from the relay, then turn its payload into
normalized events (docs/webhooks.md).

One module per relay: :mod:`.ses` (Amazon SES through SNS), :mod:`.postmark`, :mod:`.mailgun`, :mod:`.sendgrid`,
and :mod:`.rapport` for Rapport's own normalized format. :mod:`.base` holds what they share: the :class:`Relay`
interface (``verify(headers, body)`` then ``parse(body)``), :class:`RelayEvent` and the errors. Credentials are
given to each relay's constructor; where they come from is the application's business.
"""

from mailer.relays.base import (
    SIGNATURE_MAX_AGE,
    BounceType,
    Relay,
    RelayAuthError,
    RelayEvent,
    RelayEventType,
    RelayForbidden,
    RelayPayloadError,
)
from mailer.relays.mailgun import MailgunRelay
from mailer.relays.postmark import PostmarkRelay
from mailer.relays.rapport import RapportRelay
from mailer.relays.sendgrid import SendGridRelay
from mailer.relays.ses import SesRelay

# The relays whose own payloads Rapport reads, by the name used in /webhooks/relay/<name>.
NATIVE_RELAYS = ("ses", "postmark", "mailgun", "sendgrid")

__all__ = [
    "NATIVE_RELAYS",
    "SIGNATURE_MAX_AGE",
    "BounceType",
    "MailgunRelay",
    "PostmarkRelay",
    "RapportRelay",
    "Relay",
    "RelayAuthError",
    "RelayEvent",
    "RelayEventType",
    "RelayForbidden",
    "RelayPayloadError",
    "SendGridRelay",
    "SesRelay",
]
