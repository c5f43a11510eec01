"""One forward per reply however many senders race for it: the ingest's immediate forward and the periodic
reply_mail job claim the reply with a conditional UPDATE (campaigns.replies.mail.claim), on SQLite as on
PostgreSQL; a dead sender's claim is a lease that expires, and the forward is retried. Counted at the capture
server."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import update

from campaigns.models import MailState, Reply, utcnow
from campaigns.replies import mail as reply_mail
from tests.campaigns.replies.conftest import answer
from tests.campaigns.replies.test_replies import ingest_committed
from tests.helpers import fresh


def _forwards(outbox, reply_id: int) -> list:
    found = []
    for m in outbox.list():
        msg = outbox.get(m.key)
        if any(k.lower() == "x-rapport-reply" and v.strip() == str(reply_id) for k, v in msg.headers):
            found.append(msg)
    return found


def test_two_senders_racing_forward_a_reply_once(runtime, db_session, sent, outbox, monkeypatch) -> None:
    _campaign, contacts, by_rcpt = sent
    out = ingest_committed(db_session, runtime.tokens, answer(by_rcpt[contacts[0].email], "Is it in stock?"))
    reply_id = int(out.detail)
    assert fresh(db_session).get(Reply, reply_id).forward_state == MailState.PENDING
    # Every sender that got as far as the relay waits here for the other one, so two senders that both believed
    # the reply theirs would both send; the one that lost the claim never arrives and the winner goes on alone.
    barrier = threading.Barrier(2, timeout=3)
    real_send = reply_mail._send

    def racing_send(rt, to, headers, body):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        real_send(rt, to, headers, body)

    monkeypatch.setattr(reply_mail, "_send", racing_send)
    start = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def sender(ids):
        try:
            start.wait()
            results.append(reply_mail.send_due(runtime, ids))
        except BaseException as exc:   # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=([reply_id],)),   # the ingest's send_now
               threading.Thread(target=sender, args=(None,))]        # the periodic job
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(results) == [0, 1]
    assert len(_forwards(outbox, reply_id)) == 1
    row = fresh(db_session).get(Reply, reply_id)
    assert row.forward_state == MailState.SENT and row.mail_lease_until is None


def test_a_dead_senders_claim_expires_and_the_forward_is_retried(runtime, db_session, sent, outbox) -> None:
    _campaign, contacts, by_rcpt = sent
    out = ingest_committed(db_session, runtime.tokens, answer(by_rcpt[contacts[1].email], "Call me back."))
    reply_id = int(out.detail)
    with runtime.session_factory() as session:   # a sender claims it, then dies before sending
        assert reply_mail.claim(session, reply_id)
        session.commit()
    assert reply_mail.send_due(runtime) == 0      # its lease still runs: nobody else sends
    assert _forwards(outbox, reply_id) == []
    with runtime.session_factory() as session:    # the lease ran out
        session.execute(update(Reply).where(Reply.id == reply_id)
                        .values(mail_lease_until=utcnow() - dt.timedelta(seconds=1)))
        session.commit()
    assert reply_mail.send_due(runtime) == 1 and reply_mail.send_due(runtime) == 0
    assert len(_forwards(outbox, reply_id)) == 1
    assert fresh(db_session).get(Reply, reply_id).forward_state == MailState.SENT


def test_no_database_lock_is_held_while_the_forward_goes_to_the_relay(runtime, db_session, sent, outbox,
                                                                        monkeypatch) -> None:
    """The claim is committed before the SMTP conversation: on SQLite every other writer (the web app, the
    tracking drain, another ingest) goes on while a slow relay takes the forward."""
    _campaign, contacts, by_rcpt = sent
    out = ingest_committed(db_session, runtime.tokens, answer(by_rcpt[contacts[2].email], "Any news?"))
    reply_id = int(out.detail)
    real_send = reply_mail._send
    wrote: list[bool] = []

    def send_after_another_write(rt, to, headers, body):
        raw = runtime.engine.raw_connection()   # another writer, which would wait at most 200 ms for the lock
        try:
            conn = raw.driver_connection
            if runtime.engine.dialect.name == "sqlite":
                conn.execute("PRAGMA busy_timeout=200")
                conn.execute("BEGIN IMMEDIATE")
            cur = raw.cursor()
            cur.execute(f"UPDATE contact SET city = 'Leipzig' WHERE id = {int(contacts[0].id)}")
            raw.commit()
            wrote.append(True)
        finally:
            if runtime.engine.dialect.name == "sqlite":
                raw.driver_connection.execute("PRAGMA busy_timeout=30000")
            raw.close()
        real_send(rt, to, headers, body)

    monkeypatch.setattr(reply_mail, "_send", send_after_another_write)
    assert reply_mail.send_due(runtime, [reply_id]) == 1
    assert wrote == [True] and len(_forwards(outbox, reply_id)) == 1
