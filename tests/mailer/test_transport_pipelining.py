"""PIPELINING (RFC 2920): envelope and DATA in one write when the relay offers it; failures still classified."""

from __future__ import annotations

import smtplib
import socket

import pytest
from aiosmtpd.controller import Controller

from mailer.transport import PermanentFailure, RelayConfig, SMTPPool, TemporaryFailure


class Pipelining:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.replies: dict[str, str] = {}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address in self.replies:
            return self.replies[address]
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.replies:
            return self.replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 queued"


@pytest.fixture()
def server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Pipelining()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="sink.test")
    controller.start()
    yield handler, port
    controller.stop()


MESSAGE = b"Subject: hi\r\nMessage-ID: <1@x>\r\n\r\n.dot line\r\nbody\r\n"


def test_pipelined_sends_arrive_intact_in_two_writes_each(server, monkeypatch) -> None:
    handler, port = server
    writes = []
    real_send = smtplib.SMTP.send
    monkeypatch.setattr(smtplib.SMTP, "send", lambda self, data: (writes.append(data), real_send(self, data))[1])
    with SMTPPool(RelayConfig.from_url(f"smtp://127.0.0.1:{port}")) as pool:
        pool.send("a@shop.test", ["x@example.com"], MESSAGE)       # connects (EHLO etc.)
        before = len(writes)
        for i in range(5):
            result = pool.send("a@shop.test", [f"r{i}@example.com"], MESSAGE)
            assert result.smtp_code == 250
        assert len(writes) - before == 10          # per message: envelope+DATA in one write, then the message
    assert [m[1] for m in handler.messages][1:] == [[f"r{i}@example.com"] for i in range(5)]
    assert all(m[2] == MESSAGE for m in handler.messages)


def test_pipelined_rejections_are_classified_and_connection_reused(server) -> None:
    handler, port = server
    handler.replies = {"gone@example.com": "550 5.1.1 no such user", "busy@example.com": "451 4.3.0 later",
                       "blocked@shop.test": "553 5.7.1 sender not allowed"}
    with SMTPPool(RelayConfig.from_url(f"smtp://127.0.0.1:{port}")) as pool:
        with pytest.raises(PermanentFailure) as rejected:
            pool.send("a@shop.test", ["gone@example.com"], MESSAGE)
        assert rejected.value.smtp_code == 550 and rejected.value.stage == "rcpt"
        with pytest.raises(TemporaryFailure) as later:
            pool.send("a@shop.test", ["busy@example.com"], MESSAGE)
        assert later.value.smtp_code == 451
        with pytest.raises(PermanentFailure) as sender:
            pool.send("blocked@shop.test", ["ok@example.com"], MESSAGE)
        assert sender.value.stage == "mail" and sender.value.relay_problem
        assert pool.send("a@shop.test", ["ok@example.com"], MESSAGE).smtp_code == 250
    assert [m[1] for m in handler.messages] == [["ok@example.com"]]
