"""POST /api/v1/tx and GET /api/v1/tx/{id} with a real worker and the capture SMTP server: the message arrives
DKIM-signed with its variables and attachment, suppressed addresses get nothing, idempotency, scopes, checks."""

from __future__ import annotations

import base64
import email
import email.policy

import dkim
import pytest
from sqlalchemy import select

from campaigns.contacts.suppression import suppress
from campaigns.models import (
    Contact,
    ContactStatus,
    Event,
    EventType,
    SuppressionReason,
    TxMessage,
    TxStatus,
)
from campaigns.transactional import files
from tests.campaigns.api.conftest import auth
from tests.campaigns.sending.test_sending import dns_for, messages
from tests.campaigns.transactional.conftest import PDF, pdf_attachment, receipt_body
from tests.helpers import fresh


def test_a_receipt_arrives_signed_with_its_variables_and_attachment(client, runtime, db_session, receipt, tx_key,
                                                                    outbox, work) -> None:
    r = client.post("/api/v1/tx", json=receipt_body(attachments=[pdf_attachment()]), headers=tx_key)
    assert r.status_code == 202, r.get_json()
    out = r.get_json()
    assert out["status"] == "queued" and out["template"] == "order-receipt" and out["to"] == "ada@example.com"
    assert r.headers["Location"] == f"/api/v1/tx/{out['message_id']}"
    assert out["attachments"] == [{"filename": "invoice-1042.pdf", "content_type": "application/pdf",
                                   "size": len(PDF)}]
    assert outbox.count() == 0          # queued, not sent inside the request
    work()
    (msg,) = messages(outbox)
    assert msg.recipients == ("ada@example.com",)
    assert dkim.verify(msg.raw, dnsfunc=dns_for(runtime.settings))
    parsed = email.message_from_bytes(msg.raw, policy=email.policy.default)
    assert parsed["Subject"] == "Your order A-1042"
    assert parsed["List-Unsubscribe"] is None       # transactional: no list headers
    text = parsed.get_body(("plain",)).get_content()
    assert "Order A-1042" in text and "Seed tray × 2; Trowel × 1;" in text and "€ 42.00" in text
    assert "Thank you, Ada!" in text
    (attached,) = list(parsed.iter_attachments())
    assert attached.get_filename() == "invoice-1042.pdf" and attached.get_content_type() == "application/pdf"
    assert attached.get_content() == PDF
    # The status read back: sent, with the relay's reply; the file's bytes are no longer kept.
    status = client.get(r.headers["Location"], headers=tx_key)
    assert status.status_code == 200
    got = status.get_json()
    assert got["status"] == "sent" and got["smtp_code"] == 250 and got["sent_at"] and got["attempts"] == 1
    assert got["subject"] == "Your order A-1042" and got["attachments"][0]["size"] == len(PDF)
    row = fresh(db_session).scalar(select(TxMessage))
    assert "data" not in row.attachments[0]
    # A new address became a contact without marketing consent, and the receipt is on its timeline.
    contact = db_session.scalar(select(Contact).where(Contact.email == "ada@example.com"))
    assert contact.status == ContactStatus.UNSUBSCRIBED and contact.consent_at is None
    assert (contact.first_name, contact.last_name) == ("Ada", "Lovelace")
    event = db_session.scalar(select(Event).where(Event.contact_id == contact.id))
    assert event.type == EventType.SENT and event.campaign_id == receipt.id
    assert event.data["message_id"] == out["message_id"]


def test_the_template_is_named_by_id_too_and_an_unsubscribed_contact_still_gets_a_receipt(
        client, db_session, receipt, tx_key, make_contacts, outbox, work) -> None:
    _topic, (person,) = make_contacts(1)
    person.status = ContactStatus.UNSUBSCRIBED
    db_session.commit()
    r = client.post("/api/v1/tx", json=receipt_body(to=person.email.upper(), template=receipt.id), headers=tx_key)
    assert r.status_code == 202 and r.get_json()["contact_id"] == person.id
    work()
    assert [m.recipients for m in messages(outbox)] == [(person.email,)]


@pytest.mark.parametrize("how", ["bounced", "complained", "suppression list"])
def test_no_mail_goes_to_a_bounced_complained_or_suppressed_address(client, db_session, receipt, tx_key,
                                                                    make_contacts, outbox, work, how) -> None:
    _topic, (person,) = make_contacts(1)
    if how == "suppression list":
        suppress(db_session, "gone@example.com", SuppressionReason.HARD_BOUNCE, "test")
        address = "gone@example.com"
    else:
        person.status = ContactStatus.BOUNCED if how == "bounced" else ContactStatus.COMPLAINED
        address = person.email
    db_session.commit()
    r = client.post("/api/v1/tx", json=receipt_body(to=address), headers=tx_key)
    assert r.status_code == 202
    out = r.get_json()
    assert out["status"] == "suppressed" and out["reason"]
    work()
    assert outbox.count() == 0
    got = client.get(f"/api/v1/tx/{out['message_id']}", headers=tx_key).get_json()
    assert got["status"] == "suppressed"


def test_an_address_that_bounces_after_the_call_is_checked_again_at_send_time(client, db_session, receipt, tx_key,
                                                                              make_contacts, outbox, work) -> None:
    _topic, (person,) = make_contacts(1)
    r = client.post("/api/v1/tx", json=receipt_body(to=person.email), headers=tx_key)
    assert r.get_json()["status"] == "queued"
    fresh(db_session).get(Contact, person.id).status = ContactStatus.COMPLAINED
    db_session.commit()
    work()
    assert outbox.count() == 0
    assert fresh(db_session).scalar(select(TxMessage.status)) == TxStatus.SUPPRESSED


def test_a_retried_call_with_the_same_idempotency_key_sends_once(client, receipt, tx_key, outbox, work) -> None:
    headers = {**tx_key, "Idempotency-Key": "order-A-1042-receipt"}
    first = client.post("/api/v1/tx", json=receipt_body(), headers=headers)
    again = client.post("/api/v1/tx", json=receipt_body(), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["message_id"] == first.get_json()["message_id"]
    other = client.post("/api/v1/tx", json=receipt_body(to="someone.else@example.com"), headers=headers)
    assert other.status_code == 422 and other.mimetype == "application/problem+json"
    work()
    assert outbox.count() == 1


def test_a_key_without_the_scope_gets_403_problem_json(client, receipt, make_key, outbox, work) -> None:
    headers = auth(make_key("contacts:read", "orders:write"))
    r = client.post("/api/v1/tx", json=receipt_body(), headers=headers)
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    assert r.get_json()["required_scope"] == "send:transactional"
    assert client.get("/api/v1/tx/tx_whatever", headers=headers).status_code == 403
    assert client.post("/api/v1/tx", json=receipt_body()).status_code == 401
    work()
    assert outbox.count() == 0


def test_a_key_reads_the_status_of_its_own_messages_only(client, receipt, make_key, work) -> None:
    shop, crm = auth(make_key("send:transactional", name="Shop")), auth(make_key("send:transactional", name="CRM"))
    reader = auth(make_key("send:transactional", "contacts:read", name="Support"))
    mine = client.post("/api/v1/tx", json=receipt_body(), headers=shop).get_json()["message_id"]
    work()
    assert client.get(f"/api/v1/tx/{mine}", headers=shop).get_json()["status"] == "sent"
    other = client.get(f"/api/v1/tx/{mine}", headers=crm)
    assert other.status_code == 404 and other.mimetype == "application/problem+json"
    assert "ada@example.com" not in other.get_data(as_text=True)
    assert client.get(f"/api/v1/tx/{mine}", headers=reader).get_json()["status"] == "sent"


def test_an_unknown_message_id_is_404(client, tx_key) -> None:
    r = client.get("/api/v1/tx/tx_nosuchmessage", headers=tx_key)
    assert r.status_code == 404 and r.mimetype == "application/problem+json"


def _problem(client, headers, body, status=422):
    r = client.post("/api/v1/tx", json=body, headers=headers)
    assert r.status_code == status, r.get_json()
    assert r.mimetype == "application/problem+json"
    return r.get_json()


def test_bad_input_gets_a_clear_4xx_and_sends_nothing(client, db_session, receipt, make_campaign, tx_key,
                                                      outbox, work, monkeypatch) -> None:
    assert "no transactional template" in _problem(client, tx_key, receipt_body(template="nope"), 404)["detail"]
    newsletter = make_campaign([])
    assert "nurture campaign" in _problem(client, tx_key, receipt_body(template=newsletter.id))["detail"]
    assert _problem(client, tx_key, receipt_body(variables={"contact": "x"}))["errors"][0]["field"] == \
        "variables.contact"
    assert _problem(client, tx_key, receipt_body(variables={"_links": 1}))["errors"][0]["field"] == "variables._links"
    assert _problem(client, tx_key, receipt_body(to="not an address"))
    exe = {"filename": "invoice.pdf", "content_type": "application/pdf",
           "content": base64.b64encode(b"MZ\x90\x00 an executable").decode()}
    assert "first bytes" in _problem(client, tx_key, receipt_body(attachments=[exe]))["detail"]
    renamed = pdf_attachment(name="invoice.pdf.exe")
    assert _problem(client, tx_key, receipt_body(attachments=[renamed]))["errors"][0]["field"] == \
        "attachments.0.filename"
    html = {"filename": "x.html", "content_type": "text/html", "content": base64.b64encode(b"<script>").decode()}
    assert "not an accepted type" in _problem(client, tx_key, receipt_body(attachments=[html]))["detail"]
    broken = {**pdf_attachment(), "content": "%%% not base64 %%%"}
    assert "not base64" in _problem(client, tx_key, receipt_body(attachments=[broken]))["detail"]
    path = pdf_attachment(name="../../etc/invoice.pdf")
    assert _problem(client, tx_key, receipt_body(attachments=[path]))["errors"][0]["field"] == \
        "attachments.0.filename"
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    big = _problem(client, tx_key, receipt_body(attachments=[pdf_attachment()]), 413)
    assert big["errors"][0]["field"] == "attachments.0.content"
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10_000)
    monkeypatch.setattr(files, "MAX_TOTAL_BYTES", 500)
    both = receipt_body(attachments=[pdf_attachment("a.pdf"), pdf_attachment("b.pdf")])
    assert _problem(client, tx_key, both, 413)["errors"][0]["field"] == "attachments"
    assert _problem(client, tx_key, receipt_body(variables={"blob": "x" * 40_000}), 413)
    assert fresh(db_session).scalar(select(TxMessage)) is None
    work()
    assert outbox.count() == 0


def test_a_recipients_messages_are_in_the_gdpr_export_and_go_with_the_erasure(client, db_session, receipt, tx_key,
                                                                              outbox, work) -> None:
    from campaigns.contacts.exports import erase_contact, gdpr_export

    out = client.post("/api/v1/tx", json=receipt_body(), headers=tx_key).get_json()
    work()
    contact_id = out["contact_id"]
    exported = gdpr_export(fresh(db_session), contact_id)["transactional_messages"]
    assert [(m["public_id"], m["status"], m["variables"]["order_number"]) for m in exported] == \
        [(out["message_id"], "sent", "A-1042")]
    erase_contact(db_session, contact_id, by="test")
    db_session.commit()
    assert db_session.scalar(select(TxMessage)) is None


def test_a_receipts_variables_are_its_own_whatever_features_add_to_campaign_mail(client, db_session, tx_key,
                                                                                 outbox, work) -> None:
    """Features' per-send values (a post-purchase run's `order`, a feed mailing's `feed_items`) belong to campaign
    sends: a transactional message, which has none, renders exactly the variables of its API call."""
    from campaigns.composing.editor import save_campaign

    save_campaign(db_session, {"name": "Shipped", "kind": "transactional", "slug": "shipped",
                               "subject": "Order {{ order.number }} shipped",
                               "mjml": "<mjml><mj-body><mj-section><mj-column><mj-text>Parcel {{ order.parcel }}"
                                       "{% for item in feed_items %} {{ item }}{% endfor %}"
                                       "</mj-text></mj-column></mj-section></mj-body></mjml>"})
    db_session.commit()
    body = {"template": "shipped", "to": "ada@example.com",
            "variables": {"order": {"number": "A-7", "parcel": "DHL 0042"}, "feed_items": ["theirs"]}}
    r = client.post("/api/v1/tx", json=body, headers=tx_key)
    assert r.status_code == 202, r.get_json()
    work()
    (msg,) = messages(outbox)
    parsed = email.message_from_bytes(msg.raw, policy=email.policy.default)
    assert parsed["Subject"] == "Order A-7 shipped"
    assert "Parcel DHL 0042 theirs" in parsed.get_body(("plain",)).get_content()
