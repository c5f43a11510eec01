"""The admin audit log: admin actions land in it with who, what and when; admins read it with filters."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from campaigns.models import AuditEntry
from tests.campaigns.accounts.test_settings import admin, post  # noqa: F401  (the fixture)
from tests.campaigns.web.test_access import add_user, login
from tests.helpers import fresh


def entries(db_session) -> list[AuditEntry]:
    return list(fresh(db_session).scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_a_send_and_a_settings_change_are_recorded_and_shown(admin, db_session, make_contacts,  # noqa: F811
                                                             make_campaign, run_worker, outbox) -> None:
    topic, _ = make_contacts(3)
    campaign = make_campaign([topic])
    r = post(admin, f"/admin/campaigns/{campaign.id}/send", {})
    assert r.status_code == 302
    run_worker()
    assert outbox.count() == 3
    r = post(admin, "/admin/settings/postal-address",
             {"postal_address": "Green Thumb GmbH\r\nGartenweg 7\r\n80331 München"})
    assert r.status_code == 302
    post(admin, f"/admin/campaigns/{campaign.id}/pause", {})        # finished: refused, so not recorded

    rows = entries(db_session)
    assert [(e.actor, e.action, e.target) for e in rows] == [
        ("boss@shop.test", "campaign.send", f"campaign {campaign.id}"),
        ("boss@shop.test", "settings.postal_address", "postal address"),
    ]
    assert rows[0].detail == "Test campaign"
    assert "Gartenweg 7" in rows[1].detail
    assert rows[0].ip == "127.0.0.1"
    assert dt.datetime.now(dt.UTC) - rows[1].at < dt.timedelta(minutes=5)

    page = admin.get("/admin/audit").get_data(as_text=True)
    assert "campaign.send" in page and "settings.postal_address" in page and "boss@shop.test" in page
    only_sends = admin.get("/admin/audit?action=campaign.send").get_data(as_text=True)
    assert "campaign.send" in only_sends and "Gartenweg" not in only_sends
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    assert "No entries match" in admin.get(f"/admin/audit?since={tomorrow}").get_data(as_text=True)


def test_an_empty_audit_log_says_nothing_happened_yet_not_that_filters_match_nothing(admin) -> None:  # noqa: F811
    page = admin.get("/admin/audit").get_data(as_text=True)
    assert "Nothing recorded yet" in page and "No entries match" not in page


def test_user_dkim_and_export_actions_are_recorded(admin, db_session) -> None:  # noqa: F811
    r = post(admin, "/admin/settings/users", {"email": "new@shop.test", "name": "New", "role": "viewer",
                                               "password": "a long enough password"})
    assert r.status_code == 302
    user_id = db_session.scalar(select(AuditEntry.target).where(AuditEntry.action == "user.create"))
    post(admin, f"/admin/settings/users/{user_id.split()[1]}", {"action": "deactivate"})
    post(admin, "/admin/settings/dkim", {"action": "generate", "kind": "ed25519", "selector": "k2027"})
    assert post(admin, "/admin/contacts/exports", {"status": ""}).status_code == 303   # exports are jobs now
    actions = [e.action for e in entries(db_session)]
    assert actions == ["user.create", "user.deactivate", "dkim.generate", "contacts.export"]


def test_only_admins_see_the_audit_log(app, db_session) -> None:
    client = app.test_client()
    add_user(db_session, "ed@shop.test", "editor")
    login(client, "ed@shop.test")
    assert client.get("/admin/audit").status_code == 403
    assert client.get("/admin/system").status_code == 403


def test_system_page_shows_workers_and_problems(admin, runtime) -> None:  # noqa: F811
    page = admin.get("/admin/system").get_data(as_text=True)
    assert "no worker is alive" in page
    from rq import SimpleWorker

    worker = SimpleWorker([runtime.queue], connection=runtime.redis, name="w-on-page")
    worker.register_birth()
    try:
        page = admin.get("/admin/system").get_data(as_text=True)
        assert "w-on-page" in page and "no worker is alive" not in page
    finally:
        worker.register_death()


def test_survey_answer_export_is_recorded(admin, db_session) -> None:  # noqa: F811
    r = post(admin, "/admin/surveys/new", {"name": "Spring check-in", "q0_prompt": "Happy?", "q0_kind": "yes_no"})
    assert r.status_code == 302
    survey_id = int(r.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    export = admin.get(f"/admin/surveys/{survey_id}/answers.csv")
    assert export.status_code == 200
    export.close()
    rows = entries(db_session)
    assert [(e.action, e.target, e.detail) for e in rows] == [
        ("survey.answers_export", f"survey {survey_id}", "Spring check-in")]
