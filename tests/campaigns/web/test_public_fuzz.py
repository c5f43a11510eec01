"""Bad input on every public endpoint: random, garbled, oversized and replayed tokens, wrong methods, odd content
types and huge bodies get a 4xx with a friendly page (or the pixel), never a 500."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from campaigns.models import Contact, ContactStatus, Link, Send
from campaigns.sending import lifecycle as sending
from mailer.tracking import Purpose

ENDPOINTS = ["/o/", "/c/", "/u/", "/p/"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=",
                 "application/json", "text/plain; charset=utf-16", "application/octet-stream", "", "x/y; a=\x00"]


@pytest.fixture()
def world(runtime, app, db_session, make_contacts, make_campaign, run_worker):
    """Two sent campaigns, so tokens can be replayed across campaigns, contacts and purposes."""
    app.config["WEBHOOK_SECRET"] = "fuzz-secret"
    topic, contacts = make_contacts(2)
    first, second = make_campaign([topic]), make_campaign([topic])
    for c in (first, second):
        sending.start(db_session, runtime, c)
        db_session.commit()
    run_worker()
    sends = list(db_session.scalars(select(Send)))
    links = list(db_session.scalars(select(Link)))
    seal = runtime.tokens.seal
    tokens = []
    for s in sends:
        tokens += [seal(Purpose.OPEN, s.id), seal(Purpose.MESSAGE, s.id)]
        tokens += [seal(Purpose.CLICK, s.id, link.id) for link in links]   # half of these cross campaigns
    for c in contacts:
        tokens += [seal(Purpose.PREFERENCES, c.id), seal(Purpose.UNSUBSCRIBE, c.id, first.id),
                   seal(Purpose.UNSUBSCRIBE, c.id, 0), seal(Purpose.UNSUBSCRIBE, c.id + 1000, first.id)]
    tokens += [seal(Purpose.CLICK, 10**12, 10**12), seal(Purpose.PREFERENCES, 0)]
    db_session.rollback()   # hold no transaction (nor SQLite lock) while the app writes
    return tokens, contacts


def garble(token: str, data) -> str:
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "case", "pad"]))
    if how == "truncate":
        return token[: data.draw(st.integers(0, len(token) - 1))]
    if how == "extend":
        return token + data.draw(st.text("ABCxyz-_09", min_size=1, max_size=200))
    if how == "case":
        return token.swapcase()
    if how == "pad":
        return token + "=="
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def friendly(resp) -> bool:
    body = resp.get_data(as_text=True)
    return "<h1>" in body and "Traceback" not in body


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_no_input_makes_a_public_endpoint_fail(client, world, data) -> None:
    tokens, _contacts = world
    kind = data.draw(st.sampled_from(["valid", "garbled", "random", "binary", "huge"]))
    if kind == "valid":
        token = data.draw(st.sampled_from(tokens))
    elif kind == "garbled":
        token = garble(data.draw(st.sampled_from(tokens)), data)
    elif kind == "random":
        token = data.draw(st.text(min_size=1, max_size=150))
    elif kind == "binary":
        token = data.draw(st.binary(min_size=1, max_size=90)).decode("latin-1")
    else:
        token = "A" * data.draw(st.integers(121, 20_000))
    path = data.draw(st.sampled_from(ENDPOINTS)) + quote(token, safe="")
    method = data.draw(st.sampled_from(METHODS))
    body = data.draw(st.one_of(st.binary(max_size=2048),
                               st.sampled_from([b"List-Unsubscribe=One-Click", b"scope=topics&scope=all",
                                                b"topics=1&topics=99999999999999999999&pause=9999&frequency=x",
                                                b"--\r\n\r\n", b"%ZZ%%=&&=="])))
    headers = {"User-Agent": data.draw(st.text(max_size=400).filter(lambda s: "\n" not in s and "\r" not in s))}
    resp = client.open(path, method=method, data=body, content_type=data.draw(st.sampled_from(CONTENT_TYPES)),
                       headers=headers)
    assert resp.status_code < 500, (method, path)
    if resp.status_code >= 400 and method != "HEAD":
        assert friendly(resp), (method, path, resp.status_code)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=4096), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["type", "events", "rapport_id", "message_id", "recipient", "timestamp", "bounce_type",
                         "smtp_code", "url", "id", "status"]), children, max_size=6),
    max_leaves=20).map(lambda v: __import__("json").dumps(v).encode())),
       auth=st.sampled_from(["Bearer fuzz-secret", "Bearer nope", "", "Basic x"]))
def test_webhook_never_fails_on_any_body(client, world, body: bytes, auth: str) -> None:
    resp = client.post("/webhooks/relay", data=body, headers={"Authorization": auth},
                       content_type="application/json")
    assert resp.status_code in (200, 400, 401), resp.status_code


def test_huge_bodies_get_413_and_one_click_still_works_after(client, db_session, world) -> None:
    tokens, contacts = world
    unsub = next(t for t in tokens if client.get("/u/" + t).status_code == 200
                 and contacts[0].email in client.get("/u/" + t).get_data(True))
    big = b"List-Unsubscribe=One-Click&x=" + b"a" * (2 * 1024 * 1024)
    for path in ("/u/" + unsub, "/webhooks/relay", "/p/" + unsub):
        resp = client.post(path, data=big, content_type="application/x-www-form-urlencoded")
        # The preference form's CSRF check runs first and refuses it as an expired form.
        assert resp.status_code == (400 if path.startswith("/p/") else 413) and friendly(resp), path
    db_session.expire_all()
    assert db_session.get(Contact, contacts[0].id).status == ContactStatus.SUBSCRIBED   # nothing happened
    db_session.rollback()
    assert client.post("/u/" + unsub, data={"List-Unsubscribe": "One-Click"}).status_code == 200
