"""SMTP delivery to relays over pooled persistent connections, with failures classified as retry or bounce.

Sending uses smtplib only for connection setup (EHLO, STARTTLS, AUTH) and reply parsing; see :mod:`.session` for
how a message is written. :mod:`.config` reads relay settings, :mod:`.connect` opens sessions, :mod:`.pool` keeps
them alive between sends and routes by relay name, and :mod:`.errors` classifies what went wrong: a 5xx reply is a
PermanentFailure; 4xx replies, connection failures, timeouts and TLS errors are TemporaryFailures, each with the
SMTP ``stage`` it happened at.
"""

from mailer.transport.config import DEFAULT_RELAY, SECURITY_MODES, RelayConfig
from mailer.transport.errors import DeliveryError, PermanentFailure, SendResult, TemporaryFailure
from mailer.transport.pool import RelayRouter, SMTPPool
from mailer.transport.session import Gate

__all__ = [
    "DEFAULT_RELAY",
    "SECURITY_MODES",
    "DeliveryError",
    "Gate",
    "PermanentFailure",
    "RelayConfig",
    "RelayRouter",
    "SMTPPool",
    "SendResult",
    "TemporaryFailure",
]
