"""The fault-injecting SMTP server, driven by smtplib and by mailer.transport.SMTPPool over loopback."""

import json
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.faults import ACCEPTED, FaultPolicy, FaultServer, read_log
from mailer.transport import PermanentFailure, RelayConfig, SMTPPool, TemporaryFailure

ROOT = Path(__file__).resolve().parents[2]


def message(n: int, body: bytes = b"Hello.\r\n") -> bytes:
    return (b"From: news@rapport.test\r\nTo: reader@example.com\r\nSubject: test\r\n"
            b"Message-ID: <m%d@rapport.test>\r\n\r\n" % n) + body


@pytest.fixture()
def serve(tmp_path: Path) -> Iterator:
    """Start a FaultServer with a policy; every server started is stopped after the test."""
    servers = []

    def start(policy: FaultPolicy | None = None) -> FaultServer:
        server = FaultServer(policy, log_path=tmp_path / f"faults{len(servers)}.jsonl").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def pool_for(server: FaultServer, timeout: float = 10.0) -> SMTPPool:
    return SMTPPool(RelayConfig(name="faults", host="127.0.0.1", port=server.port, security="none",
                                timeout=timeout, max_connections=2))


def logged(server: FaultServer) -> list[dict]:
    return list(read_log(server.log_path))  # the file, not the server's memory


def test_an_accepted_message_is_in_the_log_file_before_the_client_has_the_250(serve) -> None:
    server = serve()
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        before = time.time()
        smtp.sendmail("news@rapport.test", ["Reader@Example.com"], message(1, b".a dot-stuffed line\r\n"))
        # Read at once, no waiting: the line was flushed before the reply left the server.
        records = logged(server)
    assert [r["event"] for r in records] == [ACCEPTED]
    record = records[0]
    assert record["message_id"] == "<m1@rapport.test>"
    assert record["rcpt"] == ["reader@example.com"]
    assert record["mail_from"] == "news@rapport.test"
    assert before <= record["started"] <= record["t"]
    assert record["bytes"] == len(message(1, b".a dot-stuffed line\r\n"))


def test_421_at_connect_is_a_temporary_failure_and_nothing_is_accepted(serve) -> None:
    server = serve(FaultPolicy(connect_421=1.0))
    with pytest.raises(smtplib.SMTPConnectError) as raw:
        smtplib.SMTP("127.0.0.1", server.port)
    assert raw.value.smtp_code == 421
    with pool_for(server) as pool, pytest.raises(TemporaryFailure) as failure:
        pool.send("news@rapport.test", ["a@example.com"], message(2))
    assert failure.value.stage in ("connect", "helo") and not failure.value.maybe_delivered
    assert server.counts["connect_421"] == 2 and server.accepted == []


def test_451_after_the_final_dot_is_a_temporary_failure_of_that_message_only(serve) -> None:
    server = serve(FaultPolicy(script={"a@example.com": ["data_451"]}))
    with pool_for(server) as pool:
        with pytest.raises(TemporaryFailure) as failure:
            pool.send("news@rapport.test", ["a@example.com"], message(3))
        assert failure.value.smtp_code == 451 and failure.value.stage == "message"
        assert not failure.value.maybe_delivered
        # The session goes on: the next message on the same connection is accepted.
        pool.send("news@rapport.test", ["b@example.com"], message(4))
    events = [(r["event"], r["rcpt"]) for r in logged(server)]
    assert events == [("data_451", ["a@example.com"]), (ACCEPTED, ["b@example.com"])]


def test_a_drop_before_the_dot_is_a_safe_retry_and_the_retry_arrives_once(serve) -> None:
    server = serve(FaultPolicy(script={"a@example.com": ["drop_before_dot", "ok"]}))
    with pool_for(server) as pool:
        with pytest.raises(TemporaryFailure) as failure:
            pool.send("news@rapport.test", ["a@example.com"], message(5, b"x" * 70 + b"\r\n" * 300))
        assert not failure.value.maybe_delivered
        assert failure.value.stage in ("mail", "rcpt", "data")
        pool.send("news@rapport.test", ["a@example.com"], message(5))
    assert [r["message_id"] for r in server.accepted] == ["<m5@rapport.test>"]
    assert [r["attempt"] for r in logged(server)] == [1, 2]


def test_a_drop_after_the_dot_may_have_been_delivered(serve) -> None:
    server = serve(FaultPolicy(drop_after_dot=1.0))
    with pool_for(server) as pool, pytest.raises(TemporaryFailure) as failure:
        pool.send("news@rapport.test", ["a@example.com"], message(6))
    assert failure.value.maybe_delivered and failure.value.stage == "message"
    (record,) = logged(server)
    # The server read the whole message (its Message-ID is logged) but never answered: not accepted.
    assert record["event"] == "drop_after_dot" and record["message_id"] == "<m6@rapport.test>"
    assert server.accepted == []


def test_550_for_chosen_addresses_bounces_them_and_accepts_the_others(serve) -> None:
    server = serve(FaultPolicy(reject=frozenset({"gone@example.com"})))
    with pool_for(server) as pool:
        with pytest.raises(PermanentFailure) as failure:
            pool.send("news@rapport.test", ["gone@example.com"], message(7))
        assert failure.value.smtp_code == 550 and failure.value.stage == "rcpt"
        result = pool.send("news@rapport.test", ["gone@example.com", "here@example.com"], message(8))
    assert result.refused == {"gone@example.com": (550, "5.1.1 No such user here")}
    assert [r["rcpt"] for r in server.accepted] == [["here@example.com"]]


def test_a_reply_slower_than_the_client_timeout_is_an_unknown_outcome_though_the_server_accepted_it(serve) -> None:
    server = serve(FaultPolicy(slow=1.0, slow_seconds=1.5))
    with pool_for(server, timeout=0.3) as pool, pytest.raises(TemporaryFailure) as failure:
        pool.send("news@rapport.test", ["a@example.com"], message(9))
    assert failure.value.maybe_delivered
    deadline = time.monotonic() + 10
    while not server.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    # The ground truth says delivered: exactly the case "outcome unknown" exists for.
    assert [r["rcpt"] for r in server.accepted] == [["a@example.com"]]
    assert server.counts["slow"] == 1


def test_the_seeded_policy_draws_the_same_faults_in_any_order_and_close_to_their_shares(serve) -> None:
    policy = FaultPolicy(seed=11, data_451=0.2, drop_before_dot=0.1, drop_after_dot=0.05)
    recipients = [f"r{i}@example.com" for i in range(400)]

    def run(order: list[str]) -> dict[str, str]:
        """What the server did with each recipient's first attempt."""
        server = serve(policy)
        with pool_for(server) as pool:
            for address in order:
                try:
                    pool.send("news@rapport.test", [address], message(0))
                except TemporaryFailure:
                    pass
        return {r["rcpt"][0]: r["event"] for r in logged(server) if r["attempt"] == 1}

    first, second = run(recipients), run(list(reversed(recipients)))
    assert first == second and len(first) == 400
    counts = {kind: sum(1 for v in first.values() if v == kind) for kind in set(first.values())}
    assert 50 <= counts["data_451"] <= 110 and 20 <= counts["drop_before_dot"] <= 60
    assert 5 <= counts["drop_after_dot"] <= 35 and counts[ACCEPTED] >= 200
    # A different seed draws different faults.
    other = FaultPolicy(seed=12, data_451=0.2, drop_before_dot=0.1, drop_after_dot=0.05)
    assert [other.message_fault([r], 1) for r in recipients] != [policy.message_fault([r], 1) for r in recipients]


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="share"):
        FaultPolicy(data_451=1.5)
    with pytest.raises(ValueError, match="add up"):
        FaultPolicy(data_451=0.6, drop_after_dot=0.6)
    with pytest.raises(ValueError, match="unknown faults"):
        FaultPolicy(script={"a@example.com": ["explode"]})


def test_the_command_line_server_logs_durably_and_stops_on_sigterm(tmp_path: Path) -> None:
    log, port_file, script = tmp_path / "log.jsonl", tmp_path / "port", tmp_path / "script.json"
    script.write_text(json.dumps({"A@example.com": ["drop_after_dot"]}))
    proc = subprocess.Popen([sys.executable, "-m", "mailer.faults", "--port", "0", "--port-file", str(port_file),
                             "--log", str(log), "--script", str(script), "--reject", "gone@example.com"], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        relay = RelayConfig(name="cli", host="127.0.0.1", port=int(port_file.read_text()), security="none")
        with SMTPPool(relay) as pool:
            with pytest.raises(TemporaryFailure) as failure:
                pool.send("news@rapport.test", ["a@example.com"], message(10))
            assert failure.value.maybe_delivered
            with pytest.raises(PermanentFailure):
                pool.send("news@rapport.test", ["gone@example.com"], message(11))
            pool.send("news@rapport.test", ["b@example.com"], message(12))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    # A torn last line (a writer killed mid-line) is skipped, not a parse error.
    with open(log, "a") as fh:
        fh.write('{"event": "accep')
    assert [(r["event"], r.get("message_id")) for r in read_log(log)] == [
        ("drop_after_dot", "<m10@rapport.test>"), ("rcpt_550", None), (ACCEPTED, "<m12@rapport.test>")]
