"""A birthday without a year (stored in 1904) is "--MM-DD" wherever it leaves the database as text — the admin form,
the API, CSV and personal-data exports, template variables — and every way in takes that form back. 1904 is never
shown."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from sqlalchemy import select, text

from campaigns.contacts import birthdays
from campaigns.contacts.records import personalization, save_contact
from campaigns.models import Contact
from tests.campaigns.api.conftest import auth, make_key
from tests.campaigns.web import test_admin
from tests.campaigns.web.test_admin import csrf
from tests.helpers import export_contacts, fresh

admin_user = test_admin.admin_user
logged_in = test_admin.logged_in
make_key = make_key           # the API key fixture, shared with the API tests

YEARLESS = dt.date(birthdays.NO_YEAR, 5, 17)


@pytest.mark.parametrize(("day", "shown"), [(None, ""), (dt.date(1990, 4, 23), "1990-04-23"), (YEARLESS, "--05-17"),
                                            (dt.date(1904, 2, 29), "--02-29")])
def test_text_and_parse_round_trip(day, shown) -> None:
    assert birthdays.text(day) == shown
    if day is not None:
        assert birthdays.parse(shown) == day
    assert birthdays.parse("--0517") == YEARLESS and birthdays.parse(" --05-17 ") == YEARLESS


@pytest.mark.parametrize("bad", ["--13-01", "--02-30", "--5-17", "05-17", "---05-17", "1990-4-23", "17.05.", ""])
def test_parse_refuses_what_is_not_a_birthday(bad) -> None:
    with pytest.raises(ValueError):
        birthdays.parse(bad)


def test_the_admin_form_shows_and_takes_a_birthday_without_a_year(logged_in, db_session) -> None:
    c = save_contact(db_session, {"email": "kim@example.com", "birthday": YEARLESS})
    db_session.commit()
    page = logged_in.get(f"/admin/contacts/{c.id}").get_data(as_text=True)
    assert re.search(r'id="birthday" name="birthday" type="text" value="--05-17"', page)
    assert "1904" not in page
    url = f"/admin/contacts/{c.id}"
    for typed, stored in (("--04-23", dt.date(1904, 4, 23)), ("1990-12-31", dt.date(1990, 12, 31)), ("", None)):
        r = logged_in.post(url, data={"email": "kim@example.com", "birthday": typed,
                                      "csrf_token": csrf(logged_in, url)})
        assert r.status_code == 302, r.get_data(as_text=True)
        assert fresh(db_session).get(Contact, c.id).birthday == stored
    r = logged_in.post(url, data={"email": "kim@example.com", "birthday": "--02-30",
                                  "csrf_token": csrf(logged_in, url)})
    assert r.status_code == 400
    assert "not a date like 1990-04-23 (or --04-23 without the year)" in r.get_data(as_text=True)
    assert 'value="--02-30"' in r.get_data(as_text=True)          # what was typed is kept


def test_the_api_reads_and_writes_a_birthday_without_a_year(client, db_session, make_key) -> None:
    h = auth(make_key())
    r = client.post("/api/v1/contacts", json={"email": "ana@example.com", "birthday": "--05-17"}, headers=h)
    assert r.status_code == 201, r.get_json()
    ana = r.get_json()
    assert ana["birthday"] == "--05-17"
    assert fresh(db_session).get(Contact, ana["id"]).birthday == YEARLESS
    assert client.get(f"/api/v1/contacts/{ana['id']}", headers=h).get_json()["birthday"] == "--05-17"
    r = client.patch(f"/api/v1/contacts/{ana['id']}", json={"birthday": "1990-04-23"}, headers=h)
    assert r.status_code == 200 and r.get_json()["birthday"] == "1990-04-23"
    bad = client.patch(f"/api/v1/contacts/{ana['id']}", json={"birthday": "--13-01"}, headers=h)
    assert bad.status_code == 422
    error = bad.get_json(force=True)["errors"][0]
    assert error["field"] == "birthday" and "--04-23 without the year" in error["message"]
    assert fresh(db_session).get(Contact, ana["id"]).birthday == dt.date(1990, 4, 23)     # unchanged
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "--MM-DD" in json.dumps(spec)


def test_exports_write_it_and_an_import_reads_the_export_back(logged_in, db_session, work, run_worker) -> None:
    from tests.campaigns.contacts.test_import import import_file

    nian = save_contact(db_session, {"email": "nian@example.com", "birthday": YEARLESS})
    save_contact(db_session, {"email": "dora@example.com", "birthday": dt.date(1990, 4, 23)})
    db_session.commit()
    body, _state = export_contacts(logged_in, work)
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(body.removeprefix("\ufeff")))}
    # A spreadsheet would read a cell starting with "-" as a formula: the export's guard apostrophe stays.
    assert rows["nian@example.com"]["birthday"] == "'--05-17"
    assert rows["dora@example.com"]["birthday"] == "1990-04-23"
    assert "1904" not in body
    data = json.loads(logged_in.get(f"/admin/contacts/{nian.id}/gdpr.json").get_data())
    assert data["profile"]["birthday"] == "--05-17"

    # The export, edited and imported again (as an update), loses nothing.
    db_session.execute(text("UPDATE contact SET birthday = NULL"))
    db_session.commit()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "birthday"])
    writer.writerows([["nian@example.com", "'--05-17"], ["dora@example.com", "1990-04-23"],
                      ["neu@example.com", "--12-24"]])
    progress = import_file(logged_in, run_worker, out.getvalue().encode(), mode="update")
    assert progress["failed"] == 0, progress
    got = dict(fresh(db_session).execute(select(Contact.email, Contact.birthday)).all())
    assert got == {"nian@example.com": YEARLESS, "dora@example.com": dt.date(1990, 4, 23),
                   "neu@example.com": dt.date(1904, 12, 24)}


def test_templates_see_it_without_the_year_and_the_details_starter_shows_day_and_month(db_session) -> None:
    from campaigns.composing import starters
    from campaigns.composing.preview import preview
    from mailer.compose.campaign import CampaignSource

    c = save_contact(db_session, {"email": "kim@example.com", "birthday": YEARLESS})
    dated = save_contact(db_session, {"email": "dora@example.com", "birthday": dt.date(1990, 4, 3)})
    nothing = save_contact(db_session, {"email": "none@example.com"})
    vars_ = personalization(c)
    assert (vars_["birthday"], vars_["birthday_day"], vars_["birthday_month"], vars_["birthday_year"]) == \
        ("--05-17", 17, 5, None)
    assert (personalization(dated)["birthday"], personalization(dated)["birthday_year"]) == ("1990-04-03", 1990)
    starter = starters.starter("details")
    sender = {"name": "Green Thumb", "email": "news@shop.test", "postal_address": "Lindenstraße 1, Berlin",
              "title": ""}
    source = CampaignSource(mjml=starter.mjml, subject=starter.subject)
    shown = {}
    for who in (c, dated, nothing):
        out = preview(source, starter.kind, sender, personalization(who))
        assert out.text, out.errors
        shown[who.email] = re.search(r"Birthday:\**\s*([^\n*]+)", out.text)[1].strip()
    assert shown == {"kim@example.com": "17.5.", "dora@example.com": "3.4.", "none@example.com": "not given"}


def test_an_upgrade_mends_campaigns_made_from_the_old_details_starter(tmp_path) -> None:
    from alembic import command

    from campaigns.db import make_engine
    from campaigns.resources import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0032")
    old = "<p>Birthday: {{ contact.birthday[8:10] }}.{{ contact.birthday[5:7] }}.</p>"
    engine = make_engine(url)
    now = dt.datetime(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO campaign (id, name, kind, subject, preheader, from_name, from_email, "
                          "reply_to, mjml, text_body, all_contacts, status, status_reason, content_hash, "
                          "created_at, updated_at, recipients, sent, failed, held, skipped, relay) VALUES "
                          "(1, 'c', 'nurture', 's', '', '', '', '', :m, :m, true, 'draft', '', "
                          "'', :t, :t, 0, 0, 0, 0, 0, ''), (2, 'other', 'nurture', 's', '', '', '', '', "
                          "'{{ contact.birthday }}', '', true, 'draft', '', '', :t, :t, 0, 0, 0, 0, 0, '')"),
                     {"t": now, "m": old})
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, mjml, text_body FROM campaign ORDER BY id")).all()
    engine.dispose()
    new = "<p>Birthday: {{ contact.birthday_day }}.{{ contact.birthday_month }}.</p>"
    assert [tuple(r) for r in rows] == [(1, new, new), (2, "{{ contact.birthday }}", "")]
