"""CSV import through the admin: upload, mapping, an RQ worker in burst mode, progress and the error report."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import select

from campaigns.contacts.records import save_contact
from campaigns.contacts.suppression import suppress
from campaigns.models import Contact, ContactInterest, ContactStatus, Subscription, SuppressionReason, Topic
from tests.campaigns.web import test_admin
from tests.campaigns.web.test_admin import csrf

# The admin login fixtures, shared with the admin tests.
admin_user = test_admin.admin_user
logged_in = test_admin.logged_in

GOOD = """E-Mail,Vorname,Last Name,Birthday,Country,Interests,Shoe size,Topics
anna@example.com,Anna,Becker,1990-04-23,de,gardening; running,38,Newsletter
BEN@Example.com,Ben,Otto,23.04.1985,AT,,44,
not-an-address,Carl,Bad,,DE,,40,
dora@example.com,Dora,Date,1990-13-45,DE,,39,
eve@example.com,Eve,Country,,Germany,,37,
fred@example.com,Fred,Ragged
gina@example.com,Gina,Long,,DE,,36,,surplus
blocked@example.com,Bo,Locked,,DE,,41,Newsletter
"""


def upload(client, data: bytes, name: str = "customers.csv"):
    token = csrf(client, "/admin/contacts/import")
    return client.post("/admin/contacts/import", data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def map_and_start(client, location: str, fields: dict | None = None, mode: str = "skip"):
    html = client.get(location).get_data(as_text=True)
    form = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1), "mode": mode}
    for i, target in re.findall(r'<select id="col-(\d+)" name="col-\d+">.*?<option value="(\w+)" selected', html,
                                re.S):
        form[f"col-{i}"] = target
    for i, key in re.findall(r'name="key-(\d+)" value="([^"]*)"', html):
        form[f"key-{i}"] = key
    form.update(fields or {})
    return client.post(location, data=form)


def import_file(client, run_worker, data: bytes, **kw) -> dict:
    r = upload(client, data)
    assert r.status_code == 302, r.get_data(as_text=True)
    r = map_and_start(client, r.headers["Location"], **kw)
    assert r.status_code == 302, r.get_data(as_text=True)
    run_worker()
    status_url = r.headers["Location"]
    return client.get(status_url.replace("/status", "/progress")).get_json() | {"url": status_url}


def test_import_maps_guessed_columns_reports_bad_rows_and_keeps_good_ones(logged_in, run_worker,
                                                                           db_session) -> None:
    db_session.add(Topic(name="Newsletter"))
    db_session.commit()
    suppress(db_session, "blocked@example.com", SuppressionReason.HARD_BOUNCE, "test")
    db_session.commit()
    p = import_file(logged_in, run_worker, GOOD.encode())
    assert (p["state"], p["read"], p["created"], p["failed"], p["skipped"]) == ("finished", 8, 3, 4, 1)

    contacts = {c.email: c for c in db_session.scalars(select(Contact))}
    assert set(contacts) == {"anna@example.com", "ben@example.com", "fred@example.com"}
    anna = contacts["anna@example.com"]
    assert (anna.first_name, anna.last_name, anna.country, str(anna.birthday)) == ("Anna", "Becker", "DE",
                                                                                   "1990-04-23")
    assert anna.attributes == {"shoe_size": "38"}
    assert anna.consent_source == "import: customers.csv" and anna.consent_at is not None
    assert {i.interest for i in anna.interests} == {"gardening", "running"}
    assert [s.topic.name for s in anna.subscriptions if s.subscribed] == ["Newsletter"]
    assert str(contacts["ben@example.com"].birthday) == "1985-04-23"
    assert contacts["fred@example.com"].status == ContactStatus.SUBSCRIBED

    report = logged_in.get(p["url"].replace("/status", "/errors.csv"))
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][-1] == "error" and rows[0][0] == "E-Mail"
    errors = {r[0]: r[-1] for r in rows[1:]}
    assert set(errors) == {"not-an-address", "dora@example.com", "eve@example.com", "gina@example.com",
                           "blocked@example.com"}
    assert "not a valid email" in errors["not-an-address"]
    assert "not a date" in errors["dora@example.com"]
    assert "two-letter code" in errors["eve@example.com"]
    assert "9 cells" in errors["gina@example.com"]
    assert "suppressed" in errors["blocked@example.com"]
    # The original row comes back as it was, so it can be fixed and uploaded again.
    assert rows[1:][0][:3] == ["not-an-address", "Carl", "Bad"]


def test_suppressed_existing_contact_stays_unsubscribed_on_update(logged_in, run_worker, db_session) -> None:
    contact = save_contact(db_session, {"email": "gone@example.com", "first_name": "Old"})
    contact.status = ContactStatus.BOUNCED
    suppress(db_session, "gone@example.com", SuppressionReason.HARD_BOUNCE, "test")
    db_session.commit()
    p = import_file(logged_in, run_worker, b"email,first_name\nGONE@example.com,New\n", mode="update")
    assert (p["created"], p["updated"], p["skipped"]) == (0, 0, 1)
    db_session.rollback()
    again = db_session.scalar(select(Contact).where(Contact.email == "gone@example.com"))
    assert (again.status, again.first_name) == (ContactStatus.BOUNCED, "Old")


@pytest.mark.parametrize("mode, first_name, updated, skipped", [("update", "Anna-Lena", 1, 0),
                                                                 ("skip", "Anna", 0, 1)])
def test_existing_contacts_are_updated_or_skipped_as_chosen(logged_in, run_worker, db_session, mode,
                                                            first_name, updated, skipped) -> None:
    save_contact(db_session, {"email": "anna@example.com", "first_name": "Anna", "city": "Berlin",
                              "attributes": {"tier": "gold"}})
    db_session.commit()
    data = b"Email,First name,Shoe size,City\nAnna@Example.com,Anna-Lena,38,\nnew@example.com,Neu,40,Bonn\n"
    p = import_file(logged_in, run_worker, data, mode=mode)
    assert (p["created"], p["updated"], p["skipped"]) == (1, updated, skipped)
    db_session.rollback()
    anna = db_session.scalar(select(Contact).where(Contact.email == "anna@example.com"))
    assert anna.first_name == first_name
    assert anna.city == "Berlin"                       # a blank cell does not erase the city
    if mode == "update":
        assert anna.attributes == {"tier": "gold", "shoe_size": "38"}


def test_duplicate_rows_in_one_file_become_one_contact(logged_in, run_worker, db_session) -> None:
    data = b"email,interests\na@example.com,x\nA@example.com,y\n"
    p = import_file(logged_in, run_worker, data, fields={"col-1": "interests"}, mode="update")
    assert (p["created"], p["skipped"]) == (1, 1)
    assert db_session.scalars(select(ContactInterest.interest)).all() == ["y"]


def test_latin1_file_is_read_and_the_user_is_told(logged_in, run_worker, db_session) -> None:
    r = upload(logged_in, "email,Vorname\njurgen@example.com,Jürgen\n".encode("latin-1"))
    page = logged_in.get(r.headers["Location"]).get_data(as_text=True)
    assert "Latin-1" in page and "Jürgen" in page
    map_and_start(logged_in, r.headers["Location"])
    run_worker()
    assert db_session.scalar(select(Contact.first_name)) == "Jürgen"


def test_utf8_bom_header_is_recognized(logged_in, run_worker, db_session) -> None:
    p = import_file(logged_in, run_worker, "\ufeffEmail;x\n".replace(";", ",").encode() + b"z@example.com,1\n")
    assert p["created"] == 1


@pytest.mark.parametrize("data, message", [
    (b"", "The file is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV file"),
    (b",".join(b"c%d" % i for i in range(10_000)) + b"\n", "10,000 columns"),
    (b"\n\n", "no column names"),
])
def test_bad_files_are_refused_with_a_message(logged_in, data: bytes, message: str) -> None:
    r = upload(logged_in, data)
    assert r.status_code == 400
    assert message in r.get_data(as_text=True)


def test_no_email_column_mapped_is_refused(logged_in, run_worker, db_session) -> None:
    r = upload(logged_in, b"name,city\nAnna,Berlin\n")
    r2 = map_and_start(logged_in, r.headers["Location"])
    assert r2.status_code == 400
    assert "exactly one column to Email" in r2.get_data(as_text=True)
    run_worker()
    assert db_session.scalar(select(Contact.id)) is None


def test_huge_cell_fails_only_its_row(logged_in, run_worker, db_session) -> None:
    data = b"email,first_name\nbig@example.com," + b"x" * (1024 * 1024) + b"\nok@example.com,Ok\n"
    p = import_file(logged_in, run_worker, data)
    assert (p["created"], p["failed"]) == (1, 1)
    assert db_session.scalars(select(Contact.email)).all() == ["ok@example.com"]


def test_unknown_topic_fails_the_row(logged_in, run_worker, db_session) -> None:
    p = import_file(logged_in, run_worker, b"email,topics\na@example.com,Nope\n")
    assert (p["created"], p["failed"]) == (0, 1)
    assert db_session.scalar(select(Subscription.contact_id)) is None


def test_progress_page_polls_from_a_static_script(logged_in) -> None:
    r = upload(logged_in, b"email\na@example.com\n")
    r = map_and_start(logged_in, r.headers["Location"])
    page = logged_in.get(r.headers["Location"]).get_data(as_text=True)
    assert "import.js" in page and "data-import-url" in page and "<script>" not in page
    assert logged_in.get(r.headers["Location"].replace("/status", "/progress")).get_json()["state"] == "queued"
    assert logged_in.get("/admin/contacts/import/not-a-uuid/progress").status_code == 404


def test_the_upload_is_deleted_when_the_import_finishes_and_the_report_stays(logged_in, run_worker, runtime) -> None:
    folder = runtime.settings.instance_path / "imports"
    p = import_file(logged_in, run_worker, b"email\nok@example.com\nbroken\n")
    assert (p["created"], p["failed"]) == (1, 1)
    assert [f.name.endswith(".errors.csv") for f in folder.iterdir()] == [True]
    assert logged_in.get(p["url"].replace("/status", "/errors.csv")).status_code == 200


def test_cleanup_removes_old_import_files_only(runtime) -> None:
    import datetime as dt
    import os
    import time

    from campaigns.contacts.imports import cleanup_imports

    assert cleanup_imports(runtime.settings, dt.timedelta(days=1)) == 0       # no folder yet: nothing to do
    folder = runtime.settings.instance_path / "imports"
    folder.mkdir(parents=True)
    old, new = folder / "old.csv", folder / "new.errors.csv"
    old.write_text("email\n")
    new.write_text("email,error\n")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    assert cleanup_imports(runtime.settings, dt.timedelta(days=1)) == 1
    assert not old.exists() and new.exists()


def test_an_upload_cleaned_up_before_it_was_started_asks_for_the_file_again(logged_in, runtime) -> None:
    r = upload(logged_in, b"email\na@example.com\n")
    location = r.headers["Location"]
    for path in (runtime.settings.instance_path / "imports").iterdir():
        path.unlink()
    r = logged_in.get(location, follow_redirects=True)
    assert "upload it again" in r.get_data(as_text=True)


def test_large_uploads_are_allowed_on_the_import_route_only_up_to_its_limit(app, logged_in) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    app.config["RAPPORT_IMPORT_MAX_BYTES"] = 50_000
    data = b"email\n" + b"".join(b"user%d@example.com\n" % i for i in range(1000))      # ~20 KB
    assert upload(logged_in, data).status_code == 302                  # above the general limit: fine here
    r = upload(logged_in, data * 4)
    assert r.status_code == 413 and "at most 49 KB" in r.get_data(as_text=True)
    token = csrf(logged_in, "/admin/topics")
    r = logged_in.post("/admin/topics", data={"csrf_token": token, "name": "x" * 2000})
    assert r.status_code == 413                                        # other forms keep the general limit


def test_update_adds_interests_and_topics_but_keeps_an_unsubscribe(logged_in, run_worker, db_session) -> None:
    news, tips = Topic(name="Newsletter"), Topic(name="Tips")
    db_session.add_all([news, tips])
    db_session.commit()
    anna = save_contact(db_session, {"email": "anna@example.com"}, topic_ids=[news.id],
                        interests=["roses"])
    db_session.commit()
    sub = db_session.scalar(select(Subscription).where(Subscription.contact_id == anna.id))
    sub.subscribed = False
    db_session.commit()
    data = b"email,interests,topics\nanna@example.com,roses;herbs,Newsletter;Tips\nnew@example.com,herbs,Tips\n"
    p = import_file(logged_in, run_worker, data, mode="update")
    assert (p["created"], p["updated"]) == (1, 1)
    db_session.rollback()
    subs = {(s.contact_id, s.topic_id): s.subscribed for s in db_session.scalars(select(Subscription))}
    new_id = db_session.scalar(select(Contact.id).where(Contact.email == "new@example.com"))
    assert subs == {(anna.id, news.id): False, (anna.id, tips.id): True, (new_id, tips.id): True}
    interests = set(db_session.execute(select(ContactInterest.contact_id, ContactInterest.interest)).all())
    assert interests == {(anna.id, "roses"), (anna.id, "herbs"), (new_id, "herbs")}


def test_many_rows_span_several_chunks(logged_in, run_worker, db_session, monkeypatch) -> None:
    from campaigns.contacts import imports

    monkeypatch.setattr(imports, "CHUNK_ROWS", 7)
    rows = [f"p{i}@example.com,Name{i},{'x' if i % 10 == 3 else 'DE'}" for i in range(50)]
    rows.append("p5@example.com,Again,DE")                          # a duplicate in a later chunk
    data = ("email,first_name,country\n" + "\n".join(rows) + "\n").encode()
    p = import_file(logged_in, run_worker, data, mode="update")
    assert (p["read"], p["created"], p["updated"], p["failed"]) == (51, 45, 1, 5)
    assert p["percent"] == 100
    db_session.rollback()
    assert db_session.scalar(select(Contact.first_name).where(Contact.email == "p5@example.com")) == "Again"
