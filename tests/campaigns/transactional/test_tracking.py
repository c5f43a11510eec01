"""Opens and clicks of transactional messages through the real app, Redis hit queue and worker: the message's own
sealed tokens (/to/, /tc/), people told from machines, per-message counts in GET /api/v1/tx/{id}, the contact's
timeline, the template's report, and a personalised link rendered with the API call's variables."""

from __future__ import annotations

import re

from sqlalchemy import select

from campaigns.composing.editor import save_campaign
from campaigns.contacts.records import timeline
from campaigns.models import Contact, Event, EventType, TxMessage
from campaigns.reports.campaign_report import campaign_report
from mailer.tracking import Purpose
from tests.campaigns.sending.test_sending import messages
from tests.campaigns.transactional.conftest import receipt_body
from tests.campaigns.web.test_admin import admin_user, logged_in  # noqa: F401 - fixtures
from tests.helpers import fresh

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
MAIL_APP = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko)"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel)"


def _urls(msg) -> tuple[str, list[str]]:
    """(open pixel path, click paths) of a captured message."""
    def path(u: str) -> str:
        return "/" + u.split("/", 3)[3]
    pixel = re.search(r'src="(https?://[^"]+/to/[^"]+)"', msg.html).group(1)
    clicks = list(dict.fromkeys(re.findall(r'href="(https?://[^"]+/tc/[^"]+)"', msg.html)))
    return path(pixel), [path(c) for c in clicks]


def _sent(client, tx_key, work, outbox, body: dict) -> tuple[str, object]:
    r = client.post("/api/v1/tx", json=body, headers=tx_key)
    assert r.status_code == 202, r.get_json()
    work()
    (msg,) = [m for m in messages(outbox) if m.recipients == (body["to"],)]
    return r.get_json()["message_id"], msg


def test_opens_and_clicks_are_recorded_per_message_and_read_back(client, runtime, db_session, receipt, tx_key,
                                                                 outbox, work) -> None:
    message_id, msg = _sent(client, tx_key, work, outbox, receipt_body())
    assert "/o/" not in msg.html and "/c/" not in msg.html       # its own tokens, not a send's
    pixel, (click,) = _urls(msg)
    untouched = client.get(f"/api/v1/tx/{message_id}", headers=tx_key).get_json()["tracking"]
    assert untouched == {"machine": False, "opens": 0, "clicks": 0, "first_opened_at": None,
                         "first_clicked_at": None}
    assert client.get(pixel, headers={"User-Agent": MAIL_APP}).status_code == 200
    r = client.get(click, headers={"User-Agent": BROWSER})
    assert r.status_code == 302 and r.headers["Location"] == "https://shop.example.com/orders/track"
    assert client.get(click, headers={"User-Agent": SCANNER}).status_code == 302     # a mail scanner
    assert client.head(click, headers={"User-Agent": BROWSER}).status_code == 302    # a link checker
    assert fresh(db_session).scalars(select(Event).where(Event.type == EventType.CLICK)).all() == []   # queued
    work()                                                        # the drain job writes them
    got = client.get(f"/api/v1/tx/{message_id}", headers=tx_key).get_json()["tracking"]
    assert (got["opens"], got["clicks"]) == (1, 1) and got["first_opened_at"] and got["first_clicked_at"]
    everything = client.get(f"/api/v1/tx/{message_id}?machine=true", headers=tx_key).get_json()["tracking"]
    assert (everything["machine"], everything["opens"], everything["clicks"]) == (True, 1, 3)
    session = fresh(db_session)
    tx = session.scalar(select(TxMessage).where(TxMessage.public_id == message_id))
    clicks = session.scalars(select(Event).where(Event.type == EventType.CLICK).order_by(Event.id)).all()
    assert {(e.tx_message_id, e.send_id, e.campaign_id) for e in clicks} == {(tx.id, None, receipt.id)}
    assert sorted(e.data.get("machine", "") for e in clicks) == ["", "HEAD request", "security scanner"]
    # The contact's engagement and timeline count the person's open and click, naming the message.
    contact = session.scalar(select(Contact).where(Contact.email == "ada@example.com"))
    assert contact.last_opened_at is not None and contact.last_clicked_at is not None
    assert contact.engagement_score > 0
    entries = timeline(session, contact.id).entries
    human = [(e.event.type, e.event.data["message_id"]) for e in entries
             if e.event.type in (EventType.OPEN, EventType.CLICK) and not e.event.machine]
    assert sorted(human) == [(EventType.CLICK, message_id), (EventType.OPEN, message_id)]
    # The template's report: messages sent, opened, clicked (people).
    report = campaign_report(session, receipt.id)
    assert report["transactional"] == {"messages": 1, "sent": 1, "opened": 1, "clicked": 1, "bounced": 0}


def test_a_click_without_an_open_implies_one_and_a_sweep_of_links_is_a_machine(client, db_session, tx_key,
                                                                                outbox, work) -> None:
    mjml = ("<mjml><mj-body><mj-section><mj-column><mj-text>Order {{ order_number }} shipped.</mj-text>"
            '<mj-button href="https://shop.example.com/orders/{{ order_number }}">Your order</mj-button>'
            '<mj-button href="https://shop.example.com/help">Help</mj-button>'
            "</mj-column></mj-section></mj-body></mjml>")
    save_campaign(db_session, {"name": "Shipped", "kind": "transactional", "slug": "shipped",
                               "subject": "Shipped", "mjml": mjml})
    db_session.commit()
    first, msg = _sent(client, tx_key, work, outbox, receipt_body(template="shipped"))
    _pixel, (order, help_) = _urls(msg)
    # A personalised link goes where the API call's variables say, on the template's own site.
    r = client.get(order, headers={"User-Agent": BROWSER})
    assert r.status_code == 302 and r.headers["Location"] == "https://shop.example.com/orders/A-1042"
    work()
    got = client.get(f"/api/v1/tx/{first}", headers=tx_key).get_json()["tracking"]
    assert (got["opens"], got["clicks"]) == (1, 1)                # the click implied the open (images off)
    # Another message: both its links fetched within two seconds (a browser agent, but a scanner's sweep): machine.
    second, msg2 = _sent(client, tx_key, work, outbox, receipt_body(template="shipped", to="bob@example.com"))
    _pixel, links = _urls(msg2)
    for link in links:
        client.get(link, headers={"User-Agent": BROWSER})
    work()
    got = client.get(f"/api/v1/tx/{second}", headers=tx_key).get_json()["tracking"]
    assert (got["opens"], got["clicks"]) == (0, 0)
    assert client.get(f"/api/v1/tx/{second}?machine=true", headers=tx_key).get_json()["tracking"]["clicks"] == 2


def test_tokens_are_sealed_per_purpose_and_message(client, runtime, db_session, receipt, tx_key, outbox,
                                                   work) -> None:
    message_id, msg = _sent(client, tx_key, work, outbox, receipt_body())
    pixel, (click,) = _urls(msg)
    token = click.rsplit("/", 1)[1]
    assert client.get(f"/c/{token}").status_code == 404            # a transactional click is no campaign click
    assert client.get(f"/tc/{token[:-2]}xy").status_code == 404   # altered
    assert client.get("/tc/" + runtime.tokens.seal(Purpose.CLICK, 1, 1)).status_code == 404
    forged_open = client.get("/to/" + runtime.tokens.seal(Purpose.OPEN, 1))
    assert forged_open.status_code == 200 and forged_open.mimetype == "image/gif"   # a GIF, nothing recorded
    assert client.post(pixel).status_code == 405
    work()
    got = client.get(f"/api/v1/tx/{message_id}?machine=true", headers=tx_key).get_json()["tracking"]
    assert (got["opens"], got["clicks"]) == (0, 0)


def test_the_admin_outbox_shows_a_message_without_firing_its_tracking(client, db_session, receipt, tx_key,
                                                                      outbox, work, logged_in) -> None:  # noqa: F811
    message_id, msg = _sent(client, tx_key, work, outbox, receipt_body())
    body = logged_in.get(f"/admin/outbox/{msg.key}/body").get_data(as_text=True)
    assert "/to/" not in body and "/tc/" not in body                # blanked pixel, links to their targets
    assert 'href="https://shop.example.com/orders/track"' in body
    work()
    got = client.get(f"/api/v1/tx/{message_id}?machine=true", headers=tx_key).get_json()["tracking"]
    assert (got["opens"], got["clicks"]) == (0, 0)


def test_a_relay_webhook_open_names_the_message(app, client, db_session, receipt, tx_key, outbox, work) -> None:
    import json

    app.config["WEBHOOK_SECRET"] = "relay-shared-secret-0123456789"
    message_id, msg = _sent(client, tx_key, work, outbox, receipt_body())
    header = next(v for k, v in msg.headers if k.lower() == "message-id")
    for kind, extra in (("open", {}), ("click", {"url": "https://shop.example.com/orders/track"})):
        event = {"type": kind, "message_id": " ".join(header.split()), "user_agent": MAIL_APP, "id": f"e-{kind}",
                 **extra}
        r = client.post("/webhooks/relay", data=json.dumps(event), headers={
            "Content-Type": "application/json", "Authorization": "Bearer relay-shared-secret-0123456789"})
        assert r.status_code == 200, r.get_data(as_text=True)
    work()
    got = client.get(f"/api/v1/tx/{message_id}", headers=tx_key).get_json()["tracking"]
    assert (got["opens"], got["clicks"]) == (1, 1)
