"""The DKIM signing helper process (mailer.dkim_helper): the same bytes as signing in-process, errors as the signer
raises them, a dead child replaced without losing or leaving unsigned any message, and no child outliving its
parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dkim
import pytest

import mailer.dkim_helper as helper_module
from mailer.dkim import DKIMKey, DKIMSigner, generate_private_key_pem
from mailer.dkim_helper import SigningProcess
from mailer.message import serialize

HEADERS = [("From", "Anna <anna@shop.test>"), ("To", "reader@example.com"), ("Subject", "Notes from the garden"),
           ("Date", "Tue, 14 Nov 2023 22:13:20 +0000"), ("Message-ID", "<m1@shop.test>")]
BODY = b"Hello Anna,\r\n\r\n" + b"Sow the tomatoes  now.\t\r\n" * 2000 + b"\r\n\r\n"


@pytest.fixture(scope="module")
def keys() -> list[DKIMKey]:
    return [DKIMKey.from_pem("shop.test", "s1", generate_private_key_pem("rsa", 2048)),
            DKIMKey.from_pem("shop.test", "ed", generate_private_key_pem("ed25519"))]


@pytest.fixture()
def helper(keys):
    process = SigningProcess(DKIMSigner(keys))
    yield process
    process.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped yet) counts as gone.
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_the_helper_signs_byte_for_byte_as_in_process_and_in_any_order_of_collection(keys, helper) -> None:
    signer = DKIMSigner(keys)
    bodies = [BODY, BODY.replace(b"Anna", b"Ben"), b"", b"short\r\n"]
    tickets = [helper.submit(HEADERS, body, timestamp=1_700_000_000) for body in bodies]
    assert helper.pid is not None and helper.pid != os.getpid()
    # Collected out of order: each ticket still gets its own message's signatures.
    for ticket, body in reversed(list(zip(tickets, bodies, strict=True))):
        assert helper.result(ticket) == signer.sign(HEADERS, body, timestamp=1_700_000_000)
    # And they verify: both keys' signatures over the wire form.
    prefix = helper.result(helper.submit(HEADERS, BODY))
    wire = serialize(HEADERS, BODY, prefix)
    records = {name: key.dns_txt_value().encode() for key in keys for name in [key.dns_record_name().encode() + b"."]}
    assert prefix.count(b"DKIM-Signature:") == 2
    assert dkim.verify(wire, dnsfunc=lambda name, timeout=5: records.get(name, b""))


def test_a_signing_error_comes_back_as_the_signers_value_error_and_the_helper_keeps_working(helper) -> None:
    bad_header = helper.submit([("From", "Zoe\n<zoe@shop.test>")], BODY)
    bare_lf = helper.submit(HEADERS, b"line\nline\r\n")
    good = helper.submit(HEADERS, BODY)
    with pytest.raises(ValueError, match="bare CR/LF"):
        helper.result(bad_header)
    with pytest.raises(ValueError, match="CRLF"):
        helper.result(bare_lf)
    assert helper.result(good).startswith(b"DKIM-Signature:")
    assert helper.restarts == 1          # errors are answers, not failures of the child


def test_a_killed_helper_is_replaced_and_every_message_it_owed_is_still_signed(keys, helper, monkeypatch) -> None:
    signer = DKIMSigner(keys)
    first = helper.submit(HEADERS, BODY, timestamp=1)
    assert helper.result(first) == signer.sign(HEADERS, BODY, timestamp=1)
    pid = helper.pid
    owed = [helper.submit(HEADERS, BODY, timestamp=t) for t in (2, 3)]
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    # What the dead child owed (and what is asked during its pause) is signed in this process: same bytes.
    later = helper.submit(HEADERS, BODY, timestamp=4)
    assert [helper.result(t) for t in [*owed, later]] == [signer.sign(HEADERS, BODY, timestamp=t) for t in (2, 3, 4)]
    assert helper.pid is None
    # After the pause a new child takes over.
    monkeypatch.setattr(helper_module, "RESTART_AFTER", 0.0)
    again = helper.submit(HEADERS, BODY, timestamp=5)
    assert helper.pid not in (None, pid) and helper.restarts == 2
    assert helper.result(again) == signer.sign(HEADERS, BODY, timestamp=5)


def test_the_child_ignores_ctrl_c_and_term_and_ends_when_its_parent_dies(tmp_path) -> None:
    """A worker's Ctrl-C or TERM leaves signing to the worker's own shutdown; a SIGKILLed worker takes it along."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from mailer.dkim import DKIMKey, DKIMSigner, generate_private_key_pem
        from mailer.dkim_helper import SigningProcess
        helper = SigningProcess(DKIMSigner([DKIMKey.from_pem("shop.test", "s1", generate_private_key_pem())]))
        helper.result(helper.submit([("From", "a@shop.test")], b"hi\\r\\n"))
        print(helper.pid, flush=True)
        time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        child = int(parent.stdout.readline())
        os.kill(child, signal.SIGINT)
        os.kill(child, signal.SIGTERM)
        time.sleep(0.3)
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_gone(child), "the helper outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_close_ends_the_child(helper) -> None:
    helper.result(helper.submit(HEADERS, BODY))
    pid = helper.pid
    helper.close()
    assert helper.pid is None and wait_gone(pid)


def test_a_forked_process_starts_its_own_child_and_never_reads_its_parents_answers(keys, helper) -> None:
    """RQ's --fork runs each job in a forked copy of the worker: it must not share the worker's helper pipes (an
    answer left unread by a killed job would be taken as the next job's signature)."""
    signer = DKIMSigner(keys)
    helper.result(helper.submit(HEADERS, BODY))
    parent_helper = helper.pid
    helper.submit(HEADERS, b"left unread\r\n", timestamp=7)     # an answer waiting in the parent's pipe
    pid = os.fork()
    if pid == 0:     # the job child: exit status 0 only if it signed right, with a helper of its own
        ok = False
        try:
            ok = (helper.result(helper.submit(HEADERS, BODY, timestamp=8)) == signer.sign(HEADERS, BODY, timestamp=8)
                  and helper.pid not in (None, parent_helper))
            helper.close()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert helper.pid == parent_helper
    assert helper.result(helper.submit(HEADERS, BODY, timestamp=9)) == signer.sign(HEADERS, BODY, timestamp=9)
