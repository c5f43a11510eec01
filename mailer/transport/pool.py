"""Pooled persistent connections: :class:`SMTPPool` hands each send a live connection to one relay (at most
``max_connections`` at a time, rate-limited when configured) and :class:`RelayRouter` picks the pool by relay name.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from mailer.message import ascii_domain
from mailer.ratelimit import RateLimited, RateLimiter
from mailer.transport.config import DEFAULT_RELAY, RelayConfig
from mailer.transport.connect import close_smtp, open_connection
from mailer.transport.errors import (
    ConnectionLost,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
    reply_error,
    reply_text,
)
from mailer.transport.session import Connection, Gate, data_payload, envelope_address, transaction

logger = logging.getLogger(__name__)


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
        self._idle: list[Connection] = []

    def _tls_context(self) -> ssl.SSLContext:
        """Build the client TLS context once; loading the CA store is too slow to repeat per connection."""
        context = ssl.create_default_context()
        if not self.relay.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def __enter__(self) -> SMTPPool:
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
        gate: Gate | None = None,
    ) -> SendResult:
        """Send prebuilt message bytes on a pooled connection; raise TemporaryFailure or PermanentFailure.

        gate is the caller's last word on the message: gate.start() runs once the rate limit allowed the message
        and a connection is ready, right before MAIL FROM; gate.finish() runs before any of the message's data is
        written (see session.transaction), and whatever it raises propagates with nothing sent. It beats the
        relay's own refusal: a message the gate stopped is reported as stopped even if the envelope failed too.
        """
        if isinstance(recipients, str):
            recipients = [recipients]
        if not recipients:
            raise ValueError("send() needs at least one recipient")
        if not isinstance(message, bytes | bytearray):
            raise TypeError(f"message must be bytes, not {type(message).__name__}")
        # Internationalized domains as A-labels: only a non-ASCII local part then needs SMTPUTF8 (RFC 6531).
        sender = envelope_address(ascii_domain(envelope_from))
        try:
            rcpts = [(address, envelope_address(ascii_domain(address))) for address in recipients]
        except ValueError as exc:
            # A malformed recipient can never be delivered: bounce it rather than crash the batch.
            raise PermanentFailure(str(exc), stage="rcpt") from None
        utf8 = not (sender.isascii() and all(quoted.isascii() for _address, quoted in rcpts))
        eightbit = not message.isascii()
        payload = data_payload(bytes(message))
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
            if gate is not None:
                gate.start()
            try:
                return transaction(conn, sender, rcpts, payload, eightbit, utf8, gate)
            except ConnectionLost as lost:
                # Only an idle pooled connection gets a second chance, and only if the relay cannot have
                # accepted the message: anything else is a real failure, or retrying could duplicate mail.
                if not conn.reused or lost.committed:
                    raise lost.failure() from None
                logger.debug("relay %s dropped an idle connection (%s); reconnecting", self.relay.name, lost)
                self._close(conn, polite=False)
                conn = self._connect()
            try:
                return transaction(conn, sender, rcpts, payload, eightbit, utf8, gate)
            except ConnectionLost as lost:
                raise lost.failure() from None
        except Exception:
            if gate is not None:
                # Whatever failed, the gate's answer is read (its caller's connection stays in step) and a stop
                # it says wins: the message was not sent, for that reason.
                gate.finish()
            raise
        finally:
            self._checkin(conn)

    def _connect(self) -> Connection:
        """A new connection belonging to this pool's current generation."""
        return open_connection(self.relay, self._tls, self._generation)

    def _checkout(self) -> Connection:
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

    def _checkin(self, conn: Connection) -> None:
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

    def _close(self, conn: Connection, *, polite: bool) -> None:
        """Close a connection, saying QUIT if it is healthy."""
        if polite:
            try:
                # A short timeout so a hung relay cannot stall shutdown for the full send timeout.
                conn.smtp.sock.settimeout(min(self.relay.timeout, 5.0))
                conn.smtp.quit()
            except (smtplib.SMTPException, OSError, AttributeError):
                pass
        close_smtp(conn.smtp)

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
                raise reply_error(code, reply_text(raw), "noop")
            details = [f"connected to {relay.host}:{relay.port}"]
            if isinstance(smtp.sock, ssl.SSLSocket):
                how = "implicit TLS" if relay.security == "ssl" else "STARTTLS"
                details.append(f"{how} {smtp.sock.version()}")
            else:
                details.append("no TLS")
            if relay.username:
                details.append(f"authenticated as {relay.username}")
            if smtp.ehlo_resp:
                details.append(f"server {reply_text(smtp.ehlo_resp).splitlines()[0]}")
            if smtp.esmtp_features:
                details.append("extensions " + " ".join(sorted(name.upper() for name in smtp.esmtp_features)))
            smtp.quit()
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(f"relay check failed: {exc}", stage="noop") from exc
        finally:
            close_smtp(smtp)
        details.append(f"{time.monotonic() - started:.2f}s")
        return f"{relay.name}: " + "; ".join(details)


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
