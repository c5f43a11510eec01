"""SMTPPool, RelayConfig and RelayRouter against real aiosmtpd servers on 127.0.0.1."""

import asyncio
import datetime
import ipaddress
import logging
import os
import pickle
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from mailer.ratelimit import RateLimited
from mailer.transport import (
    DeliveryError,
    PermanentFailure,
    RelayConfig,
    RelayRouter,
    SendResult,
    SMTPPool,
    TemporaryFailure,
)
from mailer.transport.session import data_payload

SENDER = "news@rapport.test"

# Lines that trip up naive senders: dots at line starts, a lone dot, quoted-printable soft breaks, 8-bit text,
# bytes that are not UTF-8 at all, and a line at the 998-character limit.
TRICKY = b"\r\n".join(
    [
        b"From: Rapport <news@rapport.test>",
        b"To: reader@example.com",
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit",
        b"",
        b".starts with a dot",
        b"..starts with two dots",
        b".",
        b"",
        b"=2E quoted-printable line that is long enough to need a soft line break right here at the =",
        b"end, and an encoded dot =2E continues on the next line =C3=A9=C3=A8",
        "Grüße aus Köln — ünïcödé in eight bits".encode(),
        b"not utf-8 at all: \xff\xfe\x80",
        b"x" * 998,
        b"last line",
        b"",
    ]
)


def message(body: str = "hello", subject: str = "test") -> bytes:
    """A small CRLF message."""
    return f"From: {SENDER}\r\nTo: reader@example.com\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


class Recorder:
    """aiosmtpd handler that records connections and messages and can be told to misbehave."""

    def __init__(self) -> None:
        self.protocols: list[Any] = []  # one per TCP connection
        self.messages: list[dict[str, Any]] = []
        self.quits = 0
        self.rsets = 0
        self.mail_replies: list[str] = []  # queued replies for the next MAIL commands
        self.drop_after_data = False
        self.controller: Controller | None = None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not any(p is server for p in self.protocols):
            self.protocols.append(server)
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("busy@"):
            return "450 4.2.1 Mailbox busy, try later"
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if b"REJECT-ME" in envelope.content:
            return "550 5.7.1 Content rejected"
        if b"DEFER-ME" in envelope.content:
            return "451 4.3.0 Try again later"
        if b"CLOSE-ME" in envelope.content:
            return "421 4.3.2 Shutting down"
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "options": list(envelope.mail_options),
                "content": envelope.content,
                "tls": session.ssl is not None,
                "auth": session.auth_data,
                "helo": session.host_name,
                "protocol": server,
            }
        )
        if self.drop_after_data:
            server.transport.close()
        return "250 2.0.0 Queued as 42"

    async def handle_RSET(self, server, session, envelope):
        self.rsets += 1
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        return "221 Bye"

    def drop_connections(self) -> None:
        """Close every server-side connection, as a relay's idle timeout would, and wait until closed."""

        async def close_all() -> None:
            for protocol in self.protocols:
                if protocol.transport is not None:
                    protocol.transport.close()
            # connection_lost runs on a later loop iteration; yield until it has for each connection.
            while any(p.transport is not None for p in self.protocols):
                await asyncio.sleep(0)

        assert self.controller is not None
        asyncio.run_coroutine_threadsafe(close_all(), self.controller.loop).result(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Start = Callable[..., tuple[Recorder, int]]


@pytest.fixture
def start_server() -> Iterator[Start]:
    """Start aiosmtpd controllers with a Recorder; all are stopped after the test."""
    controllers: list[Controller] = []

    def start(**kwargs: Any) -> tuple[Recorder, int]:
        handler = Recorder()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        handler.controller = controller
        return handler, port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def server(start_server: Start) -> tuple[Recorder, int]:
    return start_server()


def relay(port: int, **kwargs: Any) -> RelayConfig:
    options: dict[str, Any] = {"security": "none", "timeout": 10.0, "local_hostname": "client.rapport.test"}
    options.update(kwargs)
    return RelayConfig("default", "127.0.0.1", port, **options)


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def server_tls(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert_files)
    return context


# ---------------------------------------------------------------- delivery


def test_delivers_bytes_intact(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        result = pool.send(SENDER, ["reader@example.com"], TRICKY)
    assert result == SendResult(250, "2.0.0 Queued as 42")
    [got] = handler.messages
    assert got["content"] == TRICKY
    assert got["from"] == SENDER
    assert got["to"] == ["reader@example.com"]
    assert "BODY=8BITMIME" in got["options"]
    assert f"SIZE={len(data_payload(TRICKY))}" in got["options"]


@pytest.mark.parametrize(
    ("raw", "delivered"),
    [
        (b"Subject: x\n\nbare\nnewlines\n", b"Subject: x\r\n\r\nbare\r\nnewlines\r\n"),
        (b"Subject: x\r\n\r\nmixed\rendings\n.dot\r\n", b"Subject: x\r\n\r\nmixed\r\nendings\r\n.dot\r\n"),
        (b"Subject: x\r\n\r\nno final newline", b"Subject: x\r\n\r\nno final newline\r\n"),
        # As many CRs as LFs, but paired the wrong way round.
        (b"Subject: x\r\n\r\nLF then CR\n\rhere\r\n", b"Subject: x\r\n\r\nLF then CR\r\n\r\nhere\r\n"),
        (b"Subject: x\r\n\r\nends in a dot\r\n.", b"Subject: x\r\n\r\nends in a dot\r\n.\r\n"),
        (b".Subject-less message starting with a dot\r\n", b".Subject-less message starting with a dot\r\n"),
    ],
)
def test_normalises_line_endings_and_dot_stuffs(
    server: tuple[Recorder, int], raw: bytes, delivered: bytes
) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        pool.send(SENDER, ["reader@example.com"], raw)
    assert handler.messages[0]["content"] == delivered
    assert "BODY=8BITMIME" not in handler.messages[0]["options"]


def test_data_payload_fast_path_leaves_clean_messages_alone() -> None:
    assert data_payload(b"a\r\nb\r\n") == b"a\r\nb\r\n.\r\n"
    assert data_payload(b"") == b".\r\n"
    assert data_payload(b".\r\n.\r\n") == b"..\r\n..\r\n.\r\n"


def _payload_by_the_book(message: bytes) -> bytes:
    """RFC 5321 4.5.2 spelled out slowly: every CR, LF or CRLF a line end, a leading dot doubled, CRLF.CRLF."""
    lines = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"x", b"\r\n.", b"\r\r\n", b" "]), max_size=30))
def test_data_payload_matches_the_rfc_for_any_mix_of_line_ends_and_dots(parts: list[bytes]) -> None:
    message = b"".join(parts)
    assert data_payload(message) == _payload_by_the_book(message)


def test_a_cr_and_an_lf_apart_are_two_line_ends_not_one() -> None:
    # CR and LF each alone, in CRLF order but with a byte between: the fast check must not take them for a pair.
    assert data_payload(b"a\rb\nc\r\n") == b"a\r\nb\r\nc\r\n.\r\n"
    assert data_payload(b"a\r\r\n\n") == b"a\r\n\r\n\r\n.\r\n"


def test_many_sends_reuse_one_connection(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        for i in range(20):
            pool.send(SENDER, [f"reader{i}@example.com"], message(f"message {i}"))
    assert len(handler.messages) == 20
    assert len(handler.protocols) == 1
    assert [m["to"] for m in handler.messages] == [[f"reader{i}@example.com"] for i in range(20)]


def test_close_says_quit_and_the_pool_can_be_used_again(server: tuple[Recorder, int]) -> None:
    handler, port = server
    pool = SMTPPool(relay(port))
    pool.send(SENDER, ["a@example.com"], message())
    pool.close()
    assert handler.quits == 1
    pool.send(SENDER, ["a@example.com"], message())
    pool.close()
    assert handler.quits == 2
    assert len(handler.protocols) == 2


def test_several_recipients_and_null_sender(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        pool.send("", ["a@example.com", "<b@example.com>"], message())
    assert handler.messages[0]["from"] == "<>"  # how aiosmtpd reports the null reverse-path
    assert handler.messages[0]["to"] == ["a@example.com", "b@example.com"]


def test_single_recipient_given_as_a_string(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        pool.send(SENDER, "a@example.com", message())  # type: ignore[arg-type]
    assert handler.messages[0]["to"] == ["a@example.com"]


def test_non_ascii_local_part_uses_smtputf8_and_an_idn_domain_travels_as_a_labels(
        server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        pool.send(SENDER, ["jörg@exämple.com"], message())
        pool.send(SENDER, ["plain@example.com"], message())
        pool.send(SENDER, ["ana@bücher.example"], message())
    first, second, third = handler.messages
    assert first["to"] == ["jörg@xn--exmple-cua.com"]
    assert "SMTPUTF8" in first["options"]
    assert "SMTPUTF8" not in second["options"]
    # Only the domain was not ASCII: as A-labels (RFC 5891) it needs no SMTPUTF8 from the relay.
    assert third["to"] == ["ana@xn--bcher-kva.example"] and "SMTPUTF8" not in third["options"]


def test_bad_addresses_are_refused_before_reaching_the_relay(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(PermanentFailure) as info:
            pool.send(SENDER, ["a@example.com\r\nRCPT TO:<victim@example.com>"], message())
        assert info.value.stage == "rcpt"
        with pytest.raises(ValueError):
            pool.send("x\n@example.com", ["a@example.com"], message())
        with pytest.raises(ValueError):
            pool.send(SENDER, [], message())
        with pytest.raises(TypeError):
            pool.send(SENDER, ["a@example.com"], "text, not bytes")  # type: ignore[arg-type]
    assert handler.protocols == []


# ---------------------------------------------------------------- failures


def test_4xx_recipient_is_a_temporary_failure_and_keeps_the_connection(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(TemporaryFailure) as info:
            pool.send(SENDER, ["busy@example.com"], message())
        pool.send(SENDER, ["ok@example.com"], message())
    exc = info.value
    assert exc.smtp_code == 450
    assert exc.smtp_message == "4.2.1 Mailbox busy, try later"
    assert exc.permanent is False and exc.stage == "rcpt"
    assert handler.rsets == 1
    assert len(handler.protocols) == 1
    assert [m["to"] for m in handler.messages] == [["ok@example.com"]]


def test_5xx_recipient_is_a_permanent_failure(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(PermanentFailure) as info:
            pool.send(SENDER, ["nobody@example.com"], message())
        pool.send(SENDER, ["ok@example.com"], message())
    exc = info.value
    assert (exc.smtp_code, exc.smtp_message, exc.permanent) == (550, "5.1.1 No such user here", True)
    assert "550 5.1.1 No such user here" in str(exc)
    assert handler.rsets == 1 and len(handler.protocols) == 1


def test_mixed_recipient_refusals_prefer_temporary(server: tuple[Recorder, int]) -> None:
    _, port = server
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(TemporaryFailure) as info:
            pool.send(SENDER, ["nobody@example.com", "busy@example.com"], message())
    assert info.value.smtp_code == 450
    assert set(info.value.refused) == {"nobody@example.com", "busy@example.com"}


def test_partly_refused_recipients_are_reported_but_the_rest_delivered(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        result = pool.send(SENDER, ["ok@example.com", "nobody@example.com"], message())
    assert result.smtp_code == 250
    assert result.refused == {"nobody@example.com": (550, "5.1.1 No such user here")}
    assert handler.messages[0]["to"] == ["ok@example.com"]


@pytest.mark.parametrize(
    ("marker", "error", "code"), [(b"REJECT-ME", PermanentFailure, 550), (b"DEFER-ME", TemporaryFailure, 451)]
)
def test_end_of_data_rejection_is_classified(
    server: tuple[Recorder, int], marker: bytes, error: type[DeliveryError], code: int
) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(error) as info:
            pool.send(SENDER, ["a@example.com"], message(marker.decode()))
        pool.send(SENDER, ["a@example.com"], message())
    assert info.value.smtp_code == code and info.value.stage == "message"
    assert len(handler.protocols) == 1 and len(handler.messages) == 1


def test_5xx_to_mail_from_is_permanent_and_resets(server: tuple[Recorder, int]) -> None:
    handler, port = server
    handler.mail_replies = ["553 5.7.1 Sender not allowed"]
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(PermanentFailure) as info:
            pool.send(SENDER, ["a@example.com"], message())
        pool.send(SENDER, ["a@example.com"], message())
    assert (info.value.smtp_code, info.value.stage) == (553, "mail")
    assert len(handler.protocols) == 1


def test_connection_refused_is_temporary() -> None:
    # A bound socket that never listens refuses connections for as long as it exists, so no port race.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        with SMTPPool(relay(port)) as pool:
            with pytest.raises(TemporaryFailure) as info:
                pool.send(SENDER, ["a@example.com"], message())
            with pytest.raises(TemporaryFailure):
                pool.check()
    assert info.value.smtp_code is None
    assert info.value.stage == "connect"
    assert "refused" in str(info.value).lower()


def test_recovers_when_the_server_dropped_the_idle_connection(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        pool.send(SENDER, ["a@example.com"], message("first"))
        handler.drop_connections()
        pool.send(SENDER, ["a@example.com"], message("second"))
        pool.send(SENDER, ["a@example.com"], message("third"))
    assert [m["content"] for m in handler.messages] == [message("first"), message("second"), message("third")]
    assert len(handler.protocols) == 2


def test_recovers_from_421_on_a_reused_connection(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        pool.send(SENDER, ["a@example.com"], message("first"))
        handler.mail_replies = ["421 4.4.2 Idle too long, closing"]
        pool.send(SENDER, ["a@example.com"], message("second"))
    assert len(handler.messages) == 2
    assert len(handler.protocols) == 2


def test_421_on_a_fresh_connection_is_not_retried(server: tuple[Recorder, int]) -> None:
    handler, port = server
    handler.mail_replies = ["421 4.3.2 Shutting down", "421 4.3.2 Shutting down"]
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(TemporaryFailure) as info:
            pool.send(SENDER, ["a@example.com"], message())
    assert (info.value.smtp_code, info.value.stage) == (421, "mail")
    assert len(handler.protocols) == 1


def test_connection_lost_after_the_message_is_not_resent(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        pool.send(SENDER, ["a@example.com"], message("warm up"))
        handler.drop_after_data = True
        with pytest.raises(TemporaryFailure) as info:
            pool.send(SENDER, ["a@example.com"], message("maybe delivered"))
        handler.drop_after_data = False
        pool.send(SENDER, ["a@example.com"], message("after"))
    assert info.value.stage == "message"
    assert "may have been delivered" in str(info.value)
    assert [m["content"] for m in handler.messages].count(message("maybe delivered")) == 1


def test_421_to_the_message_is_temporary_and_retires_the_connection(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(TemporaryFailure) as info:
            pool.send(SENDER, ["a@example.com"], message("CLOSE-ME"))
        pool.send(SENDER, ["a@example.com"], message())
    assert (info.value.smtp_code, info.value.stage) == (421, "message")
    assert "may have been delivered" not in str(info.value)
    assert len(handler.protocols) == 2 and len(handler.messages) == 1


def test_stale_idle_connections_are_replaced_without_a_round_trip(server: tuple[Recorder, int]) -> None:
    handler, port = server
    with SMTPPool(relay(port)) as pool:
        pool.max_idle = -1.0
        pool.send(SENDER, ["a@example.com"], message())
        pool.send(SENDER, ["a@example.com"], message())
    assert len(handler.protocols) == 2
    assert handler.rsets == 0


def test_forked_child_opens_its_own_connections(
    server: tuple[Recorder, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = server
    pool = SMTPPool(relay(port))
    pool.send(SENDER, ["a@example.com"], message())
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    pool.send(SENDER, ["a@example.com"], message())
    pool.close()
    monkeypatch.undo()
    # The inherited connection is the parent's: the child neither reuses it nor says QUIT on it.
    assert len(handler.protocols) == 2
    assert handler.quits == 1
    pool.close()


def test_concurrent_senders_share_at_most_max_connections(server: tuple[Recorder, int]) -> None:
    handler, port = server
    errors: list[Exception] = []
    with SMTPPool(relay(port, max_connections=2)) as pool:

        def work(worker: int) -> None:
            try:
                for i in range(10):
                    pool.send(SENDER, [f"w{worker}-{i}@example.com"], message(f"{worker}/{i}"))
            except Exception as exc:  # collected so the main thread's assertion reports it
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(handler.messages) == 60
    assert 1 <= len(handler.protocols) <= 2


def test_rate_limiter_is_consulted_once_per_message(server: tuple[Recorder, int]) -> None:
    handler, port = server

    class Limiter:
        calls: list[int] = []

        def acquire(self, n: int = 1, **kwargs: Any) -> float:
            self.calls.append(n)
            return 0.0

    limiter = Limiter()
    with SMTPPool(relay(port), limiter) as pool:  # type: ignore[arg-type]
        pool.send(SENDER, ["a@example.com", "b@example.com"], message())
        pool.send(SENDER, ["a@example.com"], message())
    assert limiter.calls == [1, 1]


def test_rate_limit_exhaustion_is_a_temporary_failure(server: tuple[Recorder, int]) -> None:
    handler, port = server

    class Exhausted:
        def acquire(self, n: int = 1, **kwargs: Any) -> float:
            raise RateLimited(12.5)

    with SMTPPool(relay(port), Exhausted()) as pool:  # type: ignore[arg-type]
        with pytest.raises(TemporaryFailure) as info:
            pool.send(SENDER, ["a@example.com"], message())
    assert info.value.stage == "ratelimit"
    assert isinstance(info.value.__cause__, RateLimited)
    assert handler.protocols == []


def test_delivery_errors_survive_pickling() -> None:
    exc = PermanentFailure("5.1.1 No such user", 550, stage="rcpt", refused={"a@x": (550, "no")})
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is PermanentFailure
    assert (copy.smtp_code, copy.smtp_message, copy.stage) == (550, "5.1.1 No such user", "rcpt")
    assert copy.refused == {"a@x": (550, "no")}
    assert copy.permanent and not TemporaryFailure("x").permanent


# ---------------------------------------------------------------- TLS and AUTH


def test_starttls(start_server: Start, server_tls: ssl.SSLContext) -> None:
    handler, port = start_server(tls_context=server_tls, require_starttls=True)
    with SMTPPool(relay(port, security="starttls", verify_tls=False)) as pool:
        pool.send(SENDER, ["a@example.com"], TRICKY)
        pool.send(SENDER, ["a@example.com"], message())
        summary = pool.check()
    assert [m["tls"] for m in handler.messages] == [True, True]
    assert handler.messages[0]["content"] == TRICKY
    assert len(handler.protocols) == 2  # one pooled connection plus the check
    assert "STARTTLS TLSv1" in summary and "127.0.0.1" in summary


def test_starttls_verifies_certificates_by_default(start_server: Start, server_tls: ssl.SSLContext) -> None:
    handler, port = start_server(tls_context=server_tls, require_starttls=True)
    with SMTPPool(relay(port, security="starttls")) as pool:
        with pytest.raises(TemporaryFailure) as info:
            pool.send(SENDER, ["a@example.com"], message())
    assert info.value.stage == "starttls"
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert handler.messages == []


def test_starttls_required_by_config_but_not_offered(server: tuple[Recorder, int]) -> None:
    _, port = server
    with SMTPPool(relay(port, security="starttls", verify_tls=False)) as pool:
        with pytest.raises(TemporaryFailure, match="STARTTLS") as info:
            pool.send(SENDER, ["a@example.com"], message())
    assert info.value.stage == "starttls"


def test_plaintext_to_a_server_requiring_starttls_fails_at_mail(
    start_server: Start, server_tls: ssl.SSLContext
) -> None:
    # A 5xx, so permanent by the rules; its stage shows it is the relay's configuration, not the recipient.
    _, port = start_server(tls_context=server_tls, require_starttls=True)
    with SMTPPool(relay(port)) as pool:
        with pytest.raises(PermanentFailure) as info:
            pool.send(SENDER, ["a@example.com"], message())
    assert (info.value.smtp_code, info.value.stage) == (530, "mail")


def test_implicit_tls(start_server: Start, server_tls: ssl.SSLContext) -> None:
    handler, port = start_server(ssl_context=server_tls)
    with SMTPPool(relay(port, security="ssl", verify_tls=False)) as pool:
        for i in range(3):
            pool.send(SENDER, ["a@example.com"], message(str(i)))
        summary = pool.check()
    assert len(handler.messages) == 3
    assert len({id(m["protocol"]) for m in handler.messages}) == 1
    assert "implicit TLS" in summary


USERS = {b"mailer": "pä55wörd ✓".encode()}


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and USERS.get(auth_data.login) == auth_data.password
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


AuthStart = Callable[[str], tuple[Recorder, int]]


@pytest.fixture
def auth_server(start_server: Start, server_tls: ssl.SSLContext) -> AuthStart:
    def start(mechanism: str) -> tuple[Recorder, int]:
        other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
        return start_server(
            tls_context=server_tls,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=True,
            auth_exclude_mechanism=[other],
        )

    return start


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_with_utf8_credentials(auth_server: AuthStart, mechanism: str) -> None:
    handler, port = auth_server(mechanism)
    config = relay(port, security="starttls", verify_tls=False, username="mailer", password="pä55wörd ✓")
    with SMTPPool(config) as pool:
        pool.send(SENDER, ["a@example.com"], message())
        pool.send(SENDER, ["a@example.com"], message())
        summary = pool.check()
    assert [m["auth"] for m in handler.messages] == [b"mailer", b"mailer"]
    assert "authenticated as mailer" in summary


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_wrong_password_is_permanent(auth_server: AuthStart, mechanism: str) -> None:
    handler, port = auth_server(mechanism)
    config = relay(port, security="starttls", verify_tls=False, username="mailer", password="wrong")
    with SMTPPool(config) as pool:
        with pytest.raises(PermanentFailure) as info:
            pool.send(SENDER, ["a@example.com"], message())
        with pytest.raises(PermanentFailure):
            pool.check()
    assert (info.value.smtp_code, info.value.stage) == (535, "auth")
    assert handler.messages == []


def test_auth_is_not_attempted_in_plaintext_when_the_server_hides_it(auth_server: AuthStart) -> None:
    _, port = auth_server("PLAIN")
    # aiosmtpd only offers AUTH after STARTTLS here; a plaintext relay config must not get further.
    config = relay(port, username="mailer", password="pä55wörd ✓")
    with SMTPPool(config) as pool:
        with pytest.raises(TemporaryFailure) as info:
            pool.send(SENDER, ["a@example.com"], message())
    assert info.value.stage == "auth"


def test_check_summarises_a_plain_relay(server: tuple[Recorder, int]) -> None:
    handler, port = server
    summary = SMTPPool(relay(port)).check()
    assert summary.startswith("default: connected to 127.0.0.1:")
    assert "no TLS" in summary and "SIZE" in summary
    assert handler.quits == 1


# ---------------------------------------------------------------- RelayConfig.from_url


def test_from_url_full() -> None:
    config = RelayConfig.from_url(
        "smtp+starttls://us%40er:p%3Ass%2Fw%20rd@Mail.Example.com:2525/?max_connections=8&rate_per_second=50"
        "&rate_per_hour=100000&verify_tls=0&timeout=12.5&local_hostname=out.example.com",
        name="bulk",
    )
    assert config == RelayConfig(
        name="bulk",
        host="mail.example.com",
        port=2525,
        security="starttls",
        username="us@er",
        password="p:ss/w rd",
        timeout=12.5,
        max_connections=8,
        rate_per_second=50.0,
        rate_per_hour=100000,
        local_hostname="out.example.com",
        verify_tls=False,
    )
    assert "p:ss/w rd" not in repr(config)


def test_ehlo_defaults_to_the_sending_domain_unless_the_url_names_one(server: tuple[Recorder, int]) -> None:
    recorder, port = server
    url = f"smtp://127.0.0.1:{port}/?timeout=10"
    for config, expected in ((RelayConfig.from_url(url, default_hostname="news.shop.example"), "news.shop.example"),
                             (RelayConfig.from_url(url + "&local_hostname=mx1.shop.example",
                                                   default_hostname="news.shop.example"), "mx1.shop.example")):
        pool = SMTPPool(config)
        try:
            pool.send("bounces@shop.example", ["reader@example.org"], b"Subject: hi\r\n\r\nhi\r\n")
        finally:
            pool.close()
        assert recorder.messages[-1]["helo"] == expected


@pytest.mark.parametrize(
    ("url", "security", "port"),
    [
        ("smtp://localhost", "none", 25),
        ("SMTP://localhost:26", "none", 26),
        ("smtps://smtp.example.com", "ssl", 465),
        ("smtp+starttls://smtp.example.com", "starttls", 587),
        ("smtp://[::1]:2525", "none", 2525),
    ],
)
def test_from_url_schemes_and_default_ports(url: str, security: str, port: int) -> None:
    config = RelayConfig.from_url(url)
    assert (config.security, config.port, config.name) == (security, port, "default")
    assert config.username is None and config.password is None and config.verify_tls is True


def test_from_url_user_without_password() -> None:
    config = RelayConfig.from_url("smtps://apikey@smtp.example.com")
    assert (config.username, config.password) == ("apikey", None)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://smtp.example.com", "scheme"),
        ("smtp.example.com:25", "scheme"),
        ("smtp://", "no host"),
        ("smtp://user:secret@:25", "no host"),
        ("smtp://user:secret@host:port", "invalid port"),
        ("smtp://host:99999", "invalid port"),
        ("smtp://host:0", "port"),
        ("smtp://host/path", "path"),
        ("smtp://host?verify_tls=maybe", "verify_tls"),
        ("smtp://host?max_connections=many", "max_connections"),
        ("smtp://host?max_connections=0", "max_connections"),
        ("smtp://host?rate_per_second=-1", "rate_per_second"),
        ("smtp://host?rate_per_hour=1.5", "rate_per_hour"),
        ("smtp://host?timeout=0", "timeout"),
        ("smtp://host?colour=blue", "unknown URL parameter 'colour'"),
        ("smtp://host?verify_tls", "query"),
        ("smtp://:secret@host", "username"),
        ("smtp://[::1", "malformed"),
    ],
)
def test_from_url_errors(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as info:
        RelayConfig.from_url(url, name="bulk")
    assert "secret" not in str(info.value)
    assert "'bulk'" in str(info.value)


def test_relay_config_validates_direct_construction() -> None:
    with pytest.raises(ValueError, match="security"):
        RelayConfig("default", "localhost", 25, "tls")
    with pytest.raises(ValueError, match="port"):
        RelayConfig("default", "localhost", 70000, "none")


# ---------------------------------------------------------------- RelayRouter


def test_router_picks_by_name_and_falls_back_to_default(caplog: pytest.LogCaptureFixture) -> None:
    default = RelayConfig("default", "localhost", 25, "none")
    bulk = RelayConfig("bulk", "localhost", 2525, "none", rate_per_second=5)
    made: list[str] = []

    def factory(config: RelayConfig) -> None:
        made.append(config.name)
        return None

    router = RelayRouter([default, bulk], limiter_factory=factory)
    assert router.names == ["default", "bulk"]
    assert router.pool().relay is default
    assert router.pool(None) is router.pool("default")
    assert router.pool("bulk").relay is bulk
    with caplog.at_level(logging.WARNING, logger="mailer.transport"):
        assert router.pool("typo") is router.pool("default")
        router.pool("typo")
    assert [r.message for r in caplog.records].count("no relay named 'typo'; using 'default'") == 1
    assert made == ["default", "bulk"]  # lazily, once per relay
    first = router.pool("bulk")
    router.close()
    assert router.pool("bulk") is not first


def test_router_without_default_relay() -> None:
    router = RelayRouter([RelayConfig("bulk", "localhost", 25, "none")])
    assert router.pool("bulk").relay.name == "bulk"
    with pytest.raises(LookupError, match="no relay named 'other'"):
        router.pool("other")
    with pytest.raises(LookupError):
        router.pool()


def test_router_rejects_duplicates_and_emptiness() -> None:
    config = RelayConfig("default", "localhost", 25, "none")
    with pytest.raises(ValueError, match="duplicate"):
        RelayRouter([config, config])
    with pytest.raises(ValueError):
        RelayRouter([])


def test_router_pools_deliver(server: tuple[Recorder, int]) -> None:
    handler, port = server
    router = RelayRouter([relay(port)])
    router.pool("whatever").send(SENDER, ["a@example.com"], message())
    router.close()
    assert len(handler.messages) == 1 and handler.quits == 1
