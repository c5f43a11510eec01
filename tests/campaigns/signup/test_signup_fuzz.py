"""Bad input on the sign-up endpoints and the native relay webhooks: never a 500, always a friendly page or JSON."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.models import Topic
from campaigns.signup import service as signup_service
from mailer.tracking import Purpose

METHODS = ["GET", "POST", "PUT", "HEAD", "OPTIONS"]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=",
                 "application/json", "text/plain; charset=utf-16", "", "x/y; a=\x00"]
FIELDS = ["email", "first_name", "topics", "consent", "consent_version", "website"]


@pytest.fixture()
def world(app, runtime, db_session):
    app.config["WEBHOOK_SECRET"] = "fuzz-secret"
    topic = Topic(name="Newsletter")
    db_session.add(topic)
    db_session.flush()
    form = signup_service.save_form(db_session, {"name": "Fuzz", "consent_text": "Yes please."}, [topic.id])
    db_session.commit()
    tokens = [runtime.tokens.seal(Purpose.CONFIRM, n, d) for n in (0, 1, 10**12) for d in (0, 20_000, 10**9)]
    tokens += [runtime.tokens.seal(Purpose.PREFERENCES, 1)]
    world = form.public_id, topic.id, tokens
    db_session.rollback()
    return world


def friendly(resp) -> bool:
    body = resp.get_data(as_text=True)
    return "<h1>" in body and "Traceback" not in body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_no_input_makes_a_signup_page_fail(client, world, data) -> None:
    public_id, topic_id, tokens = world
    if data.draw(st.booleans()):
        public = data.draw(st.sampled_from([public_id, public_id + "x", "", "A" * 200]))
        path = "/signup/" + quote(public, safe="")
    else:
        token = data.draw(st.one_of(st.sampled_from(tokens), st.text(min_size=1, max_size=150)))
        path = "/signup/confirm/" + quote(token, safe="")
    fields = data.draw(st.dictionaries(st.sampled_from(FIELDS), st.one_of(
        st.text(max_size=400), st.sampled_from(["yes", str(topic_id), "1", "ada@example.com", "99999999999999999999"]),
        st.lists(st.text(max_size=30), max_size=5)), max_size=6))
    body = data.draw(st.one_of(st.just(fields), st.binary(max_size=2048)))
    resp = client.open(path, method=data.draw(st.sampled_from(METHODS)), data=body,
                       content_type=data.draw(st.sampled_from(CONTENT_TYPES)) if isinstance(body, bytes) else None,
                       environ_base={"REMOTE_ADDR": f"10.0.{data.draw(st.integers(0, 255))}.1"})
    assert resp.status_code < 500, path
    if resp.status_code >= 400 and resp.request.method != "HEAD":
        assert resp.status_code == 405 or friendly(resp), (path, resp.status_code)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from([
        "RecordType", "Type", "Email", "Recipient", "MessageID", "BouncedAt", "Metadata", "event", "email",
        "smtp-id", "sg_event_id", "timestamp", "reason", "status", "type", "url", "event-data", "signature",
        "message", "headers", "message-id", "severity", "delivery-status", "code", "recipient", "mail",
        "notificationType", "bounce", "bouncedRecipients", "emailAddress", "Message", "SigningCertURL"]),
        children, max_size=6),
    max_leaves=25)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(relay=st.sampled_from(["postmark", "sendgrid", "ses", "mailgun"]), body=st.one_of(
    st.binary(max_size=2048), JSON.map(lambda v: json.dumps(v).encode())),
       good_auth=st.booleans())
def test_native_webhooks_never_fail_on_any_body(client, world, relay: str, body: bytes, good_auth: bool) -> None:
    secret = "fuzz-secret" if good_auth else "nope"
    auth = "Basic " + base64.b64encode(f"rapport:{secret}".encode()).decode()
    resp = client.post(f"/webhooks/relay/{relay}", data=body, headers={"Authorization": auth},
                       content_type="application/json")
    assert resp.status_code in (200, 400, 401, 403), (relay, resp.status_code)


@settings(max_examples=300, deadline=None)
@given(relay=st.sampled_from(["postmark", "sendgrid", "ses", "mailgun"]), payload=JSON)
def test_relay_translators_return_events_or_a_clear_error(relay: str, payload) -> None:
    """Behind each relay's authentication, any JSON becomes normalized events, 'ignored' entries or a payload error."""
    from mailer.relays import RelayEvent, RelayEventType, RelayPayloadError, mailgun, postmark, sendgrid, ses

    translate = {"ses": ses.translate, "postmark": postmark.translate, "mailgun": mailgun.translate,
                 "sendgrid": sendgrid.translate}[relay]
    wrapped = {"mail": payload, "notificationType": "Bounce", "bounce": payload} if relay == "ses" else \
        {"event-data": payload} if relay == "mailgun" else payload
    for candidate in (payload, wrapped):
        try:
            events = translate(candidate)
        except RelayPayloadError:
            continue
        assert isinstance(events, list) and all(isinstance(e, RelayEvent) for e in events)
        assert all(e.applicable or e.type is RelayEventType.IGNORED for e in events)
        assert all("type" in e.as_dict() for e in events if e.applicable)
        json.dumps([e.as_dict() for e in events])
