"""Relay webhooks: shared-secret authentication and the normalized JSON format of docs/webhooks.md."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from sqlalchemy import select

from campaigns.models import Contact, ContactStatus, Event
from campaigns.services import ingest, sending
from campaigns.services.reports import campaign_report

SECRET = "relay-shared-secret-0123456789"


@pytest.fixture()
def sent(app, runtime, db_session, make_contacts, make_campaign, outbox, run_worker):  # noqa: ANN001, ANN201
    app.config["WEBHOOK_SECRET"] = SECRET
    topic, contacts = make_contacts(4)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    run_worker()
    ids = {}
    for m in outbox.list():
        ids[m.recipients[0]] = re.search(r"bounces\+([\w-]+)@", m.envelope_from).group(1)
    return campaign, contacts, ids


def post(client, payload, *, secret: str = SECRET, sign: bool = False):  # noqa: ANN001, ANN201
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if sign:
        headers["X-Rapport-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    elif secret:
        headers["Authorization"] = f"Bearer {secret}"
    return client.post("/webhooks/relay", data=body, headers=headers)


def fresh(db_session):  # noqa: ANN001, ANN201
    db_session.rollback()
    db_session.expire_all()
    return db_session


def test_unauthenticated_or_unconfigured_calls_change_nothing(app, client, db_session, sent) -> None:  # noqa: ANN001
    _campaign, contacts, ids = sent
    event = {"type": "complaint", "rapport_id": ids[contacts[0].email]}
    assert post(client, event, secret="").status_code == 401
    assert post(client, event, secret="wrong").status_code == 401
    assert post(client, event, secret="wrong", sign=True).status_code == 401
    app.config["WEBHOOK_SECRET"] = ""
    assert post(client, event).status_code == 404
    assert fresh(db_session).get(Contact, contacts[0].id).status == ContactStatus.SUBSCRIBED


def test_normalized_events_update_the_contact_list(client, db_session, runtime, sent, run_worker) -> None:  # noqa: ANN001
    campaign, contacts, ids = sent
    domain = runtime.settings.dkim_domain
    r = post(client, {"events": [
        {"id": "evt-1", "type": "bounce", "bounce_type": "hard", "rapport_id": ids[contacts[0].email],
         "status": "5.1.1", "smtp_code": 550, "diagnostic": "user unknown", "timestamp": "2026-11-23T10:00:00Z"},
        {"id": "evt-2", "type": "complaint", "message_id": f"<{ids[contacts[1].email]}@{domain}>"},
        {"id": "evt-3", "type": "delivered", "rapport_id": ids[contacts[2].email], "timestamp": 1795000000},
        {"id": "evt-4", "type": "click", "rapport_id": ids[contacts[2].email], "url": "https://shop.test/events",
         "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "ip": "203.0.113.5"},
        {"id": "evt-5", "type": "bounce", "bounce_type": "soft", "recipient": contacts[3].email.upper()},
        {"id": "evt-6", "type": "open", "rapport_id": "not-a-token-of-ours-at-all-xxxx"},
        {"type": "teleport"},
    ]}, sign=True)
    assert r.status_code == 200
    results = [x["result"] for x in r.get_json()["results"]]
    assert results == ["hard_bounce", "complaint", "delivered", "click", "soft_bounce", "ignored", "rejected"]
    assert r.get_json()["accepted"] == 5
    run_worker()
    db = fresh(db_session)
    assert [db.get(Contact, c.id).status for c in contacts] == [
        ContactStatus.BOUNCED, ContactStatus.COMPLAINED, ContactStatus.SUBSCRIBED, ContactStatus.SUBSCRIBED]
    assert ingest.is_suppressed(db, contacts[0].email) and ingest.is_suppressed(db, contacts[1].email)
    click = db.scalar(select(Event).where(Event.type == "click"))
    assert click.contact_id == contacts[2].id and click.machine is False and click.data["source"] == "relay"
    report = campaign_report(db, campaign.id)
    assert (report["bounces_hard"], report["complaints"], report["clicks_human"]) == (1, 1, 1)
    # A relay retrying the same delivery changes nothing.
    db.rollback()
    again = post(client, {"id": "evt-4", "type": "click", "rapport_id": ids[contacts[2].email],
                          "url": "https://shop.test/events", "user_agent": "Mozilla/5.0 (X11) Firefox/133.0"})
    assert again.get_json()["results"][0]["result"] == "click"
    run_worker()
    assert len(fresh(db_session).scalars(select(Event).where(Event.type == "click")).all()) == 1


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"events": []}', b'{"events": "x"}', b"null",
                                  json.dumps({"events": [{"type": "open"}] * 1001}).encode()])
def test_malformed_bodies_get_a_400(client, sent, body: bytes) -> None:  # noqa: ANN001
    r = client.post("/webhooks/relay", data=body, headers={"Authorization": f"Bearer {SECRET}",
                                                           "Content-Type": "application/json"})
    assert r.status_code == 400
