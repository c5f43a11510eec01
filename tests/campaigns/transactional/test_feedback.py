"""Feedback about a transactional message after the relay accepted it: a DSN through the bounce pipe (matched by
the VERP return path's token) or a relay webhook (matched by its Message-ID) makes it `bounced`, suppresses the
address as for campaign mail, and counts once however often it is reported."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from campaigns.contacts.suppression import is_suppressed
from campaigns.feedback import ingest
from campaigns.models import Contact, ContactStatus, Event, EventType, TxMessage
from tests.campaigns.feedback.test_ingest import dsn_for
from tests.campaigns.sending.test_sending import messages
from tests.campaigns.transactional.conftest import receipt_body
from tests.helpers import fresh

SECRET = "relay-shared-secret-0123456789"


def _send(client, tx_key, work, outbox, to: str) -> tuple[str, object]:
    r = client.post("/api/v1/tx", json=receipt_body(to=to), headers=tx_key)
    assert r.status_code == 202, r.get_json()
    work()
    (entry,) = [m for m in messages(outbox) if m.recipients == (to,)]
    return r.get_json()["message_id"], entry


def test_a_dsn_arriving_later_bounces_the_message_and_suppresses_the_address(client, runtime, db_session, receipt,
                                                                            tx_key, outbox, work) -> None:
    message_id, entry = _send(client, tx_key, work, outbox, "gone@example.com")
    assert client.get(f"/api/v1/tx/{message_id}", headers=tx_key).get_json()["status"] == "sent"
    assert re.match(r"bounces\+[\w-]+@", entry.envelope_from)        # a VERP return path carrying its token
    dsn = dsn_for(entry, outbox.get(entry.key))
    for _ in range(2):                                               # the same report read twice counts once
        out = ingest.ingest_message(db_session, runtime.tokens, dsn, envelope_recipient=entry.envelope_from)
        db_session.commit()
    assert out.kind == ingest.OutcomeKind.DUPLICATE
    got = client.get(f"/api/v1/tx/{message_id}", headers=tx_key).get_json()
    assert got["status"] == "bounced" and got["smtp_code"] == 550
    assert "hard bounce reported after the relay accepted it" in got["reason"] and "5.1.1" in got["reason"]
    session = fresh(db_session)
    contact = session.scalar(select(Contact).where(Contact.email == "gone@example.com"))
    assert contact.status == ContactStatus.BOUNCED and is_suppressed(session, "gone@example.com")
    tx = session.scalar(select(TxMessage).where(TxMessage.public_id == message_id))
    (bounce,) = session.scalars(select(Event).where(Event.contact_id == contact.id,
                                                     Event.type == EventType.BOUNCE)).all()
    assert bounce.tx_message_id == tx.id and bounce.campaign_id == receipt.id and bounce.send_id is None
    # The next receipt to the address is never sent.
    again = client.post("/api/v1/tx", json=receipt_body(to="gone@example.com"), headers=tx_key).get_json()
    assert again["status"] == "suppressed"


def test_a_relay_webhook_bounce_names_the_message_by_its_message_id(app, client, runtime, db_session, receipt,
                                                                    tx_key, outbox, work) -> None:
    app.config["WEBHOOK_SECRET"] = SECRET
    message_id, entry = _send(client, tx_key, work, outbox, "full@example.com")
    header = next(v for k, v in outbox.get(entry.key).headers if k.lower() == "message-id")
    event = {"type": "bounce", "bounce_type": "soft", "message_id": " ".join(header.split()),
             "recipient": "full@example.com", "smtp_code": 552, "diagnostic": "mailbox full", "id": "evt-1"}
    r = client.post("/webhooks/relay", data=json.dumps(event), headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 200, r.get_data(as_text=True)
    got = client.get(f"/api/v1/tx/{message_id}", headers=tx_key).get_json()
    assert got["status"] == "bounced" and got["smtp_code"] == 552 and "soft bounce" in got["reason"]
    # One soft bounce: the address is not suppressed yet (BouncePolicy), as for campaign mail.
    assert not is_suppressed(fresh(db_session), "full@example.com")
    # Someone else's message is untouched.
    other_id, _ = _send(client, tx_key, work, outbox, "fine@example.com")
    assert client.get(f"/api/v1/tx/{other_id}", headers=tx_key).get_json()["status"] == "sent"
