"""SMTP delivery to relays over pooled persistent connections, with failures classified as retry or bounce.

Sending uses smtplib only for connection setup (EHLO, STARTTLS, AUTH) and reply parsing. The DATA payload is
prepared with C-speed bytes operations and written in one call, avoiding the whole-message regular
expressions that ``smtplib.SMTP.sendmail`` runs on every message.

Failure classification: a 5xx reply is a PermanentFailure; 4xx replies, connection failures, timeouts and TLS
errors are TemporaryFailures. Each error records the SMTP ``stage`` it happened at, because a 5xx during
connect/helo/starttls/auth/mail is a problem with the relay or sender and not a reason to bounce a recipient.
"""

import base64
import functools
import logging
import math
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mailer.ratelimit import RateLimited, RateLimiter

logger = logging.getLogger(__name__)

__all__ = [
    "DeliveryError",
    "PermanentFailure",
    "RelayConfig",
    "RelayRouter",
    "SMTPPool",
    "SendResult",
    "TemporaryFailure",
]

DEFAULT_RELAY = "default"
SECURITY_MODES = ("none", "starttls", "ssl")

# URL scheme -> (security, default port).
_SCHEMES = {"smtp": ("none", 25), "smtp+starttls": ("starttls", 587), "smtps": ("ssl", 465)}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class RelayConfig:
    """Where and how to connect to one SMTP relay."""

    name: str
    host: str
    port: int
    security: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    max_connections: int = 4
    rate_per_second: float | None = None
    rate_per_hour: int | None = None
    local_hostname: str | None = None
    verify_tls: bool = True

    def __post_init__(self) -> None:
        """Reject settings that could only fail later, far from where they were written."""
        if self.security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)}, not {self.security!r}")
        if not self.host:
            raise ValueError("relay host must not be empty")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"relay port must be an integer from 1 to 65535, not {self.port!r}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if isinstance(self.max_connections, bool) or self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections!r}")
        if self.rate_per_second is not None and not (
            math.isfinite(self.rate_per_second) and self.rate_per_second > 0
        ):
            raise ValueError(f"rate_per_second must be positive, not {self.rate_per_second!r}")
        if self.rate_per_hour is not None and self.rate_per_hour < 1:
            raise ValueError(f"rate_per_hour must be positive, not {self.rate_per_hour!r}")
        if self.password is not None and not self.username:
            raise ValueError("a relay password needs a username")

    @classmethod
    def from_url(cls, url: str, name: str = "default", *, default_hostname: str | None = None) -> "RelayConfig":
        """Parse smtp://, smtp+starttls:// or smtps://[user[:pass]@]host[:port][?option=value...].

        default_hostname: the EHLO name when the URL sets no local_hostname (the sending domain, typically).
        """
        try:
            parts = urlsplit(url.strip())
        except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
            raise ValueError(f"relay {name!r}: malformed URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(
                f"relay {name!r}: unsupported URL scheme {parts.scheme!r}; "
                "use smtp://, smtp+starttls:// or smtps://"
            )
        security, default_port = _SCHEMES[scheme]
        if not parts.hostname:
            raise ValueError(f"relay {name!r}: URL has no host")
        try:
            port = parts.port
        except ValueError:
            # Error text only shows the part after '@' so a password never ends up in logs.
            hostport = parts.netloc.rpartition("@")[2]
            raise ValueError(f"relay {name!r}: invalid port in {hostport!r}") from None
        if port is None:
            port = default_port
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError(f"relay {name!r}: URL must not have a path or fragment")
        options: dict[str, Any] = {}
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValueError(f"relay {name!r}: malformed query string {parts.query!r}") from None
        for key, value in query:
            options[key] = _parse_option(name, key, value)
        if not options.get("local_hostname") and default_hostname:
            options["local_hostname"] = default_hostname
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        try:
            return cls(
                name=name,
                host=parts.hostname,
                port=port,
                security=security,
                username=username,
                password=password,
                **options,
            )
        except ValueError as exc:
            raise ValueError(f"relay {name!r}: {exc}") from None


def _parse_option(relay: str, key: str, value: str) -> Any:
    """Convert one from_url query parameter to its RelayConfig field type."""
    try:
        if key in ("max_connections", "rate_per_hour"):
            return int(value)
        if key in ("rate_per_second", "timeout"):
            return float(value)
        if key == "verify_tls":
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError
        if key == "local_hostname":
            return value or None
    except ValueError:
        raise ValueError(f"relay {relay!r}: invalid value {value!r} for {key}") from None
    raise ValueError(
        f"relay {relay!r}: unknown URL parameter {key!r}; known: max_connections, rate_per_second, "
        "rate_per_hour, verify_tls, timeout, local_hostname"
    )


class DeliveryError(Exception):
    """A message could not be handed to the relay; carries the SMTP reply when there was one."""

    permanent: bool = False

    def __init__(
        self,
        smtp_message: str,
        smtp_code: int | None = None,
        *,
        stage: str = "",
        refused: Mapping[str, tuple[int, str]] | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(smtp_message)
        self.smtp_code = smtp_code
        self.smtp_message = smtp_message
        # Step that failed: ratelimit, connect, helo, starttls, auth, mail, rcpt, data, message (end of DATA).
        self.stage = stage
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})
        # The whole message was written but no reply came: the relay may have accepted it. Never resend.
        self.maybe_delivered = maybe_delivered

    @property
    def relay_problem(self) -> bool:
        """The relay refused the session or the sender, not this recipient (wrong password, TLS required…)."""
        return self.stage in ("connect", "helo", "starttls", "auth", "mail")

    def __str__(self) -> str:
        code = "" if self.smtp_code is None else f"{self.smtp_code} "
        where = f" [{self.stage}]" if self.stage else ""
        return f"{code}{self.smtp_message}{where}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only state is not in self.args, so pickling (e.g. across processes) needs it spelled out.
        state = {"stage": self.stage, "refused": self.refused, "maybe_delivered": self.maybe_delivered}
        return (type(self), (self.smtp_message, self.smtp_code), state)


class TemporaryFailure(DeliveryError):
    """4xx reply, refused or lost connection, timeout or TLS failure: retry later."""

    permanent = False


class PermanentFailure(DeliveryError):
    """5xx reply: do not retry the same message to the same recipient."""

    permanent = True


@dataclass
class SendResult:
    """The relay's reply to end-of-DATA, plus any recipients it refused while accepting others."""

    smtp_code: int
    smtp_message: str
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


class _ConnectionLost(Exception):
    """Internal: the connection died or announced its closing mid-transaction."""

    def __init__(self, stage: str, text: str, code: int | None = None, *, committed: bool = False) -> None:
        super().__init__(text)
        self.stage = stage
        self.text = text
        self.code = code
        # True once the whole message including its terminator was written: the relay may have accepted it.
        self.committed = committed

    def failure(self) -> TemporaryFailure:
        """Turn into the public error."""
        text = self.text
        if self.committed and self.code is None:
            # No reply at all to the end of DATA: the relay may or may not have taken responsibility for it.
            text += " (after the message was sent; it may have been delivered)"
        return TemporaryFailure(text, self.code, stage=self.stage,
                                maybe_delivered=self.committed and self.code is None)


class _Connection:
    """One live SMTP session plus the bookkeeping the pool needs."""

    __slots__ = ("smtp", "pid", "generation", "last_used", "reused", "broken", "size", "eightbit", "smtputf8",
                 "pipelining")

    def __init__(self, smtp: smtplib.SMTP, generation: int) -> None:
        self.smtp = smtp
        self.pid = os.getpid()
        self.generation = generation
        self.last_used = time.monotonic()
        self.reused = False
        self.broken = False
        self.size = smtp.has_extn("size")
        self.eightbit = smtp.has_extn("8bitmime")
        self.smtputf8 = smtp.has_extn("smtputf8")
        self.pipelining = smtp.has_extn("pipelining")


_EOL = re.compile(rb"\r\n|\r|\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


def _data_payload(message: bytes) -> bytes:
    """Return the DATA payload: CRLF line endings, dot-stuffed and terminated with CRLF.CRLF."""
    # If every CR is followed by LF and there are as many CRs as LFs, every LF has its CR: the message is
    # already all CRLF. These scans are ~10x cheaper than the rewriting regex, which only bad input pays for.
    if message.count(b"\r") != message.count(b"\n") or _BARE_CR.search(message):
        message = _EOL.sub(b"\r\n", message)
    payload = message.replace(b"\r\n.", b"\r\n..")
    if payload.startswith(b"."):
        payload = b"." + payload
    if payload and not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return payload + b".\r\n"


_BAD_ADDRESS = re.compile(r"[\x00\r\n]")


def _envelope_address(address: str) -> str:
    """Return the address in angle brackets as MAIL/RCPT expect, or raise ValueError for unsafe input."""
    if _BAD_ADDRESS.search(address):
        raise ValueError(f"envelope address contains control characters: {address!r}")
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        return address
    return f"<{address}>"


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


def _text(raw: bytes | str) -> str:
    """Decode a server reply for humans and logs."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _reply_error(
    code: int, text: str, stage: str, refused: Mapping[str, tuple[int, str]] | None = None
) -> DeliveryError:
    """Classify an SMTP error reply."""
    cls = PermanentFailure if 500 <= code < 600 else TemporaryFailure
    return cls(text, code, stage=stage, refused=refused)


class SMTPPool:
    """Persistent, thread-safe SMTP connections to one relay, at most ``max_connections`` at a time."""

    # Idle connections older than this are dropped unused: relays commonly time sessions out after about a
    # minute, and a silently dead connection would otherwise cost a full timeout to discover.
    max_idle: float = 50.0

    def __init__(self, relay: RelayConfig, limiter: RateLimiter | None = None) -> None:
        self.relay = relay
        self.limiter = limiter
        self._tls = self._tls_context() if relay.security != "none" else None
        self._generation = 0
        self._reset()
        if limiter is None and (relay.rate_per_second or relay.rate_per_hour):
            logger.warning("relay %s has rate limits but no limiter; they will not be enforced", relay.name)
        if relay.username and relay.security == "none":
            logger.warning("relay %s sends its password without TLS", relay.name)

    def _reset(self) -> None:
        """Start with no connections; also run in a forked child, whose inherited sockets are the parent's."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.relay.max_connections)
        self._idle: list[_Connection] = []

    def _tls_context(self) -> ssl.SSLContext:
        """Build the client TLS context once; loading the CA store is too slow to repeat per connection."""
        context = ssl.create_default_context()
        if not self.relay.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def __enter__(self) -> "SMTPPool":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def send(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        before_transaction: Callable[[], None] | None = None,
    ) -> SendResult:
        """Send prebuilt message bytes on a pooled connection; raise TemporaryFailure or PermanentFailure.

        before_transaction runs once the rate limit allowed the message and a connection is ready, right before
        MAIL FROM: the last moment to decide against sending (whatever it raises propagates, nothing is sent).
        """
        if isinstance(recipients, str):
            recipients = [recipients]
        if not recipients:
            raise ValueError("send() needs at least one recipient")
        if not isinstance(message, bytes | bytearray):
            raise TypeError(f"message must be bytes, not {type(message).__name__}")
        sender = _envelope_address(envelope_from)
        try:
            rcpts = [(address, _envelope_address(address)) for address in recipients]
        except ValueError as exc:
            # A malformed recipient can never be delivered: bounce it rather than crash the batch.
            raise PermanentFailure(str(exc), stage="rcpt") from None
        utf8 = not (envelope_from.isascii() and all(address.isascii() for address in recipients))
        eightbit = not message.isascii()
        payload = _data_payload(bytes(message))
        if self.limiter is not None:
            # One unit per message, taken before checkout so a waiting thread does not hold a connection.
            try:
                self.limiter.acquire()
            except RateLimited as exc:
                # A DeliveryError so batch jobs treat it like any other temporary failure.
                raise TemporaryFailure(
                    f"relay rate limit reached; retry after {exc.retry_after:.1f}s", stage="ratelimit"
                ) from exc

        conn = self._checkout()
        try:
            if before_transaction is not None:
                before_transaction()
            try:
                return self._transaction(conn, sender, rcpts, payload, eightbit, utf8)
            except _ConnectionLost as lost:
                # Only an idle pooled connection gets a second chance, and only if the relay cannot have
                # accepted the message: anything else is a real failure, or retrying could duplicate mail.
                if not conn.reused or lost.committed:
                    raise lost.failure() from None
                logger.debug("relay %s dropped an idle connection (%s); reconnecting", self.relay.name, lost)
                self._close(conn, polite=False)
                conn = self._connect()
            try:
                return self._transaction(conn, sender, rcpts, payload, eightbit, utf8)
            except _ConnectionLost as lost:
                raise lost.failure() from None
        finally:
            self._checkin(conn)

    def _transaction(
        self,
        conn: _Connection,
        sender: str,
        rcpts: list[tuple[str, str]],
        payload: bytes,
        eightbit: bool,
        utf8: bool,
    ) -> SendResult:
        """Run MAIL, RCPT..., DATA on one connection, leaving it reset and reusable unless it broke."""
        options = []
        if conn.size:
            options.append(f"SIZE={len(payload)}")
        if eightbit and conn.eightbit:
            options.append("BODY=8BITMIME")
        if utf8:
            if not conn.smtputf8:
                stage = "mail" if not sender.isascii() else "rcpt"
                raise PermanentFailure("relay lacks SMTPUTF8, needed for a non-ASCII address", stage=stage)
            options.append("SMTPUTF8")
        conn.smtp.command_encoding = "utf-8" if utf8 else "ascii"

        mail_arg = "FROM:" + " ".join([sender, *options])
        if conn.pipelining:
            mail, rcpt_replies, data = self._pipelined_envelope(conn, mail_arg, rcpts)
        else:
            mail = self._command(conn, "mail", "MAIL", mail_arg)
            rcpt_replies = []
            if mail[0] == 250:
                rcpt_replies = [self._command(conn, "rcpt", "RCPT", "TO:" + quoted) for _a, quoted in rcpts]
            data = None
        if mail[0] != 250:
            self._abandon(conn, data_open=data is not None and data[0] == 354)
            raise _reply_error(*mail, "mail")

        refused: dict[str, tuple[int, str]] = {}
        for (address, _quoted), (code, text) in zip(rcpts, rcpt_replies, strict=True):
            if code not in (250, 251):
                refused[address] = (code, text)
        if len(refused) == len(rcpts):
            self._abandon(conn, data_open=data is not None and data[0] == 354)
            # Temporary if any recipient might be accepted later, so the message is retried not bounced.
            code, text = next(
                (reply for reply in refused.values() if 400 <= reply[0] < 500), next(iter(refused.values()))
            )
            raise _reply_error(code, text, "rcpt", refused)

        code, text = data if data is not None else self._command(conn, "data", "DATA")
        if code != 354:
            self._abandon(conn)
            raise _reply_error(code, text, "data", refused)

        try:
            conn.smtp.send(payload)
        except (smtplib.SMTPException, OSError) as exc:
            # sendall failed, so the terminator never left: the relay will discard the partial message.
            conn.broken = True
            raise _ConnectionLost("data", f"connection lost while sending the message: {exc}") from exc
        code, text = self._reply(conn, "message", committed=True)
        if 200 <= code < 300:
            return SendResult(code, text, refused)
        if not 400 <= code < 600:
            conn.broken = True
        raise _reply_error(code, text, "message", refused)

    def _pipelined_envelope(
        self, conn: _Connection, mail_arg: str, rcpts: list[tuple[str, str]]
    ) -> tuple[tuple[int, str], list[tuple[int, str]], tuple[int, str]]:
        """RFC 2920: MAIL, every RCPT and DATA in one write, then their replies: two round trips a message, not four."""
        lines = [f"MAIL {mail_arg}", *(f"RCPT TO:{quoted}" for _a, quoted in rcpts), "DATA"]
        try:
            conn.smtp.send(("\r\n".join(lines) + "\r\n").encode(conn.smtp.command_encoding))
        except (smtplib.SMTPException, OSError) as exc:
            conn.broken = True
            raise _ConnectionLost("mail", f"connection lost: {exc}") from exc
        mail = self._reply(conn, "mail")
        rcpt_replies = [self._reply(conn, "rcpt") for _ in rcpts]
        data = self._reply(conn, "data")
        return mail, rcpt_replies, data

    def _command(self, conn: _Connection, stage: str, verb: str, arg: str = "") -> tuple[int, str]:
        """Send one command and return its reply."""
        try:
            conn.smtp.putcmd(verb, arg)
        except (smtplib.SMTPException, OSError) as exc:
            conn.broken = True
            raise _ConnectionLost(stage, f"connection lost: {exc}") from exc
        return self._reply(conn, stage)

    def _reply(self, conn: _Connection, stage: str, *, committed: bool = False) -> tuple[int, str]:
        """Read one reply, turning a dead connection or a 421 into _ConnectionLost."""
        try:
            code, raw = conn.smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            conn.broken = True
            raise _ConnectionLost(stage, f"connection lost: {exc}", committed=committed) from exc
        text = _text(raw)
        if code == 421:
            # 421 means the relay is closing the session whatever the command was.
            conn.broken = True
            raise _ConnectionLost(stage, text, 421, committed=committed)
        if not 200 <= code < 600:
            conn.broken = True
            raise _ConnectionLost(stage, f"unintelligible reply {code}: {text}", committed=committed)
        return code, text

    def _abandon(self, conn: _Connection, *, data_open: bool = False) -> None:
        """RSET after a failed transaction; a connection that cannot reset is not reused."""
        try:
            if data_open:
                # A pipelined DATA was answered 354 although the envelope failed: end the (empty) data first.
                conn.smtp.send(b".\r\n")
                conn.smtp.getreply()
            code, _ = conn.smtp.docmd("RSET")
        except (smtplib.SMTPException, OSError):
            code = -1
        if code != 250:
            conn.broken = True

    def _connect(self) -> _Connection:
        """Open, greet, secure and authenticate a new connection."""
        relay = self.relay
        helo = relay.local_hostname or _default_helo_name()
        smtp: smtplib.SMTP | None = None
        stage = "connect"
        try:
            if relay.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    relay.host, relay.port, local_hostname=helo, timeout=relay.timeout, context=self._tls
                )
            else:
                smtp = smtplib.SMTP(relay.host, relay.port, local_hostname=helo, timeout=relay.timeout)
            # Commands and replies are small and strictly alternate; Nagle's algorithm would only add delay.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stage = "helo"
            self._greet(smtp)
            if relay.security == "starttls":
                stage = "starttls"
                if not smtp.has_extn("starttls"):
                    raise TemporaryFailure("relay offers no STARTTLS; not sending in plaintext", stage=stage)
                smtp.starttls(context=self._tls)
                stage = "helo"
                self._greet(smtp)
            if relay.username:
                stage = "auth"
                self._authenticate(smtp)
        except DeliveryError:
            self._close_smtp(smtp)
            raise
        except smtplib.SMTPResponseException as exc:
            self._close_smtp(smtp)
            raise _reply_error(exc.smtp_code, _text(exc.smtp_error), stage) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._close_smtp(smtp)
            raise TemporaryFailure(
                f"cannot establish a session with {relay.host}:{relay.port}: {exc}", stage=stage
            ) from exc
        logger.debug("connected to relay %s at %s:%s", relay.name, relay.host, relay.port)
        return _Connection(smtp, self._generation)

    @staticmethod
    def _greet(smtp: smtplib.SMTP) -> None:
        """EHLO, falling back to HELO for servers without ESMTP."""
        code, raw = smtp.ehlo()
        if not 200 <= code < 300:
            code, raw = smtp.helo()
            if not 200 <= code < 300:
                raise _reply_error(code, _text(raw), "helo")

    def _authenticate(self, smtp: smtplib.SMTP) -> None:
        """AUTH PLAIN or LOGIN with UTF-8 credentials (smtplib only encodes ASCII); smtplib for the rest."""
        username = self.relay.username or ""
        password = self.relay.password or ""
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
            raise _reply_error(code, _text(raw), "auth")

    def _checkout(self) -> _Connection:
        """Take a connection slot, then a live idle connection or a new one."""
        if os.getpid() != self._pid:
            # Forked (RQ's work horse): the parent's sockets are not ours to use or to QUIT.
            self._reset()
        self._slots.acquire()
        try:
            while True:
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                if conn is None:
                    return self._connect()
                if time.monotonic() - conn.last_used <= self.max_idle:
                    conn.reused = True
                    return conn
                self._close(conn, polite=False)
        except BaseException:
            self._slots.release()
            raise

    def _checkin(self, conn: _Connection) -> None:
        """Return a connection to the pool, or close it if it broke or the pool was closed meanwhile."""
        if conn.pid != os.getpid():
            return
        try:
            if conn.broken or conn.generation != self._generation:
                self._close(conn, polite=not conn.broken)
            else:
                conn.last_used = time.monotonic()
                with self._lock:
                    # Most recently used last, so pop() reuses warm connections and lets spare ones age out.
                    self._idle.append(conn)
        finally:
            self._slots.release()

    def _close(self, conn: _Connection, *, polite: bool) -> None:
        """Close a connection, saying QUIT if it is healthy."""
        if polite:
            try:
                # A short timeout so a hung relay cannot stall shutdown for the full send timeout.
                conn.smtp.sock.settimeout(min(self.relay.timeout, 5.0))
                conn.smtp.quit()
            except (smtplib.SMTPException, OSError, AttributeError):
                pass
        self._close_smtp(conn.smtp)

    @staticmethod
    def _close_smtp(smtp: smtplib.SMTP | None) -> None:
        """Drop the socket without talking to the server."""
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def close(self) -> None:
        """QUIT idle connections; connections in use are closed when their send finishes."""
        if os.getpid() != self._pid:
            self._reset()
            return
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for conn in idle:
            self._close(conn, polite=True)

    def check(self) -> str:
        """Connect, EHLO, STARTTLS/AUTH as configured, NOOP, QUIT; return a summary or raise DeliveryError."""
        relay = self.relay
        started = time.monotonic()
        conn = self._connect()
        smtp = conn.smtp
        try:
            code, raw = smtp.noop()
            if code != 250:
                raise _reply_error(code, _text(raw), "noop")
            details = [f"connected to {relay.host}:{relay.port}"]
            if isinstance(smtp.sock, ssl.SSLSocket):
                how = "implicit TLS" if relay.security == "ssl" else "STARTTLS"
                details.append(f"{how} {smtp.sock.version()}")
            else:
                details.append("no TLS")
            if relay.username:
                details.append(f"authenticated as {relay.username}")
            if smtp.ehlo_resp:
                details.append(f"server {_text(smtp.ehlo_resp).splitlines()[0]}")
            if smtp.esmtp_features:
                details.append("extensions " + " ".join(sorted(name.upper() for name in smtp.esmtp_features)))
            smtp.quit()
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(f"relay check failed: {exc}", stage="noop") from exc
        finally:
            self._close_smtp(smtp)
        details.append(f"{time.monotonic() - started:.2f}s")
        return f"{relay.name}: " + "; ".join(details)


def _b64(data: bytes) -> str:
    """Base64 without line breaks, as SMTP AUTH expects."""
    return base64.b64encode(data).decode("ascii")


class RelayRouter:
    """Several relays picked by name, falling back to 'default'; one lazily created SMTPPool per relay."""

    def __init__(
        self,
        relays: Sequence[RelayConfig],
        limiter_factory: Callable[[RelayConfig], RateLimiter | None] | None = None,
    ) -> None:
        self._relays: dict[str, RelayConfig] = {}
        for relay in relays:
            if relay.name in self._relays:
                raise ValueError(f"duplicate relay name {relay.name!r}")
            self._relays[relay.name] = relay
        if not self._relays:
            raise ValueError("RelayRouter needs at least one relay")
        self._limiter_factory = limiter_factory
        self._pools: dict[str, SMTPPool] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """Names of the configured relays."""
        return list(self._relays)

    def pool(self, name: str | None = None) -> SMTPPool:
        """Return the pool for relay ``name``, or for 'default' when name is None or unknown."""
        relay = self._relays.get(name or DEFAULT_RELAY)
        if relay is None:
            relay = self._relays.get(DEFAULT_RELAY)
            if relay is None:
                raise LookupError(f"no relay named {name!r} and no {DEFAULT_RELAY!r} relay to fall back to")
            if name not in self._warned:
                # Once per name: a typo in a campaign's relay should be visible without flooding the log.
                self._warned.add(name)
                logger.warning("no relay named %r; using %r", name, DEFAULT_RELAY)
        with self._lock:
            pool = self._pools.get(relay.name)
            if pool is None:
                limiter = self._limiter_factory(relay) if self._limiter_factory else None
                pool = self._pools[relay.name] = SMTPPool(relay, limiter)
        return pool

    def close(self) -> None:
        """Close every pool created so far."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
