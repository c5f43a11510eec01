"""API keys: stored hashed, shown once, scopes enforced (403), wrong or revoked keys refused (401), rate limits
per key (429 with Retry-After), errors as problem+json, last use recorded."""

from __future__ import annotations

from sqlalchemy import select

from campaigns.accounts import api_keys
from campaigns.models import ApiKey
from tests.campaigns.api.conftest import auth
from tests.helpers import fresh


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert r.mimetype == "application/problem+json"
    body = r.get_json(force=True)
    assert body["status"] == status and body["type"].startswith("https://") and body["title"]
    return body


def test_the_key_is_stored_only_as_a_hash(db_session, make_key) -> None:
    secret = make_key("contacts:read")
    row = db_session.scalar(select(ApiKey))
    assert secret.startswith(f"rk_{row.prefix}_") and secret not in (row.key_hash, row.prefix)
    assert row.key_hash == api_keys.hash_key(secret) and len(row.key_hash) == 64
    assert api_keys.find_key(db_session, secret).id == row.id
    assert api_keys.find_key(db_session, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None


def test_missing_wrong_and_revoked_keys_get_401(client, db_session, make_key) -> None:
    secret = make_key("contacts:read")
    body = assert_problem(client.get("/api/v1/contacts"), 401)
    assert "Bearer" in body["detail"]
    r = client.get("/api/v1/contacts", headers=auth("rk_nothing_like_a_key"))
    assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    forged = secret[: secret.rindex("_") + 1] + "x" * 43
    assert_problem(client.get("/api/v1/contacts", headers=auth(forged)), 401)
    assert client.get("/api/v1/contacts", headers=auth(secret)).status_code == 200
    api_keys.revoke_key(db_session, db_session.scalar(select(ApiKey.id)))
    db_session.commit()
    assert_problem(client.get("/api/v1/contacts", headers=auth(secret)), 401)


def test_scopes_are_enforced_with_403(client, make_key) -> None:
    reader = make_key("contacts:read")
    body = assert_problem(client.post("/api/v1/contacts", json={"email": "ana@example.com"}, headers=auth(reader)),
                          403)
    assert body["required_scope"] == "contacts:write"
    assert_problem(client.get("/api/v1/campaigns", headers=auth(reader)), 403)
    assert_problem(client.post("/api/v1/orders", json={"email": "a@example.com", "amount": "1"},
                               headers=auth(reader)), 403)
    writer = make_key("contacts:write")
    assert client.post("/api/v1/contacts", json={"email": "ana@example.com"}, headers=auth(writer)).status_code == 201
    assert_problem(client.get("/api/v1/contacts", headers=auth(writer)), 403)


def test_rate_limit_per_key_answers_429_with_retry_after(client, make_key) -> None:
    slow = make_key("contacts:read", name="Slow", rate_limit=3)
    other = make_key("contacts:read", name="Other", rate_limit=3)
    answers = [client.get("/api/v1/topics", headers=auth(slow)) for _ in range(4)]
    assert [r.status_code for r in answers[:3]] == [200, 200, 200]
    assert answers[0].headers["RateLimit-Limit"] == "3" and answers[2].headers["RateLimit-Remaining"] == "0"
    body = assert_problem(answers[3], 429)
    assert 1 <= int(answers[3].headers["Retry-After"]) <= 60 and "3 requests a minute" in body["detail"]
    assert client.get("/api/v1/topics", headers=auth(other)).status_code == 200   # counted per key


def test_last_use_is_recorded(client, db_session, make_key) -> None:
    secret = make_key("contacts:read")
    assert db_session.scalar(select(ApiKey.last_used_at)) is None
    fresh(db_session)
    client.get("/api/v1/topics", headers=auth(secret))
    assert fresh(db_session).scalar(select(ApiKey.last_used_at)) is not None


def test_create_key_refuses_bad_input(db_session) -> None:
    import pytest

    from campaigns.errors import ValidationError

    for name, scopes, limit, field in (("", ["contacts:read"], 10, "name"), ("Shop", [], 10, "scopes"),
                                       ("Shop", ["contacts:admin"], 10, "scopes"),
                                       ("Shop", ["contacts:read"], 0, "rate_limit"),
                                       ("Shop", ["contacts:read"], "many", "rate_limit")):
        with pytest.raises(ValidationError) as err:
            api_keys.create_key(db_session, name, scopes, rate_limit=limit)
        assert err.value.field == field


def test_unknown_paths_and_methods_are_problems_too(client, make_key) -> None:
    assert_problem(client.get("/api/v1/nothing-here"), 404)
    r = client.put("/api/v1/contacts", json={})
    assert_problem(r, 405)
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    secret = make_key()
    assert_problem(client.get("/api/v1/contacts/99999999999999999999", headers=auth(secret)), 404)
    assert_problem(client.get("/api/v1/contacts/12345", headers=auth(secret)), 404)
    body = assert_problem(client.post("/api/v1/contacts", data="{not json", headers=auth(
        secret, **{"Content-Type": "application/json"})), 400)
    assert "JSON" in body["detail"]
    assert_problem(client.post("/api/v1/contacts", data="email=a", headers=auth(secret)), 415)
    body = assert_problem(client.post("/api/v1/contacts", json={"email": "a@example.com", "colour": "red"},
                                      headers=auth(secret)), 422)
    assert body["errors"][0]["field"] == "colour"


def test_unstorable_text_and_out_of_range_ids_are_refused_not_500(client, make_key) -> None:
    """PostgreSQL refuses NUL characters and lone surrogates in text and jsonb, and 32-bit ids beyond their range:
    such input is answered 422 or 404 before it reaches the database, on every database."""
    h = auth(make_key())
    r = client.post("/api/v1/contacts", json={"email": "nul@example.com", "attributes": {"note": "a\u0000b"}},
                    headers=h)
    body = assert_problem(r, 422)
    assert body["errors"][0]["field"] == "attributes.note"
    r = client.post("/api/v1/campaigns", headers={**h, "Content-Type": "application/json"},
                    data=b'{"name": "\\ud800", "subject": "s", "mjml": "<mjml></mjml>"}')
    assert_problem(r, 422)
    r = client.post("/api/v1/contacts", data='{"email": "inf@example.com", "attributes": {"x": NaN, "y": 1e999}}',
                    headers={**h, "Content-Type": "application/json"})
    assert assert_problem(r, 422)["errors"][0]["field"] == "attributes.x"
    assert_problem(client.get("/api/v1/contacts", query_string={"q": "a\x00"}, headers=h), 422)
    assert_problem(client.get(f"/api/v1/segments/{2**31}/count", headers=h), 404)
    assert_problem(client.get(f"/api/v1/campaigns/{2**40}", headers=h), 404)
    r = client.post("/api/v1/contacts", json={"email": "big@example.com", "topic_ids": [2**40]}, headers=h)
    assert_problem(r, 422)


def test_absurdly_nested_json_is_a_400(client, make_key) -> None:
    h = auth(make_key(), **{"Content-Type": "application/json"})
    body = "[" * 100_000 + "]" * 100_000
    assert_problem(client.post("/api/v1/contacts", data=body, headers=h), 400)
    for depth in (40, 300, 5000):   # deeper than the API takes, up to deeper than the parser goes
        nested = '{"email": "a@example.com", "attributes": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
        r = client.post("/api/v1/contacts", data=nested, headers=h)
        assert r.status_code in (400, 422), (depth, r.status_code)
    assert client.get("/api/v1/contacts", headers=h).get_json()["data"] == []
    ok = '{"email": "a@example.com", "attributes": ' + '{"a": ' * 20 + "1" + "}" * 20 + "}"
    assert client.post("/api/v1/contacts", data=ok, headers=h).status_code == 201
