"""Notes on contacts: who may write and change them, the contact page, search, GDPR export and erasure."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from campaigns.contacts.exports import erase_contact, gdpr_export
from campaigns.errors import ValidationError
from campaigns.models import AdminUser, Note
from campaigns.notes import service as notes
from tests.helpers import csrf, fresh

PASSWORD = "correct horse battery"


@pytest.fixture()
def users(db_session):
    """An admin, two editors and a viewer."""
    made = {}
    for key, role in (("admin", "admin"), ("anna", "editor"), ("ben", "editor"), ("vera", "viewer")):
        made[key] = AdminUser(email=f"{key}@shop.test", name=key.title(), role=role,
                              password_hash=generate_password_hash(PASSWORD))
        db_session.add(made[key])
    db_session.commit()
    return made


def login(app, email: str):
    """A new test client logged in as `email`."""
    client = app.test_client()
    r = client.post("/admin/login", data={"email": email, "password": PASSWORD,
                                          "csrf_token": csrf(client, "/admin/login")})
    assert r.status_code == 302, r.get_data(as_text=True)
    return client


def test_only_the_author_or_an_admin_changes_a_note(db_session, users, make_contacts) -> None:
    _topic, (contact,) = make_contacts(1)
    note = notes.add_note(db_session, contact.id, users["anna"], "  Daughter Mia starts school in May  ")
    db_session.commit()
    assert (note.body, note.author_name, note.pinned) == ("Daughter Mia starts school in May", "Anna", False)
    with pytest.raises(notes.NotAllowed):
        notes.update_note(db_session, note, users["ben"], "changed", pinned=True)
    with pytest.raises(notes.NotAllowed):
        notes.delete_note(db_session, note, users["vera"])
    with pytest.raises(notes.NotAllowed):
        notes.add_note(db_session, contact.id, users["vera"], "viewers only read")
    notes.update_note(db_session, note, users["anna"], "Daughter Mia (6)", pinned=True)
    notes.update_note(db_session, note, users["admin"], "Daughter Mia (6), loves tulips", pinned=True)
    db_session.commit()
    assert (note.body, note.updated_by, note.pinned) == ("Daughter Mia (6), loves tulips", "Admin", True)
    with pytest.raises(ValidationError):
        notes.update_note(db_session, note, users["anna"], "   ", pinned=False)
    with pytest.raises(ValidationError):
        notes.add_note(db_session, contact.id, users["anna"], "x" * (notes.MAX_BODY + 1))
    notes.delete_note(db_session, note, users["admin"])
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(Note)) == 0


def test_notes_on_the_contact_page_pinned_on_top_and_on_the_timeline(app, db_session, users,
                                                                      make_contacts) -> None:
    _topic, (contact,) = make_contacts(1)
    contact.attributes = {"partner": "Jonas"}
    db_session.commit()
    client = login(app, "anna@shop.test")
    page = f"/admin/contacts/{contact.id}"
    for body, pinned in (("Allergic to lilies", "1"), ("Called about a late parcel", "")):
        r = client.post(f"{page}/notes", data={"csrf_token": csrf(client, page), "body": body, "pinned": pinned})
        assert r.status_code == 302 and r.headers["Location"].endswith(f"{page}#notes")
    html = client.get(page).get_data(as_text=True)
    facts = html[html.index('id="notes"'):html.index("<h2>Profile</h2>")]
    assert "Allergic to lilies" in facts and "partner" in facts and "Jonas" in facts
    assert "late parcel" not in facts                     # not pinned: only on the timeline
    timeline = html[html.index('id="timeline"'):]
    assert "Allergic to lilies" in timeline and "Called about a late parcel" in timeline
    note_id = fresh(db_session).scalar(select(Note.id).where(Note.body == "Called about a late parcel"))

    client = login(app, "ben@shop.test")                        # another editor reads but may not change it
    assert client.get(f"{page}/notes/{note_id}").status_code == 403
    assert client.post(f"{page}/notes/{note_id}/delete", data={"csrf_token": csrf(client, page)}).status_code == 403
    assert f"/notes/{note_id}" not in client.get(page).get_data(as_text=True)

    client = login(app, "admin@shop.test")                      # an admin may
    edit = f"{page}/notes/{note_id}"
    r = client.post(edit, data={"csrf_token": csrf(client, edit), "body": "Late parcel: sent a voucher"})
    assert r.status_code == 302
    assert client.post(edit, data={"csrf_token": csrf(client, edit), "body": ""}).status_code == 400
    assert fresh(db_session).get(Note, note_id).body == "Late parcel: sent a voucher"
    assert client.get(f"/admin/contacts/{contact.id}/notes/999999").status_code == 404


def test_contacts_list_search_finds_words_in_notes(app, db_session, users, make_contacts) -> None:
    _topic, contacts = make_contacts(3)
    notes.add_note(db_session, contacts[1].id, users["anna"], "Prefers 100% organic seeds, no peat")
    notes.add_note(db_session, contacts[2].id, users["anna"], "Asked about peat-free compost")
    db_session.commit()
    hits = notes.search(db_session, "PEAT")
    assert [h.contact.id for h in hits] == [contacts[2].id, contacts[1].id]
    assert [h.contact.id for h in notes.search(db_session, "100%")] == [contacts[1].id]
    assert notes.search(db_session, "1_0") == [] and notes.search(db_session, "p") == []
    client = login(app, "vera@shop.test")                       # viewers search too
    html = client.get("/admin/contacts?q=organic").get_data(as_text=True)
    assert "Notes mentioning" in html and f"/admin/contacts/{contacts[1].id}#notes" in html
    assert "Notes mentioning" not in client.get("/admin/contacts?q=zzz").get_data(as_text=True)


def test_gdpr_export_holds_the_notes_and_erasure_removes_them(db_session, users, make_contacts) -> None:
    _topic, (contact, other) = make_contacts(2)
    notes.add_note(db_session, contact.id, users["anna"], "Birthday surprise for her husband in June", pinned=True)
    notes.add_note(db_session, other.id, users["anna"], "Someone else's note")
    db_session.commit()
    exported = gdpr_export(db_session, contact.id)["notes"]
    assert [(n["body"], n["author_name"], n["pinned"]) for n in exported] == [
        ("Birthday surprise for her husband in June", "Anna", True)]
    erase_contact(db_session, contact.id, by="admin@shop.test")
    assert db_session.scalars(select(Note.body)).all() == ["Someone else's note"]


def test_each_note_is_on_exactly_one_page_of_the_timeline(app, db_session, users, make_contacts) -> None:
    import datetime as dt
    import re

    from campaigns.models import Event

    _topic, (contact,) = make_contacts(1)
    start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    for i in range(40):                                   # two timeline pages of events, one a day
        db_session.add(Event(contact_id=contact.id, type="open", occurred_at=start + dt.timedelta(days=i)))
    for day in (0.5, 10.5, 14.5, 15.0, 30.5, 45):         # notes between, on and after the events
        note = notes.add_note(db_session, contact.id, users["anna"], f"note of day {day}")
        note.created_at = start + dt.timedelta(days=day)
    db_session.commit()
    client = login(app, "anna@shop.test")
    first = client.get(f"/admin/contacts/{contact.id}").get_data(as_text=True)
    older = re.search(r'href="([^"]+events_before=\d+[^"]*)"', first).group(1).replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    for day in (0.5, 10.5, 14.5, 15.0, 30.5, 45):
        text = f"note of day {day}"
        timeline_hits = [page[page.index('id="timeline"'):].count(text) for page in (first, second)]
        assert sum(timeline_hits) == 1, (text, timeline_hits)
