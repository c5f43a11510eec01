"""Opening a session with a relay: TCP or implicit TLS, EHLO (HELO as fallback), STARTTLS and AUTH, each failure
raised with the stage it happened at.
"""

from __future__ import annotations

import base64
import functools
import logging
import smtplib
import socket
import ssl

from mailer.transport.config import RelayConfig
from mailer.transport.errors import DeliveryError, TemporaryFailure, reply_error, reply_text
from mailer.transport.session import Connection

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _default_helo_name() -> str:
    """The host's FQDN, else an address literal (receivers distrust both: prefer local_hostname)."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        return f"[{socket.gethostbyname(socket.gethostname())}]"
    except OSError:
        return "[127.0.0.1]"


def _b64(data: bytes) -> str:
    """Base64 without line breaks, as SMTP AUTH expects."""
    return base64.b64encode(data).decode("ascii")


def open_connection(relay: RelayConfig, tls: ssl.SSLContext | None, generation: int) -> Connection:
    """Open, greet, secure and authenticate a new connection to relay, for a pool in its generation-th life."""
    helo = relay.local_hostname or _default_helo_name()
    smtp: smtplib.SMTP | None = None
    stage = "connect"
    try:
        if relay.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                relay.host, relay.port, local_hostname=helo, timeout=relay.timeout, context=tls
            )
        else:
            smtp = smtplib.SMTP(relay.host, relay.port, local_hostname=helo, timeout=relay.timeout)
        # Commands and replies are small and strictly alternate; Nagle's algorithm would only add delay.
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stage = "helo"
        _greet(smtp)
        if relay.security == "starttls":
            stage = "starttls"
            if not smtp.has_extn("starttls"):
                raise TemporaryFailure("relay offers no STARTTLS; not sending in plaintext", stage=stage)
            smtp.starttls(context=tls)
            stage = "helo"
            _greet(smtp)
        if relay.username:
            stage = "auth"
            _authenticate(smtp, relay)
    except DeliveryError:
        close_smtp(smtp)
        raise
    except smtplib.SMTPResponseException as exc:
        close_smtp(smtp)
        raise reply_error(exc.smtp_code, reply_text(exc.smtp_error), stage) from exc
    except (smtplib.SMTPException, OSError) as exc:
        close_smtp(smtp)
        raise TemporaryFailure(
            f"cannot establish a session with {relay.host}:{relay.port}: {exc}", stage=stage
        ) from exc
    logger.debug("connected to relay %s at %s:%s", relay.name, relay.host, relay.port)
    return Connection(smtp, generation)


def _greet(smtp: smtplib.SMTP) -> None:
    """EHLO, falling back to HELO for servers without ESMTP."""
    code, raw = smtp.ehlo()
    if not 200 <= code < 300:
        code, raw = smtp.helo()
        if not 200 <= code < 300:
            raise reply_error(code, reply_text(raw), "helo")


def _authenticate(smtp: smtplib.SMTP, relay: RelayConfig) -> None:
    """AUTH PLAIN or LOGIN with UTF-8 credentials (smtplib only encodes ASCII); smtplib for the rest."""
    username = relay.username or ""
    password = relay.password or ""
    if not smtp.has_extn("auth"):
        raise TemporaryFailure("relay does not offer AUTH (does it require TLS?)", stage="auth")
    mechanisms = smtp.esmtp_features["auth"].upper().split()
    if "PLAIN" in mechanisms:
        token = _b64(b"\0" + username.encode() + b"\0" + password.encode())
        code, raw = smtp.docmd("AUTH", "PLAIN " + token)
    elif "LOGIN" in mechanisms:
        code, raw = smtp.docmd("AUTH", "LOGIN")
        if code == 334:
            code, raw = smtp.docmd(_b64(username.encode()))
        if code == 334:
            code, raw = smtp.docmd(_b64(password.encode()))
    else:
        smtp.login(username, password)
        return
    if code != 235:
        raise reply_error(code, reply_text(raw), "auth")


def close_smtp(smtp: smtplib.SMTP | None) -> None:
    """Drop the socket without talking to the server."""
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            pass
