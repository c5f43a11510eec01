"""CSV export of contacts and GDPR export/erasure of one contact, through the admin."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

from sqlalchemy import func, select

from campaigns.contacts.records import save_contact
from campaigns.contacts.suppression import email_hash, is_suppressed
from campaigns.models import Contact, Event, EventType, Order, Send, Suppression, Topic
from tests.campaigns.web import test_admin
from tests.campaigns.web.test_admin import csrf
from tests.helpers import export_contacts

# The admin login fixtures, shared with the admin tests.
admin_user = test_admin.admin_user
logged_in = test_admin.logged_in


def test_csv_export_escapes_formulas_and_has_a_bom(logged_in, db_session, make_contacts, work) -> None:
    make_contacts(3)
    save_contact(db_session, {"email": "evil@example.com", "first_name": "=HYPERLINK(\"http://x\")",
                              "last_name": "+1+cmd|' /C calc'!A0", "city": "@SUM(A1)",
                              "phone": "+49 152 1234567", "attributes": {"note": "-2"}},
                 interests=["gardening"])
    db_session.commit()
    body, state = export_contacts(logged_in, work)
    assert body.startswith("\ufeff") and state["rows"] == 4
    rows = list(csv.DictReader(io.StringIO(body.removeprefix("\ufeff"))))
    assert len(rows) == 4
    evil = next(row for row in rows if row["email"] == "evil@example.com")
    assert evil["first_name"] == "'=HYPERLINK(\"http://x\")"
    assert (evil["last_name"], evil["city"], evil["interests"]) == ("'+1+cmd|' /C calc'!A0", "'@SUM(A1)",
                                                                    "gardening")
    assert evil["phone"] == "+49 152 1234567"         # plainly data: kept as it is
    assert evil["attributes"] == "note=-2"


def test_csv_export_filters_by_topic_and_status(logged_in, db_session, make_contacts, work) -> None:
    topic, people = make_contacts(2)
    make_contacts(2, topic_name="Offers", prefix="other")
    people[0].status = "unsubscribed"
    db_session.commit()
    by_topic, _ = export_contacts(logged_in, work, topic=str(topic.id))
    assert sorted(r["email"] for r in csv.DictReader(io.StringIO(by_topic.removeprefix("\ufeff")))) == [
        "person0@example.com", "person1@example.com"]
    by_status, _ = export_contacts(logged_in, work, status="unsubscribed", gzip="1")
    assert [r["email"] for r in csv.DictReader(io.StringIO(by_status.removeprefix("\ufeff")))] == [
        "person0@example.com"]
    page = logged_in.get("/admin/contacts/export").get_data(as_text=True)
    assert "Export CSV" in page and "Recent exports" in page


def _contact_with_history(db_session, make_contacts, make_campaign) -> Contact:
    topic, (contact, other) = make_contacts(2)
    contact.attributes = {"tier": "gold"}
    save_contact(db_session, {"email": contact.email, "first_name": contact.first_name, "attributes":
                              {"tier": "gold"}}, contact, interests=["roses"])
    campaign = make_campaign([topic])
    send = Send(campaign_id=campaign.id, contact_id=contact.id, status="sent")
    db_session.add(send)
    db_session.flush()
    db_session.add_all([
        Event(contact_id=contact.id, campaign_id=campaign.id, send_id=send.id, type=EventType.OPEN),
        Order(contact_id=contact.id, ordered_at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC), amount=Decimal("49.90"),
              reference="A-1"),
        Event(contact_id=other.id, type=EventType.OPEN),
    ])
    db_session.commit()
    return contact


def test_gdpr_export_holds_everything_about_the_contact(logged_in, db_session, make_contacts,
                                                        make_campaign) -> None:
    contact = _contact_with_history(db_session, make_contacts, make_campaign)
    page = logged_in.get(f"/admin/contacts/{contact.id}").get_data(as_text=True)
    assert "Export data" in page and "Erase" in page
    r = logged_in.get(f"/admin/contacts/{contact.id}/gdpr.json")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    data = json.loads(r.get_data())
    assert data["profile"]["email"] == "person0@example.com"
    assert data["attributes"] == {"tier": "gold"}
    assert data["interests"] == ["roses"]
    assert data["subscriptions"] == [{"topic": "Newsletter", "subscribed": True,
                                      "updated_at": data["subscriptions"][0]["updated_at"]}]
    assert [(o["reference"], o["amount"]) for o in data["orders"]] == [("A-1", "49.90")]
    assert [e["type"] for e in data["events"]] == ["open"]          # not the other contact's
    assert [s["status"] for s in data["sends"]] == ["sent"]
    assert logged_in.get("/admin/contacts/999999/gdpr.json").status_code == 404


def test_erase_needs_confirmation_and_leaves_only_the_suppression(logged_in, db_session, make_contacts,
                                                                  make_campaign) -> None:
    contact = _contact_with_history(db_session, make_contacts, make_campaign)
    cid, email = contact.id, contact.email
    url = f"/admin/contacts/{cid}/erase"
    assert logged_in.post(url, data={"confirm": email}).status_code == 400         # no CSRF token
    r = logged_in.post(url, data={"csrf_token": csrf(logged_in, url), "confirm": "someone@else.com"})
    assert r.status_code == 400 and "to confirm" in r.get_data(as_text=True)
    db_session.rollback()
    assert db_session.scalar(select(Contact.email).where(Contact.id == cid)) == email

    r = logged_in.post(url, data={"csrf_token": csrf(logged_in, url), "confirm": email})
    assert r.status_code == 302, r.get_data(as_text=True)
    assert "was erased" in logged_in.get(r.headers["Location"]).get_data(as_text=True)
    db_session.rollback()
    assert db_session.scalar(select(func.count()).select_from(Contact).where(Contact.id == cid)) == 0
    for model in (Event, Send, Order):
        assert db_session.scalar(select(func.count()).select_from(model).where(model.contact_id == cid)) == 0
    assert db_session.scalar(select(func.count()).select_from(Event)) == 1        # the other contact's event
    assert is_suppressed(db_session, email)
    row = db_session.get(Suppression, email_hash(email))
    assert email not in (row.source or "")                                          # only the hash is kept
    assert db_session.scalar(select(Topic.name)) == "Newsletter"


def test_erasure_tells_running_sends_before_the_commit(runtime, db_session, make_contacts,
                                                       make_campaign) -> None:
    """A sender that claimed the contact a moment earlier must see the erasure in the stops set before SMTP."""
    from campaigns import stops
    from campaigns.contacts import exports

    contact = _contact_with_history(db_session, make_contacts, make_campaign)
    with runtime.session_factory() as session:
        exports.erase_contact(session, contact.id, by="admin@example.com")
        assert runtime.redis.zscore(stops.key(runtime.settings.queue_name), f"s:{contact.id}") is not None
        session.rollback()   # nothing committed yet: the caller owns the transaction
    db_session.rollback()
    assert db_session.get(Contact, contact.id) is not None


def test_an_export_in_progress_does_not_block_sending(logged_in, runtime, db_session, make_contacts, work,
                                                     monkeypatch) -> None:
    """The export job reads for a while: meanwhile a worker's write must not wait for SQLite's write lock."""
    from sqlalchemy import event, text, update

    from campaigns.contacts import export_jobs
    from campaigns.db import make_engine

    make_contacts(1500)
    monkeypatch.setattr(export_jobs, "PAGE", 100)
    monkeypatch.setattr(export_jobs, "PROGRESS_EVERY", 0)
    writes: list[int] = []
    save = export_jobs._save

    def save_and_write(rt, state) -> None:
        save(rt, state)
        if state["state"] == "running" and state["rows"] and not writes:
            writer = make_engine(runtime.settings.database_url)
            if writer.dialect.name == "sqlite":   # fail fast instead of waiting out the 30 s busy timeout
                event.listen(writer, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA busy_timeout=2000"))
            with writer.begin() as conn:      # a worker's write, meanwhile: no "database is locked"
                conn.execute(update(Contact).where(Contact.email == "person0@example.com").values(city="Bonn"))
                assert conn.execute(text("SELECT 1")).scalar() == 1
            writer.dispose()
            writes.append(state["rows"])

    monkeypatch.setattr(export_jobs, "_save", save_and_write)
    body, state = export_contacts(logged_in, work)
    assert writes and writes[0] < 1500 and state["rows"] == 1500
    assert len(body.removeprefix("\ufeff").splitlines()) == 1501
    assert db_session.scalar(select(Contact.city).where(Contact.email == "person0@example.com")) == "Bonn"
