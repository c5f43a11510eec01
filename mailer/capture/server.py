"""The capture server: an aiosmtpd controller on a socket bound before start, run in a background thread."""

from __future__ import annotations

import contextlib
import logging
import socket
from types import TracebackType

from mailer.capture.outbox import Outbox
from mailer.capture.smtp import CaptureController, Handler

logger = logging.getLogger(__name__)


class CaptureServer:
    """aiosmtpd server on host:port writing every accepted message to an Outbox."""

    def __init__(
        self,
        outbox: Outbox,
        host: str = "127.0.0.1",
        port: int = 2525,
        *,
        max_message_size: int = 10_000_000,
    ) -> None:
        """Configure the server; nothing is bound until start()."""
        self.outbox = outbox
        self.host = host
        self._port = port
        self.max_message_size = max_message_size
        self._controller: CaptureController | None = None

    @property
    def port(self) -> int:
        """Port actually listened on once started (the requested port before that)."""
        return self._port

    def start(self) -> None:
        """Serve in a background thread; returns once the server accepts connections."""
        if self._controller is not None:
            raise RuntimeError("capture server already running")
        sock = _bind(self.host, self._port)
        controller = CaptureController(
            Handler(self.outbox),
            sock,
            # A fixed name: otherwise aiosmtpd calls socket.getfqdn() for every connection, a DNS lookup.
            server_hostname="rapport-capture",
            data_size_limit=self.max_message_size,
            decode_data=False,
            enable_SMTPUTF8=True,
        )
        try:
            controller.start()
        except BaseException:
            # Controller leaves its loop thread running when the readiness handshake fails.
            with contextlib.suppress(Exception):
                controller.stop(no_assert=True)
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._controller = controller
        logger.info("Capture SMTP server listening on %s:%d, outbox %s", self.host, self._port, self.outbox.path)

    def stop(self) -> None:
        """Stop serving and release the port; a no-op if not running."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> CaptureServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one)."""
    family, type_, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, type_, proto)
    try:
        # Lets the demo restart right away while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
