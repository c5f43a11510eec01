"""SMTPPool.send's gate: the caller's last word on a message, asked while the envelope is on the wire and read before
any of the message's data is written. Counted at the receiving relay."""

from __future__ import annotations

import smtplib
import socket

import pytest
from aiosmtpd.controller import Controller

from mailer.transport import PermanentFailure, RelayConfig, SMTPPool

MESSAGE = b"Subject: hi\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"


class Relay:
    """Records what it accepted and every session it saw; PIPELINING on or off."""

    def __init__(self, pipelining: bool) -> None:
        self.pipelining = pipelining
        self.messages: list[tuple[list[str], bytes]] = []
        self.refuse: dict[str, str] = {}
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sessions += 1
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 queued"


def _relay(pipelining: bool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Relay(pipelining)
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="relay.test")
    controller.start()
    return handler, port, controller


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
def relay(request):
    handler, port, controller = _relay(request.param)
    yield handler, port
    controller.stop()


class Stop(Exception):
    pass


class Gate:
    """Logs start/finish beside the client's writes; says no when told to."""

    def __init__(self, log: list[str], stop: bool = False) -> None:
        self.log, self.stop, self.finished = log, stop, 0

    def start(self) -> None:
        self.log.append("start")

    def finish(self) -> None:
        self.finished += 1
        self.log.append("finish")
        if self.stop:
            raise Stop()


@pytest.fixture()
def writes(monkeypatch):
    log: list[str] = []
    real = smtplib.SMTP.send

    def send(self, data):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        log.append("message" if "Subject: hi" in text else text.split(" ", 1)[0].strip().upper())
        return real(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", send)
    return log


def test_the_gate_is_asked_before_mail_and_read_before_the_data(relay, writes) -> None:
    handler, port = relay
    with SMTPPool(RelayConfig.from_url(f"smtp://127.0.0.1:{port}")) as pool:
        pool.send("a@shop.test", ["warm@example.com"], MESSAGE)     # connects: EHLO and friends out of the log
        writes.clear()
        gate = Gate(writes)
        assert pool.send("a@shop.test", ["r@example.com"], MESSAGE, gate=gate).smtp_code == 250
    sent = [entry for entry in writes if entry != "QUIT"]
    if handler.pipelining:
        # The question goes out before the pipelined envelope; its answer is read after the envelope's replies.
        assert sent == ["start", "MAIL", "finish", "message"]
    else:
        assert sent[:3] == ["start", "finish", "MAIL"] and sent[-1] == "message"
    assert [m[0] for m in handler.messages] == [["warm@example.com"], ["r@example.com"]]


def test_a_gate_that_says_no_sends_nothing_and_the_next_message_goes(relay, writes) -> None:
    handler, port = relay
    with SMTPPool(RelayConfig.from_url(f"smtp://127.0.0.1:{port}")) as pool:
        with pytest.raises(Stop):
            pool.send("a@shop.test", ["stopped@example.com"], MESSAGE, gate=Gate(writes, stop=True))
        assert "message" not in writes
        assert pool.send("a@shop.test", ["next@example.com"], MESSAGE, gate=Gate(writes)).smtp_code == 250
    # Counted at the relay: the stopped recipient got nothing, not even an empty message.
    assert [m[0] for m in handler.messages] == [["next@example.com"]]
    assert all(b"body" in m[1] for m in handler.messages)


def test_after_a_354_a_stopped_message_drops_the_connection_without_a_final_dot(writes) -> None:
    handler, port, controller = _relay(pipelining=True)
    try:
        with SMTPPool(RelayConfig.from_url(f"smtp://127.0.0.1:{port}")) as pool:
            pool.send("a@shop.test", ["warm@example.com"], MESSAGE)
            with pytest.raises(Stop):
                pool.send("a@shop.test", ["stopped@example.com"], MESSAGE, gate=Gate(writes, stop=True))
            # "." would end DATA with an empty message to the stopped recipient: the connection is closed instead.
            assert ".\r\n" not in writes and "." not in writes
            pool.send("a@shop.test", ["next@example.com"], MESSAGE)
        assert [m[0] for m in handler.messages] == [["warm@example.com"], ["next@example.com"]]
        assert handler.sessions == 2           # a new session after the dropped one
    finally:
        controller.stop()


def test_the_gates_no_beats_the_relays_refusal_and_the_connection_is_kept(relay, writes) -> None:
    handler, port = relay
    handler.refuse = {"gone@example.com": "550 5.1.1 no such user"}
    with SMTPPool(RelayConfig.from_url(f"smtp://127.0.0.1:{port}")) as pool:
        pool.send("a@shop.test", ["warm@example.com"], MESSAGE)
        gate = Gate(writes, stop=True)
        with pytest.raises(Stop):        # the contact stopped: not a bounce
            pool.send("a@shop.test", ["gone@example.com"], MESSAGE, gate=gate)
        ok = Gate(writes)
        with pytest.raises(PermanentFailure):     # the gate said yes: the relay's refusal stands
            pool.send("a@shop.test", ["gone@example.com"], MESSAGE, gate=ok)
        assert ok.finished >= 1
        pool.send("a@shop.test", ["next@example.com"], MESSAGE)
    assert [m[0] for m in handler.messages] == [["warm@example.com"], ["next@example.com"]]
    assert handler.sessions == 1           # a refused envelope is reset, the session goes on


def test_the_gate_is_read_when_the_relay_is_gone(writes) -> None:
    handler, port, controller = _relay(pipelining=True)
    pool = SMTPPool(RelayConfig.from_url(f"smtp://127.0.0.1:{port}"))
    try:
        pool.send("a@shop.test", ["warm@example.com"], MESSAGE)
        controller.stop()          # the idle connection dies, and so does any new one
        gate = Gate(writes)
        with pytest.raises(Exception) as failed:
            pool.send("a@shop.test", ["r@example.com"], MESSAGE, gate=gate)
        assert not isinstance(failed.value, Stop)
        assert gate.finished >= 1      # its answer was read: the caller's connection stays in step
    finally:
        pool.close()
