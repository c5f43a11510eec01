"""Capture SMTP server and Maildir-style outbox used by the zero-config demo and the test suite."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, syntax

logger = logging.getLogger(__name__)

__all__ = ["CaptureServer", "Outbox", "OutboxEntry", "OutboxMessage", "main"]

# A key is "<time_ns>.<pid>.<counter>"; time_ns stays 19 digits until the year 2286. [0-9] rather than \d
# because \d also matches non-ASCII digits, which must never reach a file name.
_KEY_RE = re.compile(r"[0-9]{19}\.[0-9]{1,10}\.[0-9]{1,20}")
_STAMP_LEN = 19
_MSG_SUFFIX = ".eml"
# A whole message file name within "/"-joined directory listings.
_NAME_RE = re.compile(r"(?<![^/])(" + _KEY_RE.pattern + r")\.eml(?![^/])")
_ENV_SUFFIX = ".env.json"

# Header blocks bigger than this are truncated for summaries; real mail never gets near it.
_MAX_HEADER_BYTES = 256 * 1024
_HEADER_CHUNK = 8192
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_LINESEP_RE = re.compile(r"\r\n|\r|\n")

# Shared by every Outbox in the process so two instances on one directory never produce the same key;
# next() on itertools.count is atomic under the GIL, so handler threads need no lock.
_counter = itertools.count(1)

# Summaries only need headers; compat32 never raises on malformed input, decoding happens per header below.
_header_parser = HeaderParser(policy=policy.compat32)
_body_parser = BytesParser(policy=policy.default)

# Stale tmp/ files older than this are leftovers of a crashed writer (Maildir convention is 36 h).
_STALE_TMP_SECONDS = 3600


@dataclass(frozen=True)
class OutboxEntry:
    """Summary of one captured message, built from its headers only."""

    key: str
    received_at: datetime
    envelope_from: str
    recipients: tuple[str, ...]
    subject: str
    from_: str
    to: str
    size: int
    # "campaign:kind:sender" as Rapport writes it (mailbox providers group complaint statistics by it).
    feedback_id: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class OutboxMessage(OutboxEntry):
    """A captured message with its exact bytes and decoded parts for display."""

    raw: bytes
    headers: list[tuple[str, str]]
    html: str | None
    text: str | None


def _sort_key(key: str) -> tuple[int, int, int]:
    """Arrival order of a key; numeric because pid and counter are not zero-padded."""
    ts, pid, n = key.split(".")
    return int(ts), int(pid), int(n)


def _received_at(key: str) -> datetime:
    """UTC arrival time encoded in the key, to the microsecond."""
    ns = int(key.split(".", 1)[0])
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)


def _clean(value: str) -> str:
    """Replace lone surrogates (undecodable 8-bit input) so the value is safe to render and log."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _decode_header(name: str, value: str) -> str:
    """Decode RFC 2047 words and unfold a raw header value for display."""
    try:
        return str(policy.default.header_fetch_parse(name, value))
    except Exception:
        # The modern header parsers still have crash bugs on hostile input; fall back to the legacy decoder.
        pass
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return _LINESEP_RE.sub("", value)


def _read_header_block(f: Any) -> bytes:
    """Read a binary file only up to the blank line that ends the header section."""
    buf = b""
    while len(buf) < _MAX_HEADER_BYTES:
        chunk = f.read(_HEADER_CHUNK)
        if not chunk:
            break
        # Restart the search a little before the old end so a CRLFCRLF split across chunks is found.
        start = max(0, len(buf) - 3)
        buf += chunk
        if buf.startswith((b"\r\n", b"\n")):
            return b""
        match = _BLANK_LINE_RE.search(buf, start)
        if match:
            return buf[: match.start()]
    return buf[:_MAX_HEADER_BYTES]


def _parse_headers(block: bytes) -> Message:
    """Parse a header block; 8-bit headers are taken as UTF-8 (RFC 6532) since that is what SMTPUTF8 sends."""
    return _header_parser.parsestr(block.decode("utf-8", "replace"), headersonly=True)


def _part_text(msg: EmailMessage, subtype: str) -> str | None:
    """Decoded body part of the given text subtype, or None when the message has none."""
    try:
        part = msg.get_body(preferencelist=(subtype,))
    except Exception:
        logger.debug("Cannot locate text/%s body", subtype, exc_info=True)
        return None
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    try:
        content = part.get_content()
    except Exception:
        # Unknown or bogus charset: show the bytes as UTF-8 rather than nothing.
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    # The wire form is CRLF; Python strings and templates expect plain newlines.
    return content.replace("\r\n", "\n")


class Outbox:
    """A directory of captured messages.

    tmp/, new/ and cur/ form a real Maildir (messages are delivered to new/ and stay there), so mutt and
    friends can open it; envelopes live beside it in envelopes/ as <key>.env.json.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open the outbox at path, creating its directories as needed."""
        self.path = os.fspath(path)
        self._tmp = os.path.join(self.path, "tmp")
        self._new = os.path.join(self.path, "new")
        self._cur = os.path.join(self.path, "cur")
        self._env = os.path.join(self.path, "envelopes")
        for directory in (self._tmp, self._new, self._cur, self._env):
            os.makedirs(directory, exist_ok=True)

    def __repr__(self) -> str:
        return f"Outbox({self.path!r})"

    def store(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> str:
        """Store one message exactly as received and return its key."""
        key = f"{time.time_ns()}.{os.getpid()}.{next(_counter)}"
        envelope = json.dumps({"from": envelope_from, "to": list(recipients)}).encode("ascii")
        # Readers look for an envelope only after the message is visible in new/, and the message is
        # renamed there only after this write has finished, so the sidecar needs no tmp/ round trip.
        envelope_path = self._envelope_path(key)
        _write_new_file(envelope_path, envelope)
        tmp_path = os.path.join(self._tmp, key + _MSG_SUFFIX)
        try:
            _write_new_file(tmp_path, data)
            # Maildir delivery: the rename is atomic, so readers never see a partial message.
            os.rename(tmp_path, os.path.join(self._new, key + _MSG_SUFFIX))
        except BaseException:
            _unlink(tmp_path)
            _unlink(envelope_path)
            raise
        return key

    def _keys(self) -> list[str]:
        """Keys of all delivered messages, in directory order."""
        # One regex pass over the joined names runs at C speed; a Python loop over 100,000 names costs
        # several times the listdir itself. "/" cannot occur in a file name, so it is a safe separator.
        return _NAME_RE.findall("/".join(os.listdir(self._new)))

    def count(self) -> int:
        """Number of captured messages."""
        return len(self._keys())

    def list(self, *, limit: int = 50, before: str | None = None) -> list[OutboxEntry]:
        """Newest-first page of summaries; pass the last key of a page as before to get the next one."""
        if limit < 0:
            raise ValueError("limit must not be negative")
        keys = self._keys()
        if before is not None:
            if not isinstance(before, str) or not _KEY_RE.fullmatch(before):
                raise ValueError(f"invalid outbox key: {before!r}")
            # Keys are "<19-digit time_ns>.<pid>.<counter>", so plain string comparison against the
            # timestamp prefix orders by time; only keys sharing before's timestamp need a numeric look.
            stamp = before[:_STAMP_LEN]
            bound = _sort_key(before)
            same_stamp = filter(stamp.__le__, filter((stamp + "/").__gt__, keys))
            keys = [*filter(stamp.__gt__, keys), *(k for k in same_stamp if _sort_key(k) < bound)]
        # String order picks the newest timestamps without a Python-level key per file; then every key
        # sharing the oldest selected timestamp joins in, and the few candidates are ordered exactly.
        newest = heapq.nlargest(limit, keys)
        if not newest:
            return []
        candidates = filter(newest[-1][:_STAMP_LEN].__le__, keys)
        entries: list[OutboxEntry] = []
        for key in sorted(candidates, key=_sort_key, reverse=True)[:limit]:
            try:
                entries.append(self._entry(key))
            except FileNotFoundError:
                # Removed by clear() between the directory scan and the read.
                continue
        return entries

    def search(self, match: Callable[[OutboxEntry], bool], *, limit: int = 50, before: str | None = None,
               scan: int = 20_000) -> tuple[list[OutboxEntry], str | None]:
        """Newest-first entries (older than before) for which match() is true, reading at most `scan` summaries.

        Returns the entries and the key to pass as before to continue (None when every older message was read).
        """
        if before is not None and (not isinstance(before, str) or not _KEY_RE.fullmatch(before)):
            raise ValueError(f"invalid outbox key: {before!r}")
        keys = sorted(self._keys(), key=_sort_key, reverse=True)
        if before is not None:
            bound = _sort_key(before)
            keys = [k for k in keys if _sort_key(k) < bound]
        found: list[OutboxEntry] = []
        for i, key in enumerate(keys[:scan]):
            try:
                entry = self._entry(key)
            except FileNotFoundError:
                continue
            if match(entry):
                found.append(entry)
                if len(found) >= limit:
                    return found, key if i + 1 < len(keys) else None
        return found, keys[scan - 1] if len(keys) > scan else None

    def get(self, key: str) -> OutboxMessage:
        """Full message for key; KeyError if the key is malformed or unknown."""
        path = self._message_path(key)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise KeyError(key) from None
        header_msg = _parse_headers(_header_block_of(raw))
        headers = [(name, _decode_header(name, value)) for name, value in header_msg.items()]
        try:
            body = _body_parser.parsebytes(raw)
        except Exception:
            logger.warning("Cannot parse captured message %s", key, exc_info=True)
            html = text = None
        else:
            assert isinstance(body, EmailMessage)
            html = _part_text(body, "html")
            text = _part_text(body, "plain")
        envelope_from, recipients = self._envelope(key)
        return OutboxMessage(
            **self._summary_fields(key, header_msg, envelope_from, recipients, len(raw)),
            raw=raw,
            headers=headers,
            html=html,
            text=text,
        )

    def clear(self) -> None:
        """Delete every captured message and envelope (and stale temporary files)."""
        # Messages before envelopes, so a concurrent reader never sees a listed message lose its envelope.
        for directory in (self._new, self._cur, self._env):
            with os.scandir(directory) as it:
                paths = [entry.path for entry in it]
            for path in paths:
                _unlink(path)
        # Fresh tmp/ files belong to writers in flight; deleting them would make their rename fail.
        cutoff = time.time() - _STALE_TMP_SECONDS
        with os.scandir(self._tmp) as it:
            stale = [entry.path for entry in it if _mtime(entry) < cutoff]
        for path in stale:
            _unlink(path)

    def _message_path(self, key: str) -> str:
        """File path for a key, refusing anything that is not a well-formed key (path traversal)."""
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise KeyError(key)
        return os.path.join(self._new, key + _MSG_SUFFIX)

    def _envelope_path(self, key: str) -> str:
        """Sidecar path for an already validated key."""
        return os.path.join(self._env, key + _ENV_SUFFIX)

    def _entry(self, key: str) -> OutboxEntry:
        """Summary for key, reading only the header section of the message."""
        with open(self._message_path(key), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            block = _read_header_block(f)
        envelope_from, recipients = self._envelope(key)
        return OutboxEntry(**self._summary_fields(key, _parse_headers(block), envelope_from, recipients, size))

    def _envelope(self, key: str) -> tuple[str, tuple[str, ...]]:
        """Envelope sender and recipients from the sidecar; empty if it is missing or unreadable."""
        try:
            with open(self._envelope_path(key), "rb") as f:
                envelope = json.load(f)
            return _clean(str(envelope["from"])), tuple(_clean(str(r)) for r in envelope["to"])
        except (OSError, ValueError, KeyError, TypeError):
            # Messages dropped into new/ by other tools have no sidecar; they are still worth showing.
            return "", ()

    @staticmethod
    def _summary_fields(
        key: str, header_msg: Message, envelope_from: str, recipients: tuple[str, ...], size: int
    ) -> dict[str, Any]:
        """Constructor arguments shared by OutboxEntry and OutboxMessage."""

        def header(name: str) -> str:
            value = header_msg.get(name)
            return "" if value is None else _decode_header(name, str(value))

        return {
            "key": key,
            "received_at": _received_at(key),
            "envelope_from": envelope_from,
            "recipients": recipients,
            "subject": header("Subject"),
            "from_": header("From"),
            "to": header("To"),
            "size": size,
            "feedback_id": header("Feedback-ID"),
        }


def _write_new_file(path: str, data: bytes) -> None:
    """Create path (which must not exist) holding data."""
    # Raw fd I/O skips the buffered-file objects, measurably cheaper at 1,000 messages/s. No fsync: a
    # demo/test capture does not need to survive power loss, and fsync would cap throughput far lower.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)


def _header_block_of(raw: bytes) -> bytes:
    """Header section of an in-memory message."""
    if raw.startswith((b"\r\n", b"\n")):
        return b""
    match = _BLANK_LINE_RE.search(raw)
    return raw[: match.start()] if match else raw


def _unlink(path: str) -> None:
    """Remove a file that a concurrent clear() may already have removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _mtime(entry: os.DirEntry[str]) -> float:
    """Modification time of a directory entry, or +inf if it vanished meanwhile."""
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


class _Handler:
    """aiosmtpd handler that writes each message to the outbox and does nothing else."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store the message bytes untouched; parsing is left to readers so the server keeps up."""
        # With decode_data=False this is the CRLF wire form with only dot-stuffing undone.
        data: bytes = envelope.original_content
        try:
            # Synchronous on purpose: a local write is faster than a thread hop at benchmark rates.
            key = self._outbox.store(envelope.mail_from, envelope.rcpt_tos, data)
        except OSError:
            logger.exception("Cannot store captured message")
            return "451 4.3.0 Requested action aborted: cannot store message"
        logger.info(
            "Captured %s from %r to %d recipient(s), %d bytes",
            key,
            envelope.mail_from,
            len(envelope.rcpt_tos),
            len(data),
        )
        return f"250 2.0.0 OK: queued as {key}"


_DATA_END = b"\r\n.\r\n"
# Consumed data ending in one of these may be the first half of a terminator split across reads.
_DATA_END_PREFIXES = (b"\r", b"\r\n", b"\r\n.")


class _BulkDataSMTP(SMTP):
    """aiosmtpd session that reads DATA in bulk.

    Stock aiosmtpd awaits every line of DATA, which capped benchmarks at 300-400 messages/s of 50 KB;
    reading up to the terminator in buffer-sized chunks more than doubles that.
    """

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """Same replies as aiosmtpd's DATA (354, 250/451, 552, 500 line too long), with bulk reads."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            wire = await self._read_data()
        except asyncio.CancelledError:
            # aiosmtpd cancels the session task when the client disconnects mid-DATA.
            logger.debug("Connection lost during DATA")
            self._writer.close()
            raise
        except asyncio.IncompleteReadError:
            logger.debug("EOF during DATA")
            self._writer.close()
            return
        limit = self.data_size_limit
        if wire is None or (limit and len(wire) > limit):
            self._set_post_data_state()
            await self.push("552 Error: Too much mail data")
            return
        # RFC 5321 4.5.3.1.6: 998 octets + CRLF, plus one transparency dot; aiosmtpd's own limit.
        if max(map(len, wire.split(b"\r\n"))) > self.line_length_limit - 2:
            self._set_post_data_state()
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            return
        # RFC 5321 4.5.2: a leading dot on any line was added for transparency. replace() returns the
        # same object when nothing matches, so the common case costs one scan and no copy.
        if wire.startswith(b"."):
            wire = wire[1:]
        wire = wire.replace(b"\r\n.", b"\r\n")
        self.envelope.content = self.envelope.original_content = wire
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status if isinstance(status, str) else "250 OK")

    async def _read_data(self) -> bytes | None:
        """Wire bytes up to and including the CRLF before the lone dot; None if over the size limit."""
        reader = self._reader
        limit = self.data_size_limit
        parts: list[bytes] = []
        total = 0
        oversized = False
        # The virtual CRLF makes a lone dot on the very first line a terminator too.
        tail = b"\r\n"
        while True:
            if tail.endswith(_DATA_END_PREFIXES):
                # readuntil() cannot see bytes already consumed, so step over a possible split terminator.
                chunk = await reader.readexactly(1)
                done = (tail + chunk).endswith(_DATA_END)
            else:
                try:
                    chunk = await reader.readuntil(_DATA_END)
                    done = True
                except asyncio.LimitOverrunError as exc:
                    # Everything buffered so far, minus a few bytes that may begin the terminator.
                    chunk = await reader.readexactly(exc.consumed)
                    done = False
            total += len(chunk)
            if not oversized:
                parts.append(chunk)
                # Stop buffering an oversized message at once; keep reading to stay in sync with the client.
                if limit and total > limit + len(b".\r\n"):
                    oversized = True
                    parts.clear()
            tail = (tail + chunk[-4:])[-4:]
            if done:
                return None if oversized else b"".join(parts)[: -len(b".\r\n")]


class _Controller(Controller):
    """aiosmtpd Controller that serves on a socket bound beforehand, with bulk DATA reads."""

    def __init__(self, handler: _Handler, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def factory(self) -> SMTP:
        return _BulkDataSMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        # Binding in the caller's thread makes port=0 race-free and surfaces "address in use" at once,
        # instead of after Controller's ready timeout.
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


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
        self._controller: _Controller | None = None

    @property
    def port(self) -> int:
        """Port actually listened on once started (the requested port before that)."""
        return self._port

    def start(self) -> None:
        """Serve in a background thread; returns once the server accepts connections."""
        if self._controller is not None:
            raise RuntimeError("capture server already running")
        sock = _bind(self.host, self._port)
        controller = _Controller(
            _Handler(self.outbox),
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


def main(argv: list[str] | None = None) -> int:
    """Run the capture server in the foreground until SIGINT/SIGTERM, logging one line per message."""
    parser = argparse.ArgumentParser(prog="python -m mailer.capture", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=2525, help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--outbox", default="instance/outbox", help="outbox directory (default: %(default)s)")
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=10_000_000,
        help="reject larger messages with 552 (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiosmtpd logs several INFO lines per connection; keep the promised one line per message.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    try:
        outbox = Outbox(args.outbox)
    except OSError as exc:
        logger.error("Cannot open outbox %s: %s", args.outbox, exc)
        return 1
    server = CaptureServer(outbox, host=args.host, port=args.port, max_message_size=args.max_message_size)

    stop = threading.Event()
    received: list[int] = []

    def request_stop(signum: int, frame: object) -> None:
        # Only flag it: logging here could contend for a handler lock the interrupted code holds.
        received.append(signum)
        stop.set()

    # Installed before start() so a signal that arrives early still means a clean exit.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except OSError as exc:
            logger.error("Cannot listen on %s:%d: %s", args.host, args.port, exc)
            return 1
        stop.wait()
        logger.info("Received %s, shutting down", signal.Signals(received[0]).name)
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
