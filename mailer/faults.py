"""A fault-injecting SMTP server for proving delivery guarantees: it fails on purpose and logs what it accepted.

Faults are chosen per connection or per message by a seeded policy, so a run can be repeated, and per address by
a script (the faults of an address's successive attempts):

    421 at connect         the greeting is ``421`` and the connection closes
    451 after DATA         the whole message is read, then answered ``451`` (a temporary failure)
    drop before the dot    the DATA command is answered by a reset: the client never wrote the message
    drop after the dot     the whole message is read, then the connection is reset with no reply
    550 for addresses      chosen recipients are refused at RCPT for good
    slow replies           the reply to the end of DATA waits ``slow_seconds``

Every message answered ``250`` is appended to the log as one JSON line, flushed before the ``250`` is written,
with its Message-ID, recipients and the time its transaction started (MAIL FROM): that log is the ground truth
a harness counts deliveries from. Faults are logged too (``event`` tells them apart).

    python -m mailer.faults --port 2526 --log faults.jsonl --seed 7 --data-451 0.05 --drop-after-dot 0.01
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

logger = logging.getLogger(__name__)

__all__ = ["ACCEPTED", "FaultPolicy", "FaultServer", "main", "read_log"]

ACCEPTED = "accepted"
_MESSAGE_FAULTS = ("data_451", "drop_before_dot", "drop_after_dot")

_MAX_LINE = 64 * 1024
_MAX_MESSAGE = 50 * 1024 * 1024
_RESET = struct.pack("ii", 1, 0)      # SO_LINGER on, 0 s: close() sends RST
_ADDRESS = re.compile(r"<([^>]*)>")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class FaultPolicy:
    """Which faults happen: shares drawn per connection or message from ``seed``, plus per-address scripts."""

    seed: int = 0
    connect_421: float = 0.0          # share of connections greeted with 421
    data_451: float = 0.0             # share of messages answered 451 after the final dot
    drop_before_dot: float = 0.0      # share of messages whose connection is reset mid-DATA
    drop_after_dot: float = 0.0       # share of messages read in full, then reset without a reply
    slow: float = 0.0                 # share of end-of-DATA replies delayed by slow_seconds
    slow_seconds: float = 1.0
    reject: frozenset[str] = frozenset()             # recipients refused with 550 at RCPT, every time
    # address -> the faults of its 1st, 2nd, … attempt ("ok" for none); later attempts follow the shares.
    script: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject shares that cannot be probabilities and script entries that name no fault."""
        for name in ("connect_421", "data_451", "drop_before_dot", "drop_after_dot", "slow"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a share from 0 to 1, not {value!r}")
        if self.data_451 + self.drop_before_dot + self.drop_after_dot > 1.0:
            raise ValueError("data_451, drop_before_dot and drop_after_dot must add up to at most 1")
        for address, faults in self.script.items():
            unknown = set(faults) - {*_MESSAGE_FAULTS, "ok"}
            if unknown:
                raise ValueError(f"script for {address}: unknown faults {sorted(unknown)}")

    def draw(self, kind: str, key: str) -> float:
        """A number in [0, 1) fixed by seed, kind and key: the same run gets the same faults however it interleaves."""
        digest = hashlib.blake2b(f"{self.seed}\0{kind}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def message_fault(self, recipients: Sequence[str], attempt: int) -> str:
        """The fault for a message to recipients on their attempt-th try ("" for none)."""
        for address in recipients:
            steps = self.script.get(address.lower())
            if steps is not None and attempt <= len(steps):
                step = steps[attempt - 1]
                return "" if step == "ok" else step
        u = self.draw("message", f"{','.join(recipients)}#{attempt}")
        for name in _MESSAGE_FAULTS:
            share = getattr(self, name)
            if u < share:
                return name
            u -= share
        return ""


class _Log:
    """The append-only JSON-lines log; each line is flushed before the client hears the reply it records."""

    def __init__(self, path: str | os.PathLike[str] | None, fsync: bool) -> None:
        self._fh: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._fsync = fsync
        self.counts: Counter[str] = Counter()
        self.accepted: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Count the record and append it to the file."""
        with self._lock:
            self.counts[record["event"]] += 1
            if record["event"] == ACCEPTED:
                self.accepted.append(record)
            if self._fh is not None:
                self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
                self._fh.flush()
                if self._fsync:
                    os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def read_log(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a fault log, oldest first; a torn last line (a killed writer) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                yield json.loads(line)


def _address(arg: str) -> str:
    """The address inside MAIL FROM:<…> / RCPT TO:<…>, lower-cased."""
    match = _ADDRESS.search(arg)
    return (match.group(1) if match else arg.partition(":")[2].split(" ")[0]).strip().lower()


def _unstuff(data: bytes) -> bytes:
    """Undo dot-stuffing of a DATA payload (without its terminator)."""
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\r\n..", b"\r\n.")


class _Dropped(Exception):
    """The session ended the connection on purpose (a fault) or the client went away."""


class _Session:
    """One SMTP connection on a blocking socket, served by its own thread."""

    def __init__(self, server: FaultServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.policy = server.policy
        self.sock = sock
        self.number = number
        self.buf = bytearray()
        self.reset()

    def reset(self) -> None:
        self.mail_from: str | None = None
        self.recipients: list[str] = []
        self.started = 0.0

    def reply(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def drop(self) -> None:
        """Reset the connection at once: no reply, no FIN handshake, unread data discarded."""
        # Linger 0 makes close() send RST now, in this call, so on loopback it is queued behind the last reply
        # before the client can act on that reply.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.sock.close()
        raise _Dropped

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Dropped
        self.buf += chunk

    def readline(self) -> bytes:
        while True:
            at = self.buf.find(b"\n")
            if at >= 0:
                line = bytes(self.buf[:at + 1])
                del self.buf[:at + 1]
                return line
            if len(self.buf) > _MAX_LINE:
                self.reply("500 5.5.6 Line too long")
                self.drop()
            self._fill()

    def read_payload(self) -> bytes:
        """The DATA payload including its terminator."""
        # The client sends nothing after the terminator before it has our reply, so it ends the buffer.
        while not (self.buf.endswith(b"\r\n.\r\n") or self.buf == b".\r\n"):
            if len(self.buf) > _MAX_MESSAGE + 5:
                self.reply("552 5.3.4 Message too big")
                self.drop()
            self._fill()
        payload, self.buf = bytes(self.buf), bytearray()
        return payload

    def run(self) -> None:
        if self.policy.draw("connect", str(self.number)) < self.policy.connect_421:
            self.server.log.write({"event": "connect_421", "t": time.time(), "connection": self.number})
            self.reply("421 4.3.2 Service not available, try again later")
            return
        self.reply(f"220 {self.server.hostname} ESMTP Rapport fault server")
        while True:
            command, _, arg = self.readline().decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            verb = command.upper()
            if verb == "EHLO":
                self.reset()
                self.reply(f"250-{self.server.hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                           f"250-SMTPUTF8\r\n250 SIZE {_MAX_MESSAGE}")
            elif verb == "HELO":
                self.reset()
                self.reply(f"250 {self.server.hostname}")
            elif verb == "MAIL":
                self.reset()
                self.mail_from = _address(arg)
                self.started = time.time()
                self.reply("250 2.1.0 OK")
            elif verb == "RCPT":
                self.rcpt(_address(arg))
            elif verb == "DATA":
                self.data()
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    self.reset()
                self.reply("250 2.0.0 OK")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Command not implemented")

    def rcpt(self, address: str) -> None:
        if self.mail_from is None:
            self.reply("503 5.5.1 MAIL first")
        elif address in self.policy.reject:
            self.server.log.write({"event": "rcpt_550", "t": time.time(), "rcpt": address})
            self.reply("550 5.1.1 No such user here")
        else:
            self.recipients.append(address)
            self.reply("250 2.1.5 OK")

    def data(self) -> None:
        """One DATA phase: the message's fault, or the log line and the 250."""
        if not self.recipients:
            self.reply("554 5.5.1 No valid recipients")
            return
        attempt = self.server.attempt(self.recipients)
        fault = self.policy.message_fault(self.recipients, attempt)
        base = {"rcpt": self.recipients, "attempt": attempt, "started": self.started, "connection": self.number}
        if fault == "drop_before_dot":
            # Reset instead of the 354, so the client has not begun the message. A reset after the 354 would race
            # the client's write: its kernel takes a whole message into the send buffer at once, and a client that
            # has written the final dot cannot tell a drop before our reading it from a drop after.
            self.server.log.write({**base, "event": fault, "t": time.time()})
            self.drop()
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        payload = self.read_payload()
        message = _unstuff(payload[:-3]) if payload != b".\r\n" else b""
        found = _MESSAGE_ID.search(message.split(b"\r\n\r\n", 1)[0])
        record = {**base, "message_id": found.group(1).decode("utf-8", "replace").strip() if found else None,
                  "mail_from": self.mail_from, "bytes": len(message)}
        if fault == "drop_after_dot":
            self.server.log.write({**record, "event": fault, "t": time.time()})
            self.drop()
        if fault == "data_451":
            self.server.log.write({**record, "event": fault, "t": time.time()})
            self.reply("451 4.3.0 Temporary local problem, try again later")
            self.reset()
            return
        if self.policy.slow and self.policy.draw("slow", f"{','.join(self.recipients)}#{attempt}") < self.policy.slow:
            self.server.log.write({**record, "event": "slow", "t": time.time()})
            time.sleep(self.policy.slow_seconds)
        # The log line is written (and flushed) before the 250 leaves: nothing answered 250 is missing from it.
        self.server.log.write({**record, "event": ACCEPTED, "t": time.time()})
        self.reply(f"250 2.0.0 OK queued as {self.number}.{attempt}")
        self.reset()


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
        self.log = _Log(log_path, fsync)
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
            _Session(self, sock, number).run()
        except (_Dropped, OSError):
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fault server in the foreground until SIGTERM or Ctrl-C."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2526)
    p.add_argument("--log", required=True, help="JSON-lines file every accepted message and fault is appended to")
    p.add_argument("--fsync", action="store_true", help="fsync each log line (survives a machine crash)")
    p.add_argument("--seed", type=int, default=0)
    for name in ("connect_421", "data_451", "drop_before_dot", "drop_after_dot", "slow"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=0.0, help=f"share: {name}")
    p.add_argument("--slow-seconds", type=float, default=1.0)
    p.add_argument("--reject", action="append", default=[], help="an address refused with 550 (repeatable)")
    p.add_argument("--script", type=Path, help='JSON {"address": ["drop_before_dot", "ok", …]}')
    p.add_argument("--port-file", type=Path, help="write the listening port here once ready (with --port 0)")
    args = p.parse_args(argv)
    script = json.loads(args.script.read_text()) if args.script else {}
    policy = FaultPolicy(seed=args.seed, connect_421=args.connect_421, data_451=args.data_451,
                         drop_before_dot=args.drop_before_dot, drop_after_dot=args.drop_after_dot, slow=args.slow,
                         slow_seconds=args.slow_seconds, reject=frozenset(a.lower() for a in args.reject),
                         script={k.lower(): tuple(v) for k, v in script.items()})
    server = FaultServer(policy, host=args.host, port=args.port, log_path=args.log, fsync=args.fsync)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    if args.port_file:
        args.port_file.write_text(str(server.port))
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
