"""The fault server itself: a listening socket served by one thread per connection, with the log and per-address
attempt counts the sessions share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from mailer.faults.policy import FaultPolicy, Log
from mailer.faults.session import Dropped, Session

logger = logging.getLogger(__name__)


class FaultServer:
    """The fault-injecting SMTP server: ``start()`` serves from a thread (one more per connection), ``stop()``."""

    def __init__(self, policy: FaultPolicy | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 log_path: str | os.PathLike[str] | None = None, fsync: bool = False,
                 hostname: str = "faults.test") -> None:
        self.policy = policy or FaultPolicy()
        self.host = host
        self.port = port
        self.hostname = hostname
        self.log_path = log_path
        self.log = Log(log_path, fsync)
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._connections = 0
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Records of every message answered 250 so far."""
        return list(self.log.accepted)

    @property
    def counts(self) -> Counter[str]:
        """How often each event (accepted and each fault) happened."""
        return Counter(self.log.counts)

    def attempt(self, recipients: Sequence[str]) -> int:
        """Count one more DATA attempt for these recipients and return its number (1 for the first)."""
        key = ",".join(recipients)
        with self._lock:
            self._attempts[key] += 1
            return self._attempts[key]

    def start(self) -> FaultServer:
        """Listen and serve from a daemon thread; returns once the port accepts connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, name="fault-smtp", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                sock, _peer = listener.accept()
            except OSError:
                return          # stop() closed the listener
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections += 1
                number = self._connections
                self._open.add(sock)
            threading.Thread(target=self._serve, args=(sock, number), name=f"fault-smtp-{number}",
                             daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            Session(self, sock, number).run()
        except (Dropped, OSError):
            pass
        except Exception:
            logger.exception("fault server session %d failed", number)
        finally:
            with self._lock:
                self._open.discard(sock)
            sock.close()

    def stop(self) -> None:
        """Stop listening, end open sessions and close the log."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone does not on Linux.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.log.close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
