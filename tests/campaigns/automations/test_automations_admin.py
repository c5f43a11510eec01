"""The automations admin through HTTP: create, bad input kept with a clear message, switch on, runs, cadence."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from campaigns.automations import runs as auto
from campaigns.composing.editor import save_campaign
from campaigns.contacts.records import save_contact
from campaigns.models import AdminUser, Automation

GREETING = """<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ contact.first_name }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def csrf(client, url: str) -> str:
    html = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, db_session, role: str = "editor"):
    db_session.add(AdminUser(email=f"{role}@shop.test", name=role.title(), role=role,
                             password_hash=generate_password_hash("correct horse battery")))
    db_session.commit()
    token = csrf(client, "/admin/login")
    client.post("/admin/login", data={"email": f"{role}@shop.test", "password": "correct horse battery",
                                      "csrf_token": token})
    return client


@pytest.fixture()
def greeting(db_session):
    c = save_campaign(db_session, {"name": "Birthday greeting", "kind": "nurture", "subject": "Happy birthday",
                                   "mjml": GREETING, "all_contacts": "1"})
    db_session.commit()
    return c


def test_create_switch_on_and_see_runs(client, db_session, runtime, greeting) -> None:
    login(client, db_session)
    page = client.get("/admin/automations/new").get_data(as_text=True)
    assert "Birthday greeting (nurture)" in page and "automations.js" in page
    # The starter it points to is named as the starter list names it.
    from campaigns.composing.starters import starter

    assert f"(starter “{starter('birthday').title}” for birthdays)" in page
    token = csrf(client, "/admin/automations/new")
    bad = {"csrf_token": token, "name": "Greetings", "trigger": "cron", "cron": "0 0 31 2 *",
           "template_0": str(greeting.id)}
    r = client.post("/admin/automations/new", data=bad)
    body = r.get_data(as_text=True)
    assert r.status_code == 400 and "never fires" in body and 'value="0 0 31 2 *"' in body   # input kept
    good = {"csrf_token": token, "name": "Greetings", "trigger": "date", "date_field": "birthday",
            "days_before": "0", "send_time": "08:30", "template_0": str(greeting.id)}
    r = client.post("/admin/automations/new", data=good)
    assert r.status_code == 302
    a = db_session.scalar(select(Automation).where(Automation.name == "Greetings"))
    assert a.send_minute == 8 * 60 + 30 and not a.active
    r = client.post(f"/admin/automations/{a.id}/activate", data={"csrf_token": token})
    assert r.status_code == 302
    db_session.commit()    # end the read snapshot taken before the app wrote
    save_contact(db_session, {"email": "rosa@example.com", "first_name": "Rosa", "birthday": "1990-04-02"})
    db_session.commit()
    auto.run_due(runtime, dt.datetime(2026, 4, 2, 9, tzinfo=dt.UTC))
    # The template draft's own page says an automation sends it, before anyone presses Send now.
    page = client.get(f"/admin/campaigns/{greeting.id}").get_data(as_text=True)
    assert 'id="automation-template"' in page and f'/admin/automations/{a.id}">Greetings</a>' in page
    assert "An automation sends this draft by itself." in page
    listing = client.get("/admin/automations").get_data(as_text=True)
    assert "Greetings" in listing and "daily at 08:30 local time" in listing and "engagement-decay" in listing
    detail = client.get(f"/admin/automations/{a.id}").get_data(as_text=True)
    assert "Greetings · 2026-04-02" in detail and "2026-04-02" in detail
    r = client.post(f"/admin/automations/{a.id}/pause", data={"csrf_token": token})
    db_session.expire_all()
    assert not db_session.get(Automation, a.id).active
    assert client.get("/admin/automations/99999").status_code == 404


def test_welcome_steps_from_the_form_and_cadence_report(client, db_session, runtime, greeting) -> None:
    login(client, db_session)
    token = csrf(client, "/admin/automations/new")
    r = client.post("/admin/automations/new", data={
        "csrf_token": token, "name": "Welcome", "trigger": "welcome", "delay_0": "0", "template_0": str(greeting.id),
        "delay_1": "3", "template_1": str(greeting.id), "delay_2": "x", "template_2": ""})
    assert r.status_code == 302
    a = db_session.scalar(select(Automation).where(Automation.name == "Welcome"))
    assert [s.delay_days for s in a.steps] == [0, 3]
    db_session.commit()
    old = save_contact(db_session, {"email": "old@example.com"})
    old.created_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    db_session.commit()
    page = client.get("/admin/automations/cadence?days=60").get_data(as_text=True)
    assert "old@example.com" in page and "60 days" in page
    r = client.get("/admin/automations/cadence?days=abc")
    assert r.status_code == 400 and "from 1 to 3650" in r.get_data(as_text=True)


def test_viewers_may_look_but_not_change(client, db_session, greeting) -> None:
    a = auto.save_automation(db_session, {"name": "Xmas", "trigger": "yearly", "yearly_date": "12-24"},
                             [("0", str(greeting.id))])
    db_session.commit()
    login(client, db_session, "viewer")
    assert client.get("/admin/automations").status_code == 200
    token = csrf(client, f"/admin/automations/{a.id}")
    assert client.post(f"/admin/automations/{a.id}/activate", data={"csrf_token": token}).status_code == 403
    assert client.post(f"/admin/automations/{a.id}", data={"csrf_token": token, "name": "Y"}).status_code == 403


def test_every_kind_of_automation_has_a_working_page(client, db_session, greeting) -> None:
    kinds = [{"trigger": "date", "date_field": "attribute", "attribute_key": "contract_start", "days_before": "7"},
             {"trigger": "date", "date_field": "first_order"},
             {"trigger": "yearly", "yearly_date": "02-29"},
             {"trigger": "cron", "cron": "0 9 * * MON#1"},
             {"trigger": "cadence", "inactive_days": "45"},
             {"trigger": "welcome"}]
    ids = []
    for i, data in enumerate(kinds):
        a = auto.save_automation(db_session, {"name": f"A{i}", **data}, [("0", str(greeting.id))])
        auto.set_active(db_session, a, True)
        ids.append(a.id)
    db_session.commit()
    login(client, db_session)
    listing = client.get("/admin/automations").get_data(as_text=True)
    for text in ("date attribute “contract_start”, 7 days before", "first order (anniversary), on the day",
                 "28 February in other years", "schedule `0 9 * * MON#1`", "not mailed in 45 days",
                 "after subscribing: day 0"):
        assert text in listing, text
    for automation_id in ids:
        page = client.get(f"/admin/automations/{automation_id}")
        assert page.status_code == 200 and "Nothing sent yet." in page.get_data(as_text=True)
    # Hostile form values: clear messages, never a 500.
    token = csrf(client, "/admin/automations/new")
    for data in ({"trigger": "date", "date_field": "birthday", "days_before": "9" * 30},
                 {"trigger": "yearly", "yearly_date": "aa-bb"}, {"trigger": "cron", "cron": "x" * 500},
                 {"trigger": "welcome", "delay_0": "-3"}, {"trigger": "date", "date_field": "../../etc"},
                 {"trigger": "cadence", "inactive_days": "0"}):
        r = client.post("/admin/automations/new", data={"csrf_token": token, "name": "Hostile",
                                                         "template_0": str(greeting.id), **data})
        assert r.status_code == 400, data
