"""/api/v1 for a receiving system that was down: list endpoints (no secrets), read the failed deliveries with their
payloads, have them posted again — one, or all failed since a time."""

from __future__ import annotations

import datetime as dt

from campaigns.accounts import api_keys
from campaigns.models import OrderSource, utcnow
from campaigns.orders.recording import OrderInput, record_order
from campaigns.webhook_events import EventType
from campaigns.webhooks import delivery


def key(db_session, *scopes: str) -> dict[str, str]:
    new = api_keys.create_key(db_session, "CRM", scopes or ["webhooks:replay"])
    db_session.commit()
    return {"Authorization": f"Bearer {new.secret}"}


def test_a_receiver_back_from_an_outage_reads_and_replays_what_it_missed(
        runtime, client, db_session, receiver, subscribe, run_worker) -> None:
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    headers = key(db_session)
    receiver.answers = [503, 503]
    for amount in ("1", "2"):
        with runtime.session_factory() as session:
            record_order(session, OrderInput(source=OrderSource.API, email="ana@example.com", amount=amount,
                                             external_id=f"o{amount}"))
            session.commit()
    run_worker()
    delivery.deliver(runtime, endpoint_id, now=utcnow() + dt.timedelta(seconds=61))
    delivery.route(runtime, now=utcnow() + dt.timedelta(days=1, minutes=1))     # a day later: both failed

    r = client.get("/api/v1/webhook-endpoints", headers=headers)
    assert r.status_code == 200
    (listed,) = r.json["data"]
    assert listed["id"] == endpoint_id and "secret" not in listed and listed["event_types"] == ["order.recorded"]
    r = client.get(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries?status=failed&limit=1", headers=headers)
    assert r.status_code == 200 and r.json["next_cursor"]
    (newest,) = r.json["data"]
    assert newest["status"] == "failed" and newest["payload"]["data"]["order"]["amount"] == "2.00"
    assert newest["webhook_id"].startswith("msg_") and newest["last_status"] == 503
    r = client.get(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries?status=failed&cursor={r.json['next_cursor']}",
                   headers=headers)
    assert [d["payload"]["data"]["order"]["amount"] for d in r.json["data"]] == ["1.00"]

    r = client.post(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries/{newest['id']}/replay", headers=headers)
    assert r.status_code == 202 and r.json["status"] == "pending"
    since = (utcnow() - dt.timedelta(hours=2)).isoformat()
    r = client.post(f"/api/v1/webhook-endpoints/{endpoint_id}/replay-failed", headers=headers, json={"since": since})
    assert r.status_code == 202 and r.json == {"replayed": 1}
    db_session.rollback()
    delivery.route(runtime)
    run_worker()
    replayed = receiver.received[-2:]
    assert all(x.valid for x in replayed)
    assert sorted(x.payload["data"]["order"]["amount"] for x in replayed) == ["1.00", "2.00"]
    assert {x.headers["webhook-id"] for x in replayed} == {d["webhook_id"] for d in client.get(
        f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=headers).json["data"]}


def test_the_scope_is_required_and_unknown_ids_are_404(client, db_session, subscribe) -> None:
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    other = key(db_session, "contacts:read")
    assert client.get("/api/v1/webhook-endpoints", headers=other).status_code == 403
    headers = key(db_session)
    assert client.get("/api/v1/webhook-endpoints/999/deliveries", headers=headers).status_code == 404
    assert client.post(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries/5/replay",
                       headers=headers).status_code == 404
    r = client.post(f"/api/v1/webhook-endpoints/{endpoint_id}/replay-failed", headers=headers, json={"since": "soon"})
    assert r.status_code == 422
