"""Idempotency-Key on POST: a retried request never acts twice; the same key with another body is refused."""

from __future__ import annotations

from sqlalchemy import func, select

from campaigns.models import Campaign, IdempotencyRecord, utcnow
from tests.campaigns.api.conftest import auth
from tests.helpers import fresh

DRAFT = {"name": "Spring", "subject": "Spring is here", "mjml": "<mjml><mj-body></mj-body></mjml>"}


def campaigns(db_session) -> int:
    return fresh(db_session).scalar(select(func.count()).select_from(Campaign))


def test_same_key_and_body_replays_the_first_answer(client, db_session, make_key) -> None:
    secret = make_key()
    headers = auth(secret, **{"Idempotency-Key": "5f0c-draft-1"})
    first = client.post("/api/v1/campaigns", json=DRAFT, headers=headers)
    assert first.status_code == 201, first.get_json()
    again = client.post("/api/v1/campaigns", json=DRAFT, headers=headers)
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true" and again.headers["Location"] == first.headers["Location"]
    assert campaigns(db_session) == 1
    # Without a key, or with another key, the request acts again.
    assert client.post("/api/v1/campaigns", json=DRAFT, headers=auth(secret)).status_code == 201
    assert client.post("/api/v1/campaigns", json=DRAFT,
                       headers=auth(secret, **{"Idempotency-Key": "other"})).status_code == 201
    assert campaigns(db_session) == 3


def test_same_key_with_another_body_is_refused(client, db_session, make_key) -> None:
    secret = make_key()
    headers = auth(secret, **{"Idempotency-Key": "k1"})
    assert client.post("/api/v1/campaigns", json=DRAFT, headers=headers).status_code == 201
    r = client.post("/api/v1/campaigns", json={**DRAFT, "name": "Autumn"}, headers=headers)
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert r.get_json(force=True)["type"].endswith("idempotency-key-reused")
    assert campaigns(db_session) == 1


def test_keys_are_per_api_key(client, db_session, make_key) -> None:
    one, two = make_key(name="One"), make_key(name="Two")
    for secret in (one, two):
        assert client.post("/api/v1/campaigns", json=DRAFT,
                           headers=auth(secret, **{"Idempotency-Key": "same"})).status_code == 201
    assert campaigns(db_session) == 2


def test_a_request_still_running_gets_409_and_a_dead_one_runs_again(client, db_session, make_key) -> None:
    import datetime as dt

    secret = make_key()
    headers = auth(secret, **{"Idempotency-Key": "running"})
    first = client.post("/api/v1/campaigns", json=DRAFT, headers=headers)
    record = fresh(db_session).scalar(select(IdempotencyRecord))
    record.status, record.response = None, None          # as if the first request were still running
    db_session.commit()
    r = client.post("/api/v1/campaigns", json=DRAFT, headers=headers)
    assert r.status_code == 409 and r.headers["Retry-After"] == "1"
    record = fresh(db_session).scalar(select(IdempotencyRecord))
    record.created_at = utcnow() - dt.timedelta(minutes=10)     # its request died long ago
    db_session.commit()
    r = client.post("/api/v1/campaigns", json=DRAFT, headers=headers)
    assert r.status_code == 201 and r.get_json()["id"] != first.get_json()["id"]


def test_errors_below_500_are_replayed_and_bad_keys_refused(client, db_session, make_key) -> None:
    secret = make_key()
    headers = auth(secret, **{"Idempotency-Key": "bad-draft"})
    first = client.post("/api/v1/campaigns", json={**DRAFT, "topic_ids": [999]}, headers=headers)
    assert first.status_code == 422
    again = client.post("/api/v1/campaigns", json={**DRAFT, "topic_ids": [999]}, headers=headers)
    assert again.status_code == 422 and again.get_json(force=True) == first.get_json(force=True)
    assert again.headers["Idempotent-Replayed"] == "true" and campaigns(db_session) == 0
    r = client.post("/api/v1/campaigns", json=DRAFT, headers=auth(secret, **{"Idempotency-Key": "x" * 256}))
    assert r.status_code == 422 and campaigns(db_session) == 0
