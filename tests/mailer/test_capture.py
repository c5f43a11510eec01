"""Tests for the capture SMTP server and its outbox, over real SMTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import builtins
import io
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailer.capture import CaptureServer, Outbox, OutboxEntry, OutboxMessage
from mailer.capture import outbox as outbox_store
from mailer.capture import smtp as capture_smtp

ROOT = Path(__file__).resolve().parents[2]
SENDER = "bounce@example.com"
RECIPIENT = "ana@example.org"


class RecordingSMTP(smtplib.SMTP):
    """smtplib client that keeps every byte it sends, to compare storage with the wire."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[bytes] = []
        super().__init__(*args, **kwargs)

    def send(self, s: bytes | str) -> None:
        self.sent.append(s.encode(self.command_encoding) if isinstance(s, str) else s)
        super().send(s)

    def last_payload(self) -> bytes:
        """Bytes sent after the last DATA command, dot-stuffed and terminated."""
        index = max(i for i, chunk in enumerate(self.sent) if chunk.lower() == b"data\r\n")
        payload = self.sent[index + 1]
        assert payload.endswith(b"\r\n.\r\n")
        return payload

    def last_data(self) -> bytes:
        """Message bytes of the last DATA as the server must store them: terminator and dot-stuffing undone."""
        payload = self.last_payload()
        lines = re.split(rb"(?<=\r\n)", payload[: -len(b".\r\n")])
        return b"".join(line[1:] if line.startswith(b".") else line for line in lines)


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox")


@pytest.fixture
def server(outbox: Outbox) -> Iterator[CaptureServer]:
    with CaptureServer(outbox, port=0) as srv:
        yield srv


@pytest.fixture
def client(server: CaptureServer) -> Iterator[RecordingSMTP]:
    with RecordingSMTP("127.0.0.1", server.port, timeout=10) as smtp:
        yield smtp


def only(outbox: Outbox) -> OutboxMessage:
    """The single captured message."""
    entries = outbox.list()
    assert len(entries) == 1
    return outbox.get(entries[0].key)


def newsletter() -> EmailMessage:
    """A typical Rapport message: encoded display names and subject, QP multipart/alternative."""
    msg = EmailMessage()
    msg["Subject"] = "Grüße aus Köln — 10 % Rabatt für Stammkunden"
    msg["From"] = "Zoë Rapport <news@example.com>"
    msg["To"] = "Ana Núñez <ana@example.org>"
    msg["Message-ID"] = "<abc.123@example.com>"
    msg.set_content(TEXT, cte="quoted-printable")
    msg.add_alternative(HTML, subtype="html", cte="quoted-printable")
    return msg


TEXT = (
    "Hallo Ana,\n\n"
    "schön, dass du dabei bist. " + "Ein langer Absatz über Kaffee und Kuchen. " * 6 + "\n"
    ".Diese Zeile beginnt mit einem Punkt.\n"
    ".\n"
    "..zwei Punkte\n"
    "Ende mit Leerzeichen   \n"
)
HTML = (
    '<!doctype html><html><body style="font-family: sans-serif">'
    "<p>Grüße, Zoë!</p>" + "<p>Ein langer Absatz über Kaffee und Kuchen.</p>" * 8 + "\n"
    ".<p>Punkt am Zeilenanfang</p>\n"
    "</body></html>\n"
)


# --- Server lifecycle -----------------------------------------------------------------------------


def test_port_zero_picks_a_free_port_and_stop_releases_it(outbox: Outbox) -> None:
    srv = CaptureServer(outbox, port=0)
    srv.start()
    try:
        port = srv.port
        assert port != 0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert sock.recv(1024).startswith(b"220 ")
        with pytest.raises(RuntimeError):
            srv.start()
    finally:
        srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # The same port can be taken again right away.
    with CaptureServer(outbox, port=port) as again, smtplib.SMTP("127.0.0.1", again.port, timeout=10) as smtp:
        assert smtp.noop()[0] == 250


def test_start_fails_at_once_when_the_port_is_taken(outbox: Outbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        srv = CaptureServer(outbox, port=taken.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(OSError):
            srv.start()
        assert time.monotonic() - started < 2


# --- Round trips ----------------------------------------------------------------------------------


def test_rfc2047_headers_and_envelope_are_decoded(outbox: Outbox, client: RecordingSMTP) -> None:
    before = datetime.now(UTC)
    client.send_message(newsletter(), from_addr=SENDER, to_addrs=[RECIPIENT, "cc@example.net"])
    after = datetime.now(UTC)

    assert outbox.count() == 1
    [entry] = outbox.list()
    assert type(entry) is OutboxEntry
    assert entry.subject == "Grüße aus Köln — 10 % Rabatt für Stammkunden"
    assert entry.from_ == "Zoë Rapport <news@example.com>"
    assert entry.to == "Ana Núñez <ana@example.org>"
    assert entry.envelope_from == SENDER
    assert entry.recipients == (RECIPIENT, "cc@example.net")
    assert entry.received_at.tzinfo is UTC
    assert before.replace(microsecond=0) <= entry.received_at <= after
    raw = client.last_data()
    assert entry.size == len(raw)
    assert b"Subject: =?utf-8?" in raw  # the subject really travelled RFC 2047-encoded


def test_multipart_alternative_quoted_printable(outbox: Outbox, client: RecordingSMTP) -> None:
    client.send_message(newsletter(), from_addr=SENDER, to_addrs=[RECIPIENT])

    msg = only(outbox)
    assert msg.raw == client.last_data()
    assert b"\r\n..\r\n" in client.last_payload()  # dot-stuffed on the wire, so unstuffing is exercised
    assert b"quoted-printable" in msg.raw and b"=\r\n" in msg.raw  # soft line breaks on the wire
    assert msg.text == TEXT
    assert msg.html == HTML
    names = [name for name, _ in msg.headers]
    assert names[:4] == ["Subject", "From", "To", "Message-ID"]
    assert ("Subject", "Grüße aus Köln — 10 % Rabatt für Stammkunden") in msg.headers
    assert ("Content-Type", 'multipart/alternative; boundary="' + msg_boundary(msg.raw) + '"') in msg.headers


def msg_boundary(raw: bytes) -> str:
    match = re.search(rb'boundary="([^"]+)"', raw)
    assert match
    return match.group(1).decode()


def test_smtputf8_eight_bit_message(outbox: Outbox, client: RecordingSMTP) -> None:
    msg = EmailMessage(policy=policy.SMTPUTF8)
    msg["Subject"] = "Grüße, Zoë — 8 bit"
    msg["From"] = "Zoë <zoë@exämple.test>"
    msg["To"] = "Ana <ana@exämple.test>"
    body = "Grüße aus Köln! Ünïcödé body, ∑ and 😀.\n.Punkt\n"
    msg.set_content(body, cte="8bit")
    client.send_message(msg)

    mail_cmd = next(chunk for chunk in client.sent if chunk.lower().startswith(b"mail from:"))
    assert b"SMTPUTF8" in mail_cmd.upper()
    stored = only(outbox)
    assert stored.raw == client.last_data()
    assert "Grüße".encode() in stored.raw  # raw UTF-8 header and body, not encoded words
    assert stored.subject == "Grüße, Zoë — 8 bit"
    assert stored.from_ == "Zoë <zoë@exämple.test>"
    assert stored.envelope_from == "zoë@exämple.test"
    assert stored.recipients == ("ana@exämple.test",)
    assert stored.text == body
    assert stored.html is None


def test_raw_bytes_are_exactly_what_was_on_the_wire(outbox: Outbox, client: RecordingSMTP) -> None:
    # LF-only text, dot lines, trailing whitespace, no final newline: smtplib turns this into CRLF and
    # dot-stuffs it; the server must undo exactly the stuffing and nothing else.
    data = (
        "From: a@example.com\nTo: b@example.com\nSubject: exact\n\n"
        ".\n..\n. leading dot\ntrailing space \t\n\n\nlast line without newline"
    )
    client.sendmail(SENDER, [RECIPIENT], data)

    stored = only(outbox)
    assert stored.raw == client.last_data()
    assert stored.raw == data.replace("\n", "\r\n").encode() + b"\r\n"
    assert stored.text == ".\n..\n. leading dot\ntrailing space \t\n\n\nlast line without newline\n"


@pytest.mark.parametrize(
    "data",
    [
        # smtplib sends bytes without fixing line endings; a capture server must not "repair" them either.
        b"Subject: lf\r\n\r\nunix\nline\rold mac\r\n",
        # Dot-stuffing applies to the very first line too.
        b".first line starts with a dot\r\n.\r\n",
        b"\r\n",
    ],
)
def test_unusual_bytes_are_kept_as_sent(outbox: Outbox, client: RecordingSMTP, data: bytes) -> None:
    client.sendmail(SENDER, [RECIPIENT], data)
    assert only(outbox).raw == data


@pytest.mark.parametrize("canonicalization", [b"relaxed", b"simple"])
def test_dkim_signature_verifies_after_storage(outbox: Outbox, client: RecordingSMTP, canonicalization: bytes) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    message = newsletter().as_bytes(policy=policy.SMTP)
    signature = dkim.sign(
        message,
        b"rapport",
        b"example.com",
        private_pem,
        canonicalize=(canonicalization, canonicalization),
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    client.sendmail(SENDER, [RECIPIENT], signature + message)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"rapport._domainkey.example.com."
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)

    raw = only(outbox).raw
    assert raw == signature + message
    assert dkim.verify(raw, dnsfunc=dns)


# --- Listing and lookup ---------------------------------------------------------------------------


def test_list_is_newest_first_with_keyset_pagination(outbox: Outbox, client: RecordingSMTP) -> None:
    for i in range(7):
        client.sendmail(SENDER, [RECIPIENT], f"Subject: Message {i}\r\n\r\nbody {i}\r\n".encode())

    assert outbox.count() == 7
    pages: list[list[str]] = []
    before: str | None = None
    while page := outbox.list(limit=3, before=before):
        pages.append([entry.subject for entry in page])
        before = page[-1].key
    assert pages == [
        ["Message 6", "Message 5", "Message 4"],
        ["Message 3", "Message 2", "Message 1"],
        ["Message 0"],
    ]
    everything = outbox.list()
    assert [e.subject for e in everything] == [f"Message {i}" for i in reversed(range(7))]
    assert [e.received_at for e in everything] == sorted((e.received_at for e in everything), reverse=True)
    assert outbox.list(limit=0) == []
    with pytest.raises(ValueError):
        outbox.list(before="../x")


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "../new/1700000000000000000.1.1",
        "/etc/passwd",
        "",
        "1.2.3",
        "1700000000000000000.1.1.eml",
        "1700000000000000000.1.1\n",
        "1700000000000000000.1.1/../../secret",
        "１７００００００００００００００００００.1.1",  # full-width digits match \d but not [0-9]
    ],
)
def test_get_rejects_malformed_keys(outbox: Outbox, key: str) -> None:
    # Give traversal something to find, so only key validation stands between it and the file.
    root = Path(outbox.path)
    (root / "secret.eml").write_bytes(b"Subject: secret\r\n\r\n")
    (root / "new" / "1700000000000000000.1.1").mkdir()
    (root / "new" / "1700000000000000000.1.1\n.eml").write_bytes(b"Subject: secret\r\n\r\n")
    with pytest.raises(KeyError):
        outbox.get(key)


def test_get_unknown_key(outbox: Outbox) -> None:
    key = outbox.store(SENDER, [RECIPIENT], b"Subject: x\r\n\r\nx\r\n")
    assert outbox.get(key).subject == "x"
    with pytest.raises(KeyError):
        outbox.get("1700000000000000000.1.1")


def test_list_reads_only_headers_of_one_page(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"x" * 998 + b"\r\n"
    for i in range(30):
        outbox.store(SENDER, [RECIPIENT], f"Subject: big {i}\r\n\r\n".encode() + body * 1000)
    opened: list[str] = []
    read_bytes = 0

    class CountingFile(io.BufferedReader):
        def read(self, size: int | None = -1) -> bytes:
            nonlocal read_bytes
            chunk = super().read(size)
            read_bytes += len(chunk)
            return chunk

    real_open = builtins.open

    def counting_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fspath(path))
        f = real_open(path, mode, *args, **kwargs)
        return CountingFile(f.detach()) if path.endswith(".eml") else f

    monkeypatch.setattr(outbox_store, "open", counting_open, raising=False)
    page = outbox.list(limit=5)

    assert [e.subject for e in page] == [f"big {i}" for i in (29, 28, 27, 26, 25)]
    assert page[0].size == len(b"Subject: big 29\r\n\r\n") + 1_000_000
    assert len([p for p in opened if p.endswith(".eml")]) == 5
    assert read_bytes < 5 * 16 * 1024  # a chunk or two per message, not 1 MB each


def test_foreign_and_broken_files_are_tolerated(outbox: Outbox) -> None:
    good = outbox.store(SENDER, [RECIPIENT], b"Subject: good\r\n\r\nok\r\n")
    new = Path(outbox.path, "new")
    (new / ".DS_Store").write_bytes(b"\x00")
    (new / "notes.eml").write_bytes(b"Subject: not ours\r\n\r\n")
    # Valid names without an envelope sidecar, as another tool would drop them in.
    (new / "1700000000000000000.1.1.eml").write_bytes(os.urandom(2048))
    (new / "1700000000000000000.1.2.eml").write_bytes(b"no blank line, no headers at all")
    (new / "1700000000000000000.1.3.eml").write_bytes(
        b"Subject: =?bogus-charset?q?=FF?= \xff\xfe\r\nContent-Type: text/plain; charset=x-nope\r\n\r\n\xff ok\r\n"
    )

    entries = outbox.list()
    assert outbox.count() == 4
    assert [e.key for e in entries][0] == good
    assert {e.envelope_from for e in entries[1:]} == {""}
    assert all(e.recipients == () for e in entries[1:])
    for entry in entries:
        outbox.get(entry.key)  # must not raise
    odd = outbox.get("1700000000000000000.1.3")
    assert odd.text is not None and odd.text.endswith("\ufffd ok\n")


def test_clear_removes_messages_but_not_writes_in_flight(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.store(SENDER, [RECIPIENT], b"Subject: x\r\n\r\nx\r\n")
    in_flight = Path(outbox.path, "tmp", "1.2.3.eml")
    in_flight.write_bytes(b"half a mess")
    stale = Path(outbox.path, "tmp", "4.5.6.eml")
    stale.write_bytes(b"crashed writer")
    os.utime(stale, (time.time() - 2 * 86400,) * 2)

    outbox.clear()

    assert outbox.count() == 0
    assert outbox.list() == []
    assert os.listdir(Path(outbox.path, "envelopes")) == []
    assert in_flight.exists() and not stale.exists()
    key = outbox.store(SENDER, [RECIPIENT], b"Subject: again\r\n\r\n")
    assert [e.key for e in outbox.list()] == [key]


def test_concurrent_writers_get_unique_keys(outbox: Outbox) -> None:
    keys: list[str] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        mine = [outbox.store(SENDER, [RECIPIENT], f"Subject: t{n}\r\n\r\n".encode()) for _ in range(50)]
        with lock:
            keys.extend(mine)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    script = (
        "import sys; from mailer.capture import Outbox; o = Outbox(sys.argv[1])\n"
        "for _ in range(50): o.store('a@example.com', ['b@example.com'], b'Subject: p\\r\\n\\r\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, outbox.path], env=env) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]

    assert len(set(keys)) == 400
    assert outbox.count() == 550
    assert len({e.key for e in outbox.list(limit=1000)}) == 550
    assert os.listdir(Path(outbox.path, "tmp")) == []


# --- Limits and hostile clients -------------------------------------------------------------------


@pytest.fixture
def small_server(outbox: Outbox) -> Iterator[CaptureServer]:
    with CaptureServer(outbox, port=0, max_message_size=2_000) as srv:
        yield srv


def test_oversized_message_is_rejected_with_552(outbox: Outbox, small_server: CaptureServer) -> None:
    big = b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 100
    with smtplib.SMTP("127.0.0.1", small_server.port, timeout=10) as smtp:
        # smtplib declares SIZE=, so the server refuses at MAIL FROM.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail(SENDER, [RECIPIENT], big)
        assert refused.value.smtp_code == 552
        # Without SIZE the limit is enforced on the data itself.
        smtp.rset()
        assert smtp.mail(SENDER)[0] == 250
        assert smtp.rcpt(RECIPIENT)[0] == 250
        assert smtp.data(big)[0] == 552
        # The session stays usable afterwards.
        smtp.sendmail(SENDER, [RECIPIENT], b"Subject: small\r\n\r\nfits\r\n")
    assert [e.subject for e in outbox.list()] == ["small"]


def test_exactly_max_size_is_accepted(outbox: Outbox, small_server: CaptureServer) -> None:
    head = b"Subject: edge\r\n\r\n"
    lines = (b"z" * 98 + b"\r\n") * 19
    data = head + lines + b"z" * (2_000 - len(head) - len(lines) - 2) + b"\r\n"
    assert len(data) == 2_000
    with smtplib.SMTP("127.0.0.1", small_server.port, timeout=10) as smtp:
        smtp.sendmail(SENDER, [RECIPIENT], data)
    assert only(outbox).raw == data


def _session(port: int) -> tuple[socket.socket, io.BufferedReader]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220")
    return sock, reader


def _reply(sock: socket.socket, reader: io.BufferedReader, line: bytes) -> bytes:
    """Send one command and return the final line of the reply."""
    sock.sendall(line)
    while (reply := reader.readline())[3:4] == b"-":
        pass
    return reply


def test_garbage_and_dropped_clients_do_not_hurt_the_server(outbox: Outbox, server: CaptureServer) -> None:
    sock, reader = _session(server.port)
    with sock, reader:
        assert _reply(sock, reader, b"\x00\xff\xfe\x80 garbage\r\n")[:1] == b"5"
        assert _reply(sock, reader, b"MAIL FROM:<a@example.com>\r\n")[:3] == b"503"
        assert _reply(sock, reader, b"EHLO client.test\r\n")[:3] == b"250"
        assert _reply(sock, reader, b"MAIL FROM:<<<\xff>>>\r\n")[:1] == b"5"
        assert _reply(sock, reader, b"X" * 5000 + b"\r\n")[:3] == b"500"
        assert _reply(sock, reader, b"DATA\r\n")[:3] == b"503"
        # An over-long line inside DATA is refused like stock aiosmtpd does (RFC 5321 4.5.3.1.6).
        assert _reply(sock, reader, b"MAIL FROM:<a@example.com>\r\n")[:3] == b"250"
        assert _reply(sock, reader, b"RCPT TO:<b@example.com>\r\n")[:3] == b"250"
        assert _reply(sock, reader, b"DATA\r\n")[:3] == b"354"
        assert _reply(sock, reader, b"Subject: long\r\n\r\n" + b"w" * 3000 + b"\r\n.\r\n")[:3] == b"500"

    # Clients that vanish mid-DATA, with or without a partial terminator in flight.
    for tail in (b"half a body", b"body\r\n", b"body\r\n.", b"body\r\n.\r"):
        sock, reader = _session(server.port)
        with sock, reader:
            _reply(sock, reader, b"EHLO client.test\r\n")
            _reply(sock, reader, b"MAIL FROM:<a@example.com>\r\n")
            _reply(sock, reader, b"RCPT TO:<b@example.com>\r\n")
            assert _reply(sock, reader, b"DATA\r\n")[:3] == b"354"
            sock.sendall(b"Subject: lost\r\n\r\n" + tail)

    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.sendmail(SENDER, [RECIPIENT], b"Subject: still alive\r\n\r\nyes\r\n")
    assert [e.subject for e in outbox.list()] == ["still alive"]


def test_data_reply_and_pipelined_commands_after_terminator(outbox: Outbox, server: CaptureServer) -> None:
    sock, reader = _session(server.port)
    with sock, reader:
        _reply(sock, reader, b"EHLO client.test\r\n")
        _reply(sock, reader, b"MAIL FROM:<a@example.com>\r\n")
        _reply(sock, reader, b"RCPT TO:<b@example.com>\r\n")
        _reply(sock, reader, b"DATA\r\n")
        # Everything after the terminator arrives in the same packet and must still be read as commands.
        reply = _reply(sock, reader, b"Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\n")
        assert reply.startswith(b"250 ") and b"queued as" in reply
        assert reader.readline().startswith(b"250")  # the NOOP
        assert _reply(sock, reader, b"QUIT\r\n").startswith(b"221")
    [entry] = outbox.list()
    assert entry.key.encode() in reply
    assert outbox.get(entry.key).raw == b"Subject: p\r\n\r\nbody\r\n"


# --- The DATA reader, byte by byte ----------------------------------------------------------------

# Bytes rich in the characters that matter to the terminator and to transparency.
_SPICY = bytes.maketrans(b"\x00\x01\x02\x03", b".\r\n.")
_line = st.binary(max_size=12).map(lambda b: b.translate(_SPICY)).filter(lambda line: b"\r\n" not in line)


def _stuff(lines: list[bytes]) -> bytes:
    """Wire form of the message lines (RFC 5321 4.5.2 transparency)."""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


@given(lines=st.lists(_line, max_size=12), cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
@settings(max_examples=300, deadline=None)
def test_data_reader_finds_the_terminator_however_the_stream_is_cut(lines: list[bytes], cuts: list[int]) -> None:
    wire = _stuff(lines)
    stream = wire + b".\r\n" + b"NOOP\r\n"
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    async def run() -> tuple[bytes | None, bytes]:
        session = capture_smtp._BulkDataSMTP(object(), hostname="test", loop=asyncio.get_running_loop())
        session.data_size_limit = 0
        # What aiosmtpd hands each session on connect.
        session._reader = asyncio.StreamReader(limit=session.line_length_limit)

        async def feed() -> None:
            for chunk in chunks:
                session._reader.feed_data(chunk)
                await asyncio.sleep(0)  # let the reader consume each piece on its own
            # A missed terminator then fails with IncompleteReadError instead of hanging.
            session._reader.feed_eof()

        feeder = asyncio.create_task(feed())
        data = await session._read_data()
        await feeder
        return data, await session._reader.read()

    data, rest = asyncio.run(run())
    assert data == wire
    assert rest == b"NOOP\r\n"


_body_line = st.tuples(
    st.sampled_from([b"", b".", b"..", b"From "]),
    st.binary(max_size=80).map(lambda b: b.translate(_SPICY)),
    st.sampled_from([b"\r\n", b"\n", b"\r", b""]),
).map(b"".join)


@given(
    head=st.sampled_from([b"Subject: fuzz\r\n\r\n", b""]),
    body=st.lists(_body_line, min_size=1, max_size=40).map(b"".join),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_body_round_trips_byte_for_byte(tmp_path: Path, head: bytes, body: bytes) -> None:
    data = head + body
    assume(max(map(len, data.split(b"\r\n"))) <= 998)
    outbox = Outbox(tmp_path / f"o{time.time_ns()}")
    with CaptureServer(outbox, port=0) as srv, RecordingSMTP("127.0.0.1", srv.port, timeout=10) as smtp:
        smtp.sendmail(SENDER, [RECIPIENT], data)
    stored = only(outbox).raw
    # Lines are CRLF-delimited (RFC 5321), so storage must equal the wire with its dot-stuffing undone...
    assert stored == smtp.last_data()
    # ...which is the original whenever smtplib's LF-based stuffing agrees with that, i.e. no bare LF.
    if not re.search(rb"(?<!\r)\n", data):
        assert stored == data + (b"" if data.endswith(b"\r\n") else b"\r\n")


# --- Command line ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"capture server did not open port {port} within {timeout}s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_main_runs_in_foreground_until_signalled(tmp_path: Path, signum: signal.Signals) -> None:
    port = _free_port()
    box = tmp_path / "outbox"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer.capture", "--host", "127.0.0.1", "--port", str(port), "--outbox", box],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(port, proc)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail(SENDER, [RECIPIENT], b"Subject: from main\r\n\r\nhi\r\n")
        assert [e.subject for e in Outbox(box).list()] == ["from main"]
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    log = err.decode()
    assert len([line for line in log.splitlines() if "Captured" in line]) == 1
    assert "Traceback" not in log


def test_main_reports_a_taken_port(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        result = subprocess.run(
            [sys.executable, "-m", "mailer.capture", "--port", str(taken.getsockname()[1])],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert b"Cannot listen" in result.stderr


def test_search_filters_newest_first_pages_and_stops_at_the_scan_limit(outbox: Outbox) -> None:
    for i in range(10):
        outbox.store(SENDER, [f"r{i}@example.org"],
                     f"Subject: {'even' if i % 2 == 0 else 'odd'} {i}\r\nFeedback-ID: {i % 3}:nurture:rapport\r\n"
                     f"\r\nbody\r\n".encode())
    even, more = outbox.search(lambda e: e.subject.startswith("even"), limit=3)
    assert [e.subject for e in even] == ["even 8", "even 6", "even 4"] and more is not None
    rest, more = outbox.search(lambda e: e.subject.startswith("even"), limit=3, before=more)
    assert [e.subject for e in rest] == ["even 2", "even 0"] and more is None
    assert [e.feedback_id for e in even] == ["2:nurture:rapport", "0:nurture:rapport", "1:nurture:rapport"]
    # Only the newest `scan` messages are read; the key to continue from comes back.
    found, more = outbox.search(lambda e: e.recipients == ("r0@example.org",), scan=4)
    assert found == [] and more is not None
    found, more = outbox.search(lambda e: e.recipients == ("r0@example.org",), before=more)
    assert [e.subject for e in found] == ["even 0"] and more is None
    with pytest.raises(ValueError):
        outbox.search(lambda e: True, before="../x")
