"""Contacts through the API: upsert by email, partial update, keyset pages with filters, GDPR erasure, bulk
upsert and its limits, subscriptions, and the rule that the API cannot resubscribe someone who left."""

from __future__ import annotations

from sqlalchemy import func, select

from campaigns.contacts.suppression import email_hash
from campaigns.models import Contact, ContactStatus, Event, EventType, Order, Suppression, Topic
from tests.campaigns.api.conftest import auth
from tests.helpers import fresh


def test_upsert_by_email_creates_then_updates_only_what_is_sent(client, db_session, make_key) -> None:
    h = auth(make_key())
    r = client.post("/api/v1/contacts", json={"email": "Ana@Example.com", "first_name": "Ana", "city": "Köln",
                                              "birthday": "1990-04-23", "attributes": {"tier": "gold"}}, headers=h)
    assert r.status_code == 201, r.get_json()
    ana = r.get_json()
    assert ana["email"] == "ana@example.com" and ana["status"] == "subscribed" and ana["consent_source"] == "api: Shop"
    assert r.headers["Location"].endswith(f"/api/v1/contacts/{ana['id']}")
    r = client.post("/api/v1/contacts", json={"email": "ana@example.com", "last_name": "Weber"}, headers=h)
    assert r.status_code == 200
    again = r.get_json()
    assert again["id"] == ana["id"] and again["last_name"] == "Weber"
    assert again["city"] == "Köln" and again["birthday"] == "1990-04-23" and again["attributes"] == {"tier": "gold"}
    r = client.patch(f"/api/v1/contacts/{ana['id']}", json={"city": "Bonn", "interests": ["Roses"]}, headers=h)
    assert r.status_code == 200 and r.get_json()["city"] == "Bonn" and r.get_json()["interests"] == ["roses"]
    assert client.get(f"/api/v1/contacts/{ana['id']}", headers=h).get_json()["last_name"] == "Weber"
    bad = client.post("/api/v1/contacts", json={"email": "not-an-address"}, headers=h)
    assert bad.status_code == 422 and bad.get_json(force=True)["errors"][0]["field"] == "email"
    bad = client.patch(f"/api/v1/contacts/{ana['id']}", json={"country": "D1"}, headers=h)
    assert bad.status_code == 422


def test_keyset_pages_walk_every_contact_once_with_filters(client, make_contacts, make_key) -> None:
    _topic, contacts = make_contacts(7)
    h = auth(make_key())
    seen, cursor = [], None
    while True:
        r = client.get("/api/v1/contacts", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})},
                       headers=h)
        assert r.status_code == 200
        page = r.get_json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(c.id for c in contacts)
    r = client.get("/api/v1/contacts", query_string={"q": "person3@"}, headers=h)
    assert [c["email"] for c in r.get_json()["data"]] == ["person3@example.com"]
    r = client.get("/api/v1/contacts", query_string={"status": "bounced"}, headers=h)
    assert r.get_json() == {"data": [], "next_cursor": None}
    r = client.get("/api/v1/contacts", query_string={"cursor": "forged"}, headers=h)
    assert r.status_code == 422 and r.get_json(force=True)["errors"][0]["field"] == "cursor"
    assert client.get("/api/v1/contacts", query_string={"limit": 201}, headers=h).status_code == 422


def test_delete_erases_the_contact_and_keeps_it_suppressed(client, db_session, make_key) -> None:
    h = auth(make_key())
    cid = client.post("/api/v1/contacts", json={"email": "gone@example.com"}, headers=h).get_json()["id"]
    client.post("/api/v1/orders", json={"email": "gone@example.com", "amount": "12.50"}, headers=h)
    fresh(db_session).add(Event(contact_id=cid, type=EventType.OPEN))
    db_session.commit()
    r = client.delete(f"/api/v1/contacts/{cid}", headers=h)
    assert r.status_code == 204 and r.get_data() == b""
    fresh(db_session)
    assert db_session.get(Contact, cid) is None
    assert db_session.scalar(select(func.count()).select_from(Order)) == 0
    assert db_session.scalar(select(func.count()).select_from(Event).where(Event.contact_id == cid)) == 0
    assert db_session.get(Suppression, email_hash("gone@example.com")) is not None
    assert client.delete(f"/api/v1/contacts/{cid}", headers=h).status_code == 404
    # Added again later, the address stays unsubscribed: erasure outlives re-imports.
    back = client.post("/api/v1/contacts", json={"email": "gone@example.com", "status": "subscribed"}, headers=h)
    assert back.status_code == 409
    r = client.post("/api/v1/contacts", json={"email": "gone@example.com"}, headers=h)
    assert r.get_json()["status"] == "unsubscribed"


def test_the_api_cannot_resubscribe_someone_who_left(client, db_session, make_key) -> None:
    h = auth(make_key())
    cid = client.post("/api/v1/contacts", json={"email": "left@example.com", "status": "unsubscribed"},
                      headers=h).get_json()["id"]
    assert fresh(db_session).get(Contact, cid).status == ContactStatus.UNSUBSCRIBED
    db_session.rollback()
    r = client.patch(f"/api/v1/contacts/{cid}", json={"status": "subscribed"}, headers=h)
    assert r.status_code == 409 and "only the contact" in r.get_json(force=True)["detail"]


def test_bulk_upsert_reports_bad_rows_and_enforces_the_limit(client, db_session, make_key) -> None:
    h = auth(make_key())
    client.post("/api/v1/contacts", json={"email": "known@example.com", "first_name": "Old"}, headers=h)
    items = [{"email": f"bulk{i}@example.com", "first_name": f"B{i}"} for i in range(50)]
    items += [{"email": "known@example.com", "first_name": "New"}, {"email": "broken"},
              {"email": "bulk1@example.com"}, {"email": "late@example.com", "topic_ids": [424242]}]
    r = client.post("/api/v1/contacts/bulk", json={"contacts": items}, headers=h)
    assert r.status_code == 200, r.get_json()
    result = r.get_json()
    assert (result["created"], result["updated"], result["failed"]) == (50, 1, 3)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(51, "email"), (52, "email"), (53, "topic_ids")]
    fresh(db_session)
    assert db_session.scalar(select(func.count()).select_from(Contact)) == 51
    assert db_session.scalar(select(Contact.first_name).where(Contact.email == "known@example.com")) == "New"
    too_many = {"contacts": [{"email": f"x{i}@example.com"} for i in range(10_001)]}
    r = client.post("/api/v1/contacts/bulk", json=too_many, headers=h)
    assert r.status_code == 422 and r.get_json(force=True)["errors"][0]["field"] == "contacts"
    assert client.post("/api/v1/contacts/bulk", json={"contacts": []}, headers=h).status_code == 422


def test_subscriptions_can_be_read_and_set(client, db_session, make_key) -> None:
    h = auth(make_key())
    news, offers = Topic(name="News"), Topic(name="Offers")
    db_session.add_all([news, offers])
    db_session.commit()
    cid = client.post("/api/v1/contacts", json={"email": "t@example.com", "topic_ids": [news.id]},
                      headers=h).get_json()["id"]
    r = client.put(f"/api/v1/contacts/{cid}/subscriptions", json={"topic_ids": [offers.id]}, headers=h)
    assert r.status_code == 200
    assert {s["topic"]: s["subscribed"] for s in r.get_json()["data"]} == {"News": False, "Offers": True}
    topics = client.get("/api/v1/topics", headers=h).get_json()["data"]
    assert [t["name"] for t in topics] == ["News", "Offers"]
    assert client.put(f"/api/v1/contacts/{cid}/subscriptions", json={"topic_ids": [999]},
                      headers=h).status_code == 422
