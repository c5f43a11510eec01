"""mailer.relays: each relay's own authentication, checked with real signatures made here, and its payloads.

Per relay: a genuine request is accepted, a wrong credential or signature is refused, a replayed or stale
signature is refused where the relay's scheme carries a timestamp (Mailgun, SendGrid; SNS signs its Timestamp, so
changing it breaks the signature), and a malformed body is a RelayPayloadError, never something else.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from mailer.relays import (
    SIGNATURE_MAX_AGE,
    BounceType,
    MailgunRelay,
    PostmarkRelay,
    RapportRelay,
    RelayAuthError,
    RelayEvent,
    RelayEventType,
    RelayForbidden,
    RelayPayloadError,
    SendGridRelay,
    SesRelay,
)
from mailer.relays.base import basic_password, fresh, header

SECRET = "relay-shared-secret-0123456789"
NOW = 1_795_000_000.0


def clock() -> float:
    return NOW


def basic(password: str, user: str = "rapport") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ---------------------------------------------------------------- shared pieces


def test_event_types_and_bounce_types_keep_their_stored_strings() -> None:
    assert [str(t) for t in RelayEventType] == [
        "bounce", "complaint", "delivered", "open", "click", "ignored", "rejected"]
    assert [str(t) for t in BounceType] == ["hard", "soft"]


def test_an_event_as_dict_is_the_normalized_format_without_empty_fields() -> None:
    event = RelayEvent(RelayEventType.BOUNCE, id="x1", bounce_type=BounceType.SOFT, smtp_code=451)
    assert event.as_dict() == {"type": "bounce", "id": "x1", "bounce_type": "soft", "smtp_code": 451}
    assert type(event.as_dict()["type"]) is str and event.applicable
    assert not RelayEvent.ignored("why").applicable and RelayEvent.ignored("why").detail == "why"


def test_headers_are_matched_whatever_their_case() -> None:
    assert header({"x-twilio-EMAIL-event-webhook-signature": "s"}, "X-Twilio-Email-Event-Webhook-Signature") == "s"
    assert header({}, "Authorization") == ""
    assert basic_password({"authorization": "basic " + base64.b64encode(b"u:p:q").decode()}) == "p:q"
    assert basic_password({"Authorization": "Basic !!!not-base64"}) == ""
    assert basic_password({"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()}) == ""


def test_signature_timestamps_are_fresh_only_within_the_window() -> None:
    assert fresh(str(int(NOW)), clock) and fresh(str(NOW - SIGNATURE_MAX_AGE), clock)
    assert not fresh(str(NOW - SIGNATURE_MAX_AGE - 1), clock)
    assert not fresh(str(NOW + SIGNATURE_MAX_AGE + 1), clock)      # a clock far ahead is no better
    assert not fresh("", clock) and not fresh("soon", clock) and not fresh("1e999", clock)


# ---------------------------------------------------------------- Rapport's normalized format


def rapport_signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Rapport-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def test_rapport_accepts_the_bearer_secret_or_a_body_hmac() -> None:
    relay = RapportRelay(SECRET)
    body = json.dumps({"type": "complaint", "rapport_id": "tok"}).encode()
    relay.verify({"Authorization": f"Bearer {SECRET}"}, body)
    relay.verify(rapport_signed(body), body)
    assert relay.parse(body) == [RelayEvent(RelayEventType.COMPLAINT, rapport_id="tok")]


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {SECRET}"},
    rapport_signed(b"{}", "wrong"), {"X-Rapport-Signature": "sha256="}, {"X-Rapport-Signature": SECRET},
])
def test_rapport_refuses_wrong_credentials(headers: dict[str, str]) -> None:
    with pytest.raises(RelayAuthError):
        RapportRelay(SECRET).verify(headers, b"{}")


def test_rapport_refuses_a_signature_replayed_on_another_body() -> None:
    """The scheme has no timestamp; what a signature binds is the exact body."""
    original = json.dumps({"type": "delivered", "rapport_id": "tok"}).encode()
    altered = json.dumps({"type": "complaint", "rapport_id": "tok"}).encode()
    with pytest.raises(RelayAuthError):
        RapportRelay(SECRET).verify(rapport_signed(original), altered)


def test_rapport_without_a_secret_accepts_nothing() -> None:
    with pytest.raises(RelayAuthError):
        RapportRelay("").verify({"Authorization": "Bearer "}, b"{}")


@pytest.mark.parametrize("body", [b"not json", b"null", b"[]", b'{"events": []}', b'{"events": "x"}', b"7",
                                  json.dumps([{"type": "open"}] * 4).encode(), b"[" * 100_000])
def test_rapport_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(RelayPayloadError):
        RapportRelay(SECRET, max_events=3).parse(body)


def test_rapport_rejects_each_malformed_event_at_its_index() -> None:
    body = json.dumps({"events": [
        {"type": "bounce", "rapport_id": "a", "smtp_code": 550, "timestamp": "2026-11-23T10:00:00Z"},
        {"type": "teleport"}, "a string", {"type": "bounce", "bounce_type": "medium"},
        {"type": "bounce", "smtp_code": 700}, {"type": "bounce", "smtp_code": True}, {"type": "open", "ip": 5},
        {"type": "click", "url": "x" * 2001}, {"type": "complaint", "bounce_type": "medium"},
        {"ignored": "relay test ping"},
    ]}).encode()
    events = RapportRelay(SECRET).parse(body)
    assert [str(e.type) for e in events] == ["bounce", "rejected", "rejected", "rejected", "rejected", "rejected",
                                             "rejected", "rejected", "complaint", "ignored"]
    assert events[0] == RelayEvent(RelayEventType.BOUNCE, rapport_id="a", smtp_code=550, bounce_type=BounceType.HARD,
                                   timestamp="2026-11-23T10:00:00Z")
    assert events[1].detail == "type must be one of bounce, complaint, delivered, open, click"
    assert events[6].detail == "ip must be a string of at most 64 characters"
    assert events[8].bounce_type is None and events[9].detail == "relay test ping"


# ---------------------------------------------------------------- Postmark


POSTMARK_BOUNCE = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "Email": "a@x.test",
                   "Details": "smtp;550 5.1.1 The email account does not exist.", "BouncedAt": "2026-11-23T10:33Z",
                   "Metadata": {"rapport_id": "tok"}}


def test_postmark_accepts_the_shared_secret_as_basic_password_or_bearer() -> None:
    relay = PostmarkRelay(SECRET)
    body = json.dumps(POSTMARK_BOUNCE).encode()
    relay.verify(basic(SECRET), body)
    relay.verify(basic(SECRET, user="anyone"), body)
    relay.verify({"Authorization": f"Bearer {SECRET}"}, body)
    assert relay.parse(body) == [RelayEvent(
        RelayEventType.BOUNCE, id="postmark:4323372036854775807:bounce", rapport_id="tok", recipient="a@x.test",
        timestamp="2026-11-23T10:33Z", bounce_type=BounceType.HARD, smtp_code=550,
        diagnostic="smtp;550 5.1.1 The email account does not exist.")]


@pytest.mark.parametrize("headers", [{}, basic("wrong"), basic(""), {"Authorization": "Bearer wrong"},
                                     {"Authorization": SECRET}])
def test_postmark_refuses_a_wrong_or_missing_secret(headers: dict[str, str]) -> None:
    with pytest.raises(RelayAuthError):
        PostmarkRelay(SECRET).verify(headers, b"{}")


def test_postmark_without_a_configured_secret_accepts_not_even_an_empty_one() -> None:
    with pytest.raises(RelayAuthError):
        PostmarkRelay("").verify(basic(""), b"{}")


@pytest.mark.parametrize("body", [b"", b"not json", b"null", b"[]", b'{"hello": 1}', b'{"RecordType": 5}'])
def test_postmark_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(RelayPayloadError):
        PostmarkRelay(SECRET).parse(body)


def test_postmark_records_it_has_no_use_for_are_ignored() -> None:
    relay = PostmarkRelay(SECRET)
    (auto,) = relay.parse(json.dumps({**POSTMARK_BOUNCE, "Type": "AutoResponder"}).encode())
    (change,) = relay.parse(json.dumps({"RecordType": "SubscriptionChange"}).encode())
    assert auto.type is RelayEventType.IGNORED and change.type is RelayEventType.IGNORED


# ---------------------------------------------------------------- Mailgun


MAILGUN_KEY = "key-0123456789abcdef0123456789abcdef"
MAILGUN_FAILED = {"event": "failed", "id": "G9Bn5sl1", "timestamp": NOW, "severity": "temporary",
                  "recipient": "a@x.test", "message": {"headers": {"message-id": "tok@x.test"}},
                  "delivery-status": {"code": 452, "message": "mailbox full", "enhanced-code": "4.2.2"}}


def mailgun_body(event_data: object = MAILGUN_FAILED, *, key: str = MAILGUN_KEY, at: float = NOW,
                 token: str | None = None) -> bytes:
    stamp = str(int(at))
    token = uuid.uuid4().hex if token is None else token
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature},
                       "event-data": event_data}).encode()


def test_mailgun_accepts_its_signature() -> None:
    relay = MailgunRelay(MAILGUN_KEY, clock=clock)
    body = mailgun_body()
    relay.verify({}, body)
    assert relay.parse(body) == [RelayEvent(
        RelayEventType.BOUNCE, id="mailgun:G9Bn5sl1", message_id="<tok@x.test>", recipient="a@x.test",
        timestamp=NOW, bounce_type=BounceType.SOFT, smtp_code=452, status="4.2.2", diagnostic="mailbox full")]


@pytest.mark.parametrize("body", [
    mailgun_body(key="not-the-key"), mailgun_body(token=""), mailgun_body(token="t" * 201),
    mailgun_body().replace(b'"signature": "', b'"signature": "0'), b"not json", b'{"event-data": {}}',
])
def test_mailgun_refuses_a_wrong_or_incomplete_signature(body: bytes) -> None:
    with pytest.raises(RelayAuthError):
        MailgunRelay(MAILGUN_KEY, clock=clock).verify({}, body)


@pytest.mark.parametrize("at", [NOW - SIGNATURE_MAX_AGE - 1, NOW - 86_400, NOW + SIGNATURE_MAX_AGE + 60])
def test_mailgun_refuses_a_replayed_old_or_future_signature(at: float) -> None:
    with pytest.raises(RelayAuthError):
        MailgunRelay(MAILGUN_KEY, clock=clock).verify({}, mailgun_body(at=at))


def test_mailgun_without_a_signing_key_accepts_nothing() -> None:
    with pytest.raises(RelayAuthError):
        MailgunRelay("", clock=clock).verify({}, mailgun_body(key=""))


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"signature": {}}', b'{"event-data": {"event": 3}}'])
def test_mailgun_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(RelayPayloadError):
        MailgunRelay(MAILGUN_KEY, clock=clock).parse(body)


# ---------------------------------------------------------------- SendGrid


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_der(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid's settings page shows it: base64 DER."""
    return base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, at: float = NOW) -> dict[str, str]:
    stamp = str(int(at))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp}


SENDGRID_BATCH = json.dumps([
    {"email": "a@x.test", "event": "bounce", "type": "blocked", "reason": "421 4.7.0 Try again later",
     "status": "4.7.0", "smtp-id": "<tok@x.test>", "sg_event_id": "e1", "timestamp": int(NOW)},
    {"email": "b@x.test", "event": "processed"}, "junk",
]).encode()


def test_sendgrid_accepts_its_signature_with_a_der_or_pem_key(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    pem = sendgrid_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    headers = sendgrid_headers(sendgrid_key, SENDGRID_BATCH)
    for key_text in (sendgrid_der(sendgrid_key), pem):
        SendGridRelay(key_text, SECRET, clock=clock).verify(headers, SENDGRID_BATCH)
    events = SendGridRelay(sendgrid_der(sendgrid_key), "", clock=clock).parse(SENDGRID_BATCH)
    assert events[0] == RelayEvent(
        RelayEventType.BOUNCE, id="sendgrid:e1", message_id="<tok@x.test>", recipient="a@x.test",
        timestamp=int(NOW), bounce_type=BounceType.SOFT, status="4.7.0", smtp_code=421,
        diagnostic="421 4.7.0 Try again later")
    assert [e.type for e in events[1:]] == [RelayEventType.IGNORED, RelayEventType.IGNORED]


def test_sendgrid_refuses_a_tampered_body_or_another_key(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    relay = SendGridRelay(sendgrid_der(sendgrid_key), SECRET, clock=clock)
    headers = sendgrid_headers(sendgrid_key, SENDGRID_BATCH)
    with pytest.raises(RelayAuthError):
        relay.verify(headers, SENDGRID_BATCH.replace(b"bounce", b"bounc3"))
    with pytest.raises(RelayAuthError):
        relay.verify(sendgrid_headers(ec.generate_private_key(ec.SECP256R1()), SENDGRID_BATCH), SENDGRID_BATCH)
    with pytest.raises(RelayAuthError):
        relay.verify({**headers, "X-Twilio-Email-Event-Webhook-Signature": "%%%"}, SENDGRID_BATCH)
    with pytest.raises(RelayAuthError):     # the key is configured: the shared secret no longer suffices
        relay.verify(basic(SECRET), SENDGRID_BATCH)


@pytest.mark.parametrize("at", [NOW - SIGNATURE_MAX_AGE - 1, NOW + SIGNATURE_MAX_AGE + 1])
def test_sendgrid_refuses_a_replayed_old_or_future_signature(sendgrid_key: ec.EllipticCurvePrivateKey,
                                                             at: float) -> None:
    with pytest.raises(RelayAuthError):
        SendGridRelay(sendgrid_der(sendgrid_key), SECRET, clock=clock).verify(
            sendgrid_headers(sendgrid_key, SENDGRID_BATCH, at), SENDGRID_BATCH)


def test_sendgrid_refuses_a_verification_key_that_is_not_elliptic_curve(
        sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = base64.b64encode(rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    for key_text in (der, "not a key"):
        with pytest.raises(RelayAuthError):
            SendGridRelay(key_text, SECRET, clock=clock).verify(
                sendgrid_headers(sendgrid_key, SENDGRID_BATCH), SENDGRID_BATCH)


def test_sendgrid_without_a_key_takes_the_shared_secret() -> None:
    relay = SendGridRelay("", SECRET, clock=clock)
    relay.verify(basic(SECRET), SENDGRID_BATCH)
    with pytest.raises(RelayAuthError):
        relay.verify(basic("wrong"), SENDGRID_BATCH)


@pytest.mark.parametrize("body", [b"not json", b"null", b'{"event": "bounce"}', b'"x"'])
def test_sendgrid_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(RelayPayloadError):
        SendGridRelay("", SECRET, clock=clock).parse(body)


# ---------------------------------------------------------------- Amazon SES through SNS


TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:rapport-ses-feedback"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789.pem"
SUBSCRIBE_URL = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=t"
SES_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {"bounceType": "Permanent", "feedbackId": "fb-1", "timestamp": "2026-11-23T10:00:00.000Z",
               "bouncedRecipients": [{"emailAddress": "a@x.test", "status": "5.1.1",
                                      "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
    "mail": {"messageId": "ses-1", "headers": [{"name": "X-Rapport-ID", "value": "tok"}],
             "commonHeaders": {"messageId": "<tok@x.test>"}},
}


class SNS:
    """A stand-in for SNS: a self-signed certificate served at an SNS URL, and messages signed with its key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                     .sign(self.key, hashes.SHA256()))
        self.fetched: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url.endswith(".pem"):
            return self.cert.public_bytes(serialization.Encoding.PEM)
        return b"<ConfirmSubscriptionResponse/>"

    def sign(self, message: dict, *, version: str = "1", cert_url: str = CERT_URL) -> dict:
        fields = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type") \
            if message["Type"] == "Notification" else \
            ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
        canonical = "".join(f"{k}\n{message[k]}\n" for k in fields if k in message)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(canonical.encode(), padding.PKCS1v15(), algorithm)
        return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode(),
                "SigningCertURL": cert_url}

    def relay(self, topic_arns: tuple[str, ...] | list[str] = ()) -> SesRelay:
        """A relay that fetches from this stand-in, with a certificate cache of its own."""
        return SesRelay(SECRET, topic_arns=topic_arns, fetch=self.fetch, certificates={})


@pytest.fixture()
def sns() -> SNS:
    return SNS()


def notification(ses: object = SES_BOUNCE, **extra: str) -> dict:
    return {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC_ARN, "Message": json.dumps(ses),
            "Timestamp": "2026-11-23T10:00:01.000Z", **extra}


def as_body(message: dict) -> bytes:
    return json.dumps(message).encode()


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_accepts_a_signed_notification_behind_the_shared_secret(sns: SNS, version: str) -> None:
    relay = sns.relay()
    body = as_body(sns.sign(notification(), version=version))
    relay.verify(basic(SECRET), body)
    relay.verify(basic(SECRET), body)
    assert sns.fetched == [CERT_URL]        # the certificate is fetched once, then cached
    assert relay.confirm_subscription(body) is None
    assert relay.parse(body) == [RelayEvent(
        RelayEventType.BOUNCE, id="ses:fb-1:a@x.test", rapport_id="tok", message_id="<tok@x.test>",
        recipient="a@x.test", timestamp="2026-11-23T10:00:00.000Z", bounce_type=BounceType.HARD, status="5.1.1",
        smtp_code=550, diagnostic="smtp; 550 5.1.1 user unknown")]


def test_ses_refuses_a_wrong_shared_secret_before_looking_at_the_message(sns: SNS) -> None:
    body = as_body(sns.sign(notification()))
    for headers in ({}, basic("wrong"), {"Authorization": "Bearer wrong"}):
        with pytest.raises(RelayAuthError) as info:
            sns.relay().verify(headers, body)
        assert not isinstance(info.value, RelayForbidden)
    assert sns.fetched == []


def test_ses_refuses_a_tampered_message_or_another_signer(sns: SNS) -> None:
    signed = sns.sign(notification())
    forged = SNS().sign(notification())         # signed by a key whose certificate is not at CERT_URL
    for message in ({**signed, "Message": json.dumps({**SES_BOUNCE, "notificationType": "Complaint"})},
                    {**signed, "SignatureVersion": "3"}, {**signed, "Signature": "%%%"}, forged,
                    {**signed, "Type": "Surprise"}):
        with pytest.raises(RelayForbidden):
            sns.relay().verify(basic(SECRET), as_body(message))


def test_ses_refuses_a_replayed_message_with_a_new_timestamp(sns: SNS) -> None:
    """SNS signs the Timestamp: an old message presented as new no longer verifies."""
    signed = sns.sign(notification())
    with pytest.raises(RelayForbidden):
        sns.relay().verify(basic(SECRET), as_body({**signed, "Timestamp": "2026-12-02T08:00:00.000Z"}))


@pytest.mark.parametrize("cert_url", [
    "http://sns.eu-west-1.amazonaws.com/cert.pem",                 # not https
    "https://sns.eu-west-1.amazonaws.com.evil.test/cert.pem",      # not an amazonaws.com host
    "https://evil.test/sns.eu-west-1.amazonaws.com/cert.pem",
    "https://user@sns.eu-west-1.amazonaws.com/cert.pem",           # user info
    "https://sns.eu-west-1.amazonaws.com/cert.txt",                # not a .pem
    "https://s3.eu-west-1.amazonaws.com/cert.pem",
])
def test_ses_never_fetches_a_certificate_from_anywhere_but_sns(sns: SNS, cert_url: str) -> None:
    with pytest.raises(RelayForbidden):
        sns.relay().verify(basic(SECRET), as_body(sns.sign(notification(), cert_url=cert_url)))
    assert sns.fetched == []


def test_ses_accepts_china_region_certificates(sns: SNS) -> None:
    cert_url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem"
    sns.relay().verify(basic(SECRET), as_body(sns.sign(notification(), cert_url=cert_url)))
    assert sns.fetched == [cert_url]


def test_ses_default_fetcher_refuses_other_addresses() -> None:
    from mailer.relays.ses import fetch_from_sns

    with pytest.raises(ValueError, match="not an SNS address"):
        fetch_from_sns("https://evil.test/cert.pem")


def test_ses_accepts_only_the_configured_topics(sns: SNS) -> None:
    body = as_body(sns.sign(notification()))
    sns.relay(topic_arns=[TOPIC_ARN, ""]).verify(basic(SECRET), body)
    with pytest.raises(RelayForbidden):
        sns.relay(topic_arns=["arn:aws:sns:eu-west-1:123456789012:other"]).verify(basic(SECRET), body)


def test_ses_confirms_a_subscription_at_its_sns_address_only(sns: SNS) -> None:
    message = {"Type": "SubscriptionConfirmation", "MessageId": "m1", "Token": "t", "TopicArn": TOPIC_ARN,
               "Message": "You have chosen to subscribe", "SubscribeURL": SUBSCRIBE_URL,
               "Timestamp": "2026-11-23T10:00:01.000Z"}
    relay = sns.relay()
    body = as_body(sns.sign(message))
    relay.verify(basic(SECRET), body)
    assert relay.confirm_subscription(body) == TOPIC_ARN and sns.fetched[-1] == SUBSCRIBE_URL
    assert relay.parse(body) == []
    elsewhere = as_body(sns.sign({**message, "SubscribeURL": "https://evil.test/confirm"}))
    relay.verify(basic(SECRET), elsewhere)
    with pytest.raises(RelayPayloadError):
        relay.confirm_subscription(elsewhere)
    assert sns.fetched[-1] == SUBSCRIBE_URL


@pytest.mark.parametrize("body", [b"not json", b"null", b""])
def test_ses_leaves_a_body_that_is_not_json_to_parse_which_refuses_it(sns: SNS, body: bytes) -> None:
    relay = sns.relay()
    relay.verify(basic(SECRET), body)
    with pytest.raises(RelayPayloadError):
        relay.parse(body)
    assert sns.fetched == []


def test_ses_refuses_json_that_is_not_an_sns_message(sns: SNS) -> None:
    with pytest.raises(RelayForbidden):
        sns.relay().verify(basic(SECRET), b"[1, 2]")


@pytest.mark.parametrize("inner", ["not json", "null", json.dumps({"notificationType": "Bounce"}), "[" * 10_000])
def test_ses_refuses_a_notification_without_an_ses_message(sns: SNS, inner: str) -> None:
    body = as_body(sns.sign({**notification(), "Message": inner}))
    relay = sns.relay()
    relay.verify(basic(SECRET), body)
    with pytest.raises(RelayPayloadError, match="does not hold an SES notification"):
        relay.parse(body)


def test_ses_notifications_it_has_no_use_for_are_ignored(sns: SNS) -> None:
    body = as_body(sns.sign(notification({**SES_BOUNCE, "notificationType": "Reject"})))
    (event,) = sns.relay().parse(body)
    assert event.type is RelayEventType.IGNORED and event.detail == "SES Reject notifications are not used"
