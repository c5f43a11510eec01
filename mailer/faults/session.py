"""One SMTP conversation of the fault server on a blocking socket: reads commands and DATA with hard size limits and
carries out the fault the policy chose for each connection and message.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from typing import TYPE_CHECKING

from mailer.faults.policy import ACCEPTED

if TYPE_CHECKING:  # the server imports this module to serve connections
    from mailer.faults.server import FaultServer


_MAX_LINE = 64 * 1024
_MAX_MESSAGE = 50 * 1024 * 1024
_RESET = struct.pack("ii", 1, 0)      # SO_LINGER on, 0 s: close() sends RST
_ADDRESS = re.compile(r"<([^>]*)>")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)


def _address(arg: str) -> str:
    """The address inside MAIL FROM:<…> / RCPT TO:<…>, lower-cased."""
    match = _ADDRESS.search(arg)
    return (match.group(1) if match else arg.partition(":")[2].split(" ")[0]).strip().lower()


def _unstuff(data: bytes) -> bytes:
    """Undo dot-stuffing of a DATA payload (without its terminator)."""
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\r\n..", b"\r\n.")


class Dropped(Exception):
    """The session ended the connection on purpose (a fault) or the client went away."""


class Session:
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
        raise Dropped

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Dropped
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
