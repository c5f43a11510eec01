"""Production server: a chunked POST whose body does not match its chunked coding gets 400 from gunicorn, not a
500 or a hang; a well-formed chunked one-click unsubscribe works. gunicorn runs as a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from campaigns.models import Contact, ContactStatus
from mailer.tracking import Purpose
from tests.helpers import fresh

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def gunicorn(settings, runtime, tmp_path):
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
               SECRET_KEY=settings.secret_key, RAPPORT_INSTANCE=str(tmp_path / "gunicorn"),
               BASE_URL=settings.base_url, RAPPORT_QUEUE=settings.queue_name)
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "--timeout",
                             "20", "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60    # start-up bound only; nothing is asserted about time
        while True:
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def raw_post(port: int, path: str, body: bytes) -> bytes:
    """Send a chunked POST as raw bytes and read the whole answer (the server closes; bounded by a timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                  b"Transfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n" + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_mismatched_chunked_body_gets_400_and_changes_nothing(gunicorn, runtime, db_session,
                                                               make_contacts) -> None:
    _topic, (contact,) = make_contacts(1)
    db_session.rollback()
    path = "/u/" + runtime.tokens.seal(Purpose.UNSUBSCRIBE, contact.id, 0)
    for body in (b"List-Unsubscribe=One-Click\r\n\r\n", b"zz\r\nab\r\n0\r\n\r\n"):
        answer = raw_post(gunicorn, path, body)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"malformed" in answer
        assert fresh(db_session).get(Contact, contact.id).status == ContactStatus.SUBSCRIBED
        db_session.rollback()
    form = b"List-Unsubscribe=One-Click"
    answer = raw_post(gunicorn, path, b"%x\r\n%s\r\n0\r\n\r\n" % (len(form), form))
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"Unsubscribed.\n")
    assert fresh(db_session).get(Contact, contact.id).status == ContactStatus.UNSUBSCRIBED
    db_session.rollback()
