"""Relay webhooks: shared-secret authentication and the normalized JSON format of docs/webhooks.md."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from campaigns.contacts.suppression import is_suppressed
from campaigns.models import Contact, ContactStatus, Event
from campaigns.reports.campaign_report import campaign_report
from campaigns.sending import lifecycle as sending
from tests.helpers import fresh

SECRET = "relay-shared-secret-0123456789"


@pytest.fixture()
def sent(app, runtime, db_session, make_contacts, make_campaign, outbox, run_worker):
    app.config["WEBHOOK_SECRET"] = SECRET
    topic, contacts = make_contacts(4)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    ids = {}
    for m in outbox.list():
        ids[m.recipients[0]] = re.search(r"bounces\+([\w-]+)@", m.envelope_from).group(1)
    return campaign, contacts, ids


def post(client, payload, *, secret: str = SECRET, sign: bool = False):
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if sign:
        headers["X-Rapport-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    elif secret:
        headers["Authorization"] = f"Bearer {secret}"
    return client.post("/webhooks/relay", data=body, headers=headers)



def test_unauthenticated_or_unconfigured_calls_change_nothing(app, client, db_session, sent) -> None:
    _campaign, contacts, ids = sent
    event = {"type": "complaint", "rapport_id": ids[contacts[0].email]}
    assert post(client, event, secret="").status_code == 401
    assert post(client, event, secret="wrong").status_code == 401
    assert post(client, event, secret="wrong", sign=True).status_code == 401
    app.config["WEBHOOK_SECRET"] = ""
    assert post(client, event).status_code == 404
    assert fresh(db_session).get(Contact, contacts[0].id).status == ContactStatus.SUBSCRIBED


def test_normalized_events_update_the_contact_list(client, db_session, runtime, sent, run_worker) -> None:
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
    assert is_suppressed(db, contacts[0].email) and is_suppressed(db, contacts[1].email)
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
def test_malformed_bodies_get_a_400(client, sent, body: bytes) -> None:
    r = client.post("/webhooks/relay", data=body, headers={"Authorization": f"Bearer {SECRET}",
                                                           "Content-Type": "application/json"})
    assert r.status_code == 400


# ---------------------------------------------------------------- native relay payloads

def basic(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"rapport:{secret}".encode()).decode()}


def results(r) -> list[str]:
    assert r.status_code == 200, r.get_data(as_text=True)
    return [x["result"] for x in r.get_json()["results"]]


def statuses(db_session, contacts) -> list[str]:
    db = fresh(db_session)
    return [str(db.get(Contact, c.id).status) for c in contacts]


@pytest.fixture()
def sns(app):
    """A self-signed stand-in for SNS's signing certificate, served at an sns.*.amazonaws.com URL."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    cert_url = f"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-{uuid.uuid4().hex}.pem"
    fetched: list[str] = []

    def get(url: str) -> bytes:
        fetched.append(url)
        if url == cert_url:
            return cert.public_bytes(serialization.Encoding.PEM)
        return b"<ConfirmSubscriptionResponse/>"

    app.config["RELAY_HTTP_GET"] = get

    def sign(message: dict, *, version: str = "1") -> dict:
        fields = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type") \
            if message["Type"] == "Notification" else \
            ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
        canonical = "".join(f"{k}\n{message[k]}\n" for k in fields if k in message)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = key.sign(canonical.encode(), padding.PKCS1v15(), algorithm)
        return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode(),
                "SigningCertURL": cert_url}

    return sign, fetched


TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:rapport-ses-feedback"


def sns_notification(ses: dict) -> dict:
    return {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC_ARN,
            "Message": json.dumps(ses), "Timestamp": "2026-11-23T10:00:01.000Z",
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"}


def ses_mail(token: str, to: str, domain: str) -> dict:
    return {"timestamp": "2026-11-23T09:59:58.000Z", "source": "news@shop.test",
            "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/shop.test",
            "messageId": "0102018c0a1b2c3d-6f0a1a2b-0000-0000-0000-000000000000-000000", "destination": [to],
            "headersTruncated": False,
            "headers": [{"name": "From", "value": "Green Thumb <news@shop.test>"}, {"name": "To", "value": to},
                        {"name": "Message-ID", "value": f"<{token}@{domain}>"},
                        {"name": "X-Rapport-ID", "value": token}],
            "commonHeaders": {"from": ["Green Thumb <news@shop.test>"], "to": [to],
                              "messageId": f"<{token}@{domain}>", "subject": "Our news"}}


def test_amazon_ses_through_sns_bounces_and_complains(client, db_session, runtime, sent, sns) -> None:
    _campaign, contacts, ids = sent
    sign, fetched = sns
    domain = runtime.settings.dkim_domain
    a, b, c = contacts[:3]
    bounce = {"notificationType": "Bounce", "mail": ses_mail(ids[a.email], a.email, domain),
              "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "feedbackId": "fb-1",
                         "timestamp": "2026-11-23T10:00:00.000Z", "reportingMTA": "dsn; a1-2.smtp-out.amazonses.com",
                         "bouncedRecipients": [{"emailAddress": a.email, "action": "failed", "status": "5.1.1",
                                                "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}
    complaint = {"notificationType": "Complaint", "mail": ses_mail(ids[b.email], b.email, domain),
                 "complaint": {"feedbackId": "fb-2", "complaintFeedbackType": "abuse",
                               "timestamp": "2026-11-23T10:05:00.000Z", "userAgent": "Yahoo!-Mail-Feedback/1.0",
                               "complainedRecipients": [{"emailAddress": b.email}]}}
    delivery = {"eventType": "Delivery", "mail": ses_mail(ids[c.email], c.email, domain),
                "delivery": {"timestamp": "2026-11-23T10:00:02.000Z", "recipients": [c.email],
                             "smtpResponse": "250 ok", "processingTimeMillis": 512}}
    url = "/webhooks/relay/ses"
    # SNS sends no credentials until challenged.
    first = client.post(url, data=json.dumps(sign(sns_notification(bounce))), content_type="text/plain")
    assert first.status_code == 401 and first.headers["WWW-Authenticate"].startswith("Basic")
    assert results(client.post(url, data=json.dumps(sign(sns_notification(bounce))), headers=basic(),
                               content_type="text/plain")) == ["hard_bounce"]
    assert results(client.post(url, data=json.dumps(sign(sns_notification(complaint), version="2")),
                               headers=basic(), content_type="text/plain")) == ["complaint"]
    assert results(client.post(url, data=json.dumps(sign(sns_notification(delivery))), headers=basic(),
                               content_type="text/plain")) == ["delivered"]
    assert statuses(db_session, contacts[:3]) == ["bounced", "complained", "subscribed"]
    bounce_event = fresh(db_session).scalar(select(Event).where(Event.type == "bounce"))
    assert bounce_event.send_id is not None and bounce_event.contact_id == a.id
    # Altered after signing, or signed by a certificate that is not on an SNS host: refused, nothing changes.
    forged = sign(sns_notification({**complaint, "mail": ses_mail(ids[c.email], c.email, domain),
                                    "complaint": {**complaint["complaint"], "feedbackId": "fb-3",
                                                  "complainedRecipients": [{"emailAddress": c.email}]}}))
    forged["Message"] = forged["Message"].replace("abuse", "abuse ")
    assert client.post(url, data=json.dumps(forged), headers=basic(), content_type="text/plain").status_code == 403
    elsewhere = {**sign(sns_notification(complaint)), "SigningCertURL": "https://evil.example/sns.pem"}
    assert client.post(url, data=json.dumps(elsewhere), headers=basic(), content_type="text/plain").status_code == 403
    assert statuses(db_session, [c]) == ["subscribed"]
    # Subscribing the endpoint to the topic: Rapport confirms by visiting the SubscribeURL.
    subscribe_url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=abc"
    confirm = sign({"Type": "SubscriptionConfirmation", "MessageId": "m-1", "Token": "abc", "TopicArn": TOPIC_ARN,
                    "Message": "You have chosen to subscribe to the topic", "SubscribeURL": subscribe_url,
                    "Timestamp": "2026-11-23T09:00:00.000Z"})
    r = client.post(url, data=json.dumps(confirm), headers=basic(), content_type="text/plain")
    assert r.status_code == 200 and r.get_json()["subscribed"] == TOPIC_ARN and subscribe_url in fetched


def test_postmark_webhooks_with_basic_auth(client, db_session, sent) -> None:
    _campaign, contacts, _ids = sent
    a, b, c = contacts[:3]
    hard = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
            "Name": "Hard bounce", "Tag": "", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {}, "ServerID": 23, "MessageStream": "outbound",
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": a.email, "From": "news@shop.test", "BouncedAt": "2026-11-23T10:33:54.9070259Z",
            "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "Our news"}
    spam = {"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "TypeCode": 512,
            "MessageID": "00000000-0000-0000-0000-000000000000", "Email": b.email,
            "BouncedAt": "2026-11-23T10:40:00Z", "MessageStream": "outbound"}
    autoreply = {**hard, "ID": 43, "Type": "AutoResponder", "TypeCode": 2, "Email": c.email}
    delivery = {"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
                "MessageID": "883953f4-6105-42a2-a16a-77a8eac79484", "Recipient": c.email, "Tag": "",
                "DeliveredAt": "2026-11-23T10:33:54Z", "Details": "Test delivery webhook details", "Metadata": {}}
    url = "/webhooks/relay/postmark"
    assert client.post(url, json=hard, headers=basic("wrong")).status_code == 401
    assert client.post(url, json=hard).status_code == 401
    assert results(client.post(url, json=hard, headers=basic())) == ["hard_bounce"]
    assert results(client.post(url, json=spam, headers=basic())) == ["complaint"]
    assert results(client.post(url, json=autoreply, headers=basic())) == ["ignored"]
    assert results(client.post(url, json=delivery, headers=basic())) == ["delivered"]
    assert results(client.post(url, json=hard, headers=basic())) == ["duplicate"]     # a retried delivery
    assert statuses(db_session, contacts[:3]) == ["bounced", "complained", "subscribed"]
    assert client.post(url, json={"hello": 1}, headers=basic()).status_code == 400


MAILGUN_KEY = "key-0123456789abcdef0123456789abcdef"


def mailgun(event_data: dict, *, key: str = MAILGUN_KEY, age: float = 0) -> dict:
    timestamp = str(int(time.time() - age))
    token = uuid.uuid4().hex + uuid.uuid4().hex[:18]
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event_data}


def test_mailgun_signed_webhooks(app, client, db_session, runtime, sent, run_worker) -> None:
    app.config["MAILGUN_SIGNING_KEY"] = MAILGUN_KEY
    _campaign, contacts, ids = sent
    domain = runtime.settings.dkim_domain
    a, b, c = contacts[:3]

    def headers(contact: Contact) -> dict:
        return {"to": contact.email, "message-id": f"{ids[contact.email]}@{domain}",
                "from": "Green Thumb <news@shop.test>", "subject": "Our news"}

    failed = {"event": "failed", "id": "G9Bn5sl1TC6nu79C8C0bwg", "timestamp": time.time(), "severity": "permanent",
              "reason": "bounce", "recipient": a.email, "log-level": "error",
              "message": {"headers": headers(a), "attachments": [], "size": 111},
              "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist",
                                  "description": "", "attempt-no": 1, "enhanced-code": "5.1.1"},
              "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False}}
    complained = {"event": "complained", "id": "-Agny091SquKnsrW2NEKUA", "timestamp": time.time(),
                  "recipient": b.email, "message": {"headers": headers(b)}}
    opened = {"event": "opened", "id": "-DjzMXi2RQqsmaqNFGCvFA", "timestamp": time.time(), "recipient": c.email,
              "ip": "203.0.113.20", "message": {"headers": headers(c)},
              "client-info": {"client-type": "browser", "client-os": "Linux", "device-type": "desktop",
                              "client-name": "Firefox",
                              "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}}
    url = "/webhooks/relay/mailgun"
    assert client.post(url, json=mailgun(failed, key="not-the-key")).status_code == 401
    assert client.post(url, json=mailgun(failed, age=3600)).status_code == 401      # an old, replayed signature
    assert results(client.post(url, json=mailgun(failed))) == ["hard_bounce"]
    assert results(client.post(url, json=mailgun(complained))) == ["complaint"]
    assert results(client.post(url, json=mailgun(opened))) == ["open"]
    assert results(client.post(url, json=mailgun({"event": "unsubscribed", "id": "x1", "recipient": c.email,
                                                   "timestamp": time.time()}))) == ["ignored"]
    run_worker()
    assert statuses(db_session, contacts[:3]) == ["bounced", "complained", "subscribed"]
    (open_event,) = fresh(db_session).scalars(select(Event).where(Event.type == "open"))
    assert open_event.contact_id == c.id and open_event.machine is False
    assert fresh(db_session).get(Contact, c.id).last_opened_at is not None


def test_sendgrid_signed_event_webhook(app, client, db_session, runtime, sent, run_worker) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    app.config["SENDGRID_VERIFICATION_KEY"] = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    _campaign, contacts, ids = sent
    domain = runtime.settings.dkim_domain
    a, b, c, d = contacts
    now = int(time.time())

    def ev(contact: Contact, event: str, **extra) -> dict:
        return {"email": contact.email, "timestamp": now, "smtp-id": f"<{ids[contact.email]}@{domain}>",
                "event": event, "category": ["newsletter"], "sg_event_id": uuid.uuid4().hex,
                "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", **extra}

    batch = [
        ev(a, "processed"),
        ev(a, "bounce", reason="550 5.1.1 The email account that you tried to reach does not exist", status="5.1.1",
           type="bounce", bounce_classification="Invalid Address"),
        ev(b, "spamreport"),
        ev(c, "delivered", response="250 OK", ip="168.1.1.1", tls=1),
        ev(c, "click", url="https://shop.test/events", url_offset={"index": 0, "type": "html"},
           useragent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
           ip="203.0.113.44"),
        ev(d, "bounce", reason="421 4.7.0 Try again later", status="4.7.0", type="blocked"),
        ev(d, "deferred", response="400 try again later", attempt="5"),
    ]
    body = json.dumps(batch).encode()

    def signed(payload: bytes, *, stamp: str | None = None) -> dict:
        stamp = stamp or str(now)
        signature = key.sign(stamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
        return {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature":
                base64.b64encode(signature).decode(), "X-Twilio-Email-Event-Webhook-Timestamp": stamp}

    url = "/webhooks/relay/sendgrid"
    tampered = body.replace(b"spamreport", b"delivered!")
    assert client.post(url, data=tampered, headers=signed(body)).status_code == 401
    assert client.post(url, data=body, headers={"Content-Type": "application/json"}).status_code == 401
    assert client.post(url, data=body, headers=basic()).status_code == 401      # the key is configured: sign
    assert results(client.post(url, data=body, headers=signed(body))) == [
        "ignored", "hard_bounce", "complaint", "delivered", "click", "soft_bounce", "ignored"]
    run_worker()
    assert statuses(db_session, contacts) == ["bounced", "complained", "subscribed", "subscribed"]
    click = fresh(db_session).scalar(select(Event).where(Event.type == "click"))
    assert click.contact_id == c.id and click.data["url"] == "https://shop.test/events"


def test_native_endpoints_answer_404_when_not_configured_or_unknown(app, client, sent) -> None:
    assert client.post("/webhooks/relay/sparkpost", json={}, headers=basic()).status_code == 404
    app.config["WEBHOOK_SECRET"] = ""
    for relay in ("ses", "postmark", "mailgun", "sendgrid"):
        assert client.post(f"/webhooks/relay/{relay}", json={}, headers=basic()).status_code == 404
