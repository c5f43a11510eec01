"""Delivering transactional messages: ahead of bulk batches, a 5xx bounces (and suppresses), a 4xx is retried,
lost jobs and dead workers are settled; template API names."""

from __future__ import annotations

import datetime as dt

import pytest
from rq import SimpleWorker
from sqlalchemy import select, update

from campaigns.composing.editor import save_campaign
from campaigns.errors import ValidationError
from campaigns.models import Contact, ContactStatus, TxMessage, TxStatus, utcnow
from campaigns.sending import lifecycle
from campaigns.transactional import delivery
from mailer.capture.entries import sort_key
from tests.campaigns.sending.test_delivery import scripted  # noqa: F401 - the fixture, shared
from tests.campaigns.sending.test_sending import messages
from tests.campaigns.transactional.conftest import receipt_body
from tests.helpers import fresh


def test_a_transactional_job_is_taken_before_queued_bulk_batches(client, runtime, db_session, receipt, tx_key,
                                                                 make_contacts, make_campaign, outbox) -> None:
    topic, contacts = make_contacts(45)
    campaign = make_campaign([topic])
    lifecycle.start(db_session, runtime, campaign)
    db_session.commit()
    # Dispatch alone: its batch jobs (batch_size 20: three) now wait on the bulk queue.
    SimpleWorker(runtime.queues, connection=runtime.redis).work(burst=True, max_jobs=1, logging_level="WARNING")
    assert runtime.queue.count == 3 and outbox.count() == 0
    r = client.post("/api/v1/tx", json=receipt_body(), headers=tx_key)
    assert r.status_code == 202
    assert runtime.tx_queue.count == 1
    db_session.rollback()
    SimpleWorker(runtime.queues, connection=runtime.redis).work(burst=True, logging_level="WARNING")
    arrived = sorted(messages(outbox), key=lambda m: sort_key(m.key))
    assert len(arrived) == 46
    assert arrived[0].recipients == ("ada@example.com",)


def test_a_running_batch_yields_to_transactional_mail_between_claims(client, runtime, db_session, receipt, tx_key,
                                                                     make_contacts, make_campaign, outbox) -> None:
    from campaigns.sending import delivery as bulk

    topic, contacts = make_contacts(20)
    campaign = make_campaign([topic])
    lifecycle.start(db_session, runtime, campaign)
    db_session.commit()
    SimpleWorker(runtime.queues, connection=runtime.redis).work(burst=True, max_jobs=1, logging_level="WARNING")
    (batch,) = runtime.queue.get_jobs()
    runtime.queue.empty()
    assert client.post("/api/v1/tx", json=receipt_body(), headers=tx_key).status_code == 202
    db_session.rollback()
    # The batch job runs while the receipt waits: within Handoff.URGENT_CHECK it stops (at most one claim of 7
    # went out), puts the rest of its claim back and queues the rest of its range.
    result = bulk.send_batch(runtime, campaign.id, *batch.args[1:])
    assert result.stopped == bulk.YIELDED and result.sent <= 7 and outbox.count() == result.sent
    (rest,) = runtime.queue.get_jobs()
    assert rest.args == batch.args
    SimpleWorker(runtime.queues, connection=runtime.redis).work(burst=True, logging_level="WARNING")
    arrived = sorted(messages(outbox), key=lambda m: sort_key(m.key))
    assert len(arrived) == 21 and arrived[result.sent].recipients == ("ada@example.com",)
    assert len({m.recipients for m in arrived}) == 21        # nobody twice


def test_a_5xx_for_the_recipient_bounces_the_message_and_suppresses_the_address(
        client, runtime, db_session, receipt, tx_key, make_contacts, scripted, run_worker) -> None:  # noqa: F811
    _topic, (person,) = make_contacts(1)
    scripted.replies[person.email] = "550 5.1.1 No such user here"
    out = client.post("/api/v1/tx", json=receipt_body(to=person.email), headers=tx_key).get_json()
    db_session.rollback()
    run_worker()
    got = client.get(f"/api/v1/tx/{out['message_id']}", headers=tx_key).get_json()
    assert got["status"] == "bounced" and got["smtp_code"] == 550 and "No such user" in got["smtp_reply"]
    assert got["sent_at"] is None
    assert fresh(db_session).get(Contact, person.id).status == ContactStatus.BOUNCED
    assert scripted.received == []
    # The next receipt to it is not even queued.
    again = client.post("/api/v1/tx", json=receipt_body(to=person.email), headers=tx_key).get_json()
    assert again["status"] == "suppressed"


def test_a_4xx_is_retried_later_and_then_delivered(client, runtime, db_session, receipt, tx_key, scripted,  # noqa: F811
                                                   run_worker) -> None:
    scripted.replies["ada@example.com"] = "451 4.7.1 Greylisted, try again later"
    out = client.post("/api/v1/tx", json=receipt_body(), headers=tx_key).get_json()
    db_session.rollback()
    run_worker()
    got = client.get(f"/api/v1/tx/{out['message_id']}", headers=tx_key).get_json()
    assert got["status"] == "queued" and got["attempts"] == 1 and got["smtp_code"] == 451
    due = dt.datetime.fromisoformat(got["next_attempt_at"])
    assert dt.timedelta(seconds=20) < due - utcnow() <= dt.timedelta(seconds=delivery.RETRY_DELAYS[0])
    assert scripted.received == []
    del scripted.replies["ada@example.com"]
    # The retry is a delayed job; the minute task also finds any message overdue (here: as if time had passed).
    assert delivery.resume_due(runtime, grace=-2 * delivery.RETRY_DELAYS[0]) == 1
    run_worker()
    got = client.get(f"/api/v1/tx/{out['message_id']}", headers=tx_key).get_json()
    assert got["status"] == "sent" and got["attempts"] == 2 and got["smtp_code"] == 250
    assert scripted.received == ["ada@example.com"]
    # Queued twice (the delayed job and the resume) is still sent once.
    delivery.resume_due(runtime, grace=-10_000)
    run_worker()
    assert scripted.received == ["ada@example.com"]


def test_a_lost_job_is_queued_again_and_a_dead_workers_message_is_unknown(client, runtime, db_session, receipt,
                                                                          tx_key, outbox, run_worker) -> None:
    lost = client.post("/api/v1/tx", json=receipt_body(), headers=tx_key).get_json()
    stuck = client.post("/api/v1/tx", json=receipt_body(to="bea@example.com"), headers=tx_key).get_json()
    runtime.tx_queue.empty()         # Redis lost both jobs
    long_ago = utcnow() - dt.timedelta(hours=1)
    db_session.execute(update(TxMessage).values(created_at=long_ago))
    db_session.execute(update(TxMessage).where(TxMessage.public_id == stuck["message_id"])
                       .values(status=TxStatus.SENDING, updated_at=long_ago))
    db_session.commit()
    assert delivery.resume_due(runtime) == 1
    run_worker()
    assert [m.recipients for m in messages(outbox)] == [("ada@example.com",)]
    rows = {m.public_id: m for m in fresh(db_session).scalars(select(TxMessage))}
    assert rows[lost["message_id"]].status == TxStatus.SENT
    assert rows[stuck["message_id"]].status == TxStatus.UNKNOWN


def test_transactional_templates_get_a_unique_api_name(db_session) -> None:
    def save(name, kind="transactional", campaign=None, **extra):
        saved = save_campaign(db_session, {"name": name, "kind": kind, "subject": "S", "mjml": "<mjml></mjml>",
                                           **extra}, campaign)
        db_session.flush()
        return saved

    first = save("Order receipt!")
    second = save("Order receipt")
    assert (first.slug, second.slug) == ("order-receipt", "order-receipt-2")
    assert save("2026 notice").slug == "template-2026-notice"
    assert save("Shipping", slug="shipped").slug == "shipped"
    assert save("Order receipt", campaign=first).slug == "order-receipt"     # kept on edit
    with pytest.raises(ValidationError, match="already called"):
        save("Other", slug="shipped")
    with pytest.raises(ValidationError, match="lower-case"):
        save("Other", slug="Bad Slug")
    assert save("News", kind="nurture", slug="news").slug is None


def test_a_transactional_message_waiting_over_a_minute_is_a_health_problem(client, runtime, receipt,
                                                                           tx_key) -> None:
    from campaigns.ops.liveness import queue_state

    assert client.post("/api/v1/tx", json=receipt_body(), headers=tx_key).status_code == 202
    now = utcnow()
    state = queue_state(runtime, now, now=now + dt.timedelta(seconds=30))
    assert state.jobs["queued"] == 1 and not any("transactional" in p for p in state.problems)
    later = now + dt.timedelta(seconds=90)
    state = queue_state(runtime, later, now=later)
    assert any(p.startswith("transactional mail waits") for p in state.problems), state.problems


def test_the_composer_sets_and_shows_the_api_name(editor, db_session) -> None:
    from tests.helpers import csrf

    token = csrf(editor, "/admin/campaigns/new")
    r = editor.post("/admin/campaigns/new", data={
        "csrf_token": token, "name": "Shipping notice", "kind": "transactional", "slug": "shipped",
        "subject": "On its way", "mjml": "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>", "sender": "default"})
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    page = editor.get(r.headers["Location"]).get_data(as_text=True)
    assert "API name" in page and "<code>shipped</code>" in page
