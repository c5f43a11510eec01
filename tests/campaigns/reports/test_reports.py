"""Report and dashboard chart data (time buckets on SQLite and PostgreSQL), pages, and the vendored Chart.js."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from sqlalchemy import select, update

from campaigns.models import Campaign, Contact, Event, EventType, Link, Send, SendStatus
from campaigns.reports import campaign_report as reports
from campaigns.sending import lifecycle as sending
from tests.campaigns.web import test_admin

admin_user, logged_in = test_admin.admin_user, test_admin.logged_in   # shared fixtures
STATIC = Path(__file__).resolve().parents[3] / "campaigns" / "static"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)        # a Monday


def _sent_campaign(runtime, db_session, make_contacts, make_campaign, run_worker, n: int = 6):
    topic, contacts = make_contacts(n)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    db_session.rollback()
    db_session.expire_all()
    # Pin the run to a known time, so buckets are predictable.
    db_session.execute(update(Campaign).where(Campaign.id == campaign.id).values(
        started_at=T0, finished_at=T0 + dt.timedelta(minutes=5)))
    db_session.commit()
    sends = {s.contact_id: s for s in db_session.scalars(select(Send).where(Send.campaign_id == campaign.id))}
    links = list(db_session.scalars(select(Link).where(Link.campaign_id == campaign.id).order_by(Link.position)))
    return db_session.get(Campaign, campaign.id), contacts, sends, links


def _event(db_session, campaign, contact, send, type_, at, machine=False, **data) -> None:
    db_session.add(Event(contact_id=contact.id, campaign_id=campaign.id, send_id=send.id, type=type_,
                         occurred_at=at, machine=machine, data=data))


def test_campaign_charts_bucket_events_by_hour_and_keep_machines_apart(
        runtime, db_session, make_contacts, make_campaign, run_worker) -> None:
    campaign, contacts, sends, links = _sent_campaign(runtime, db_session, make_contacts, make_campaign, run_worker)
    c = contacts
    _event(db_session, campaign, c[0], sends[c[0].id], EventType.OPEN, T0 + dt.timedelta(minutes=10))
    _event(db_session, campaign, c[1], sends[c[1].id], EventType.OPEN, T0 + dt.timedelta(minutes=50))
    _event(db_session, campaign, c[2], sends[c[2].id], EventType.OPEN, T0 + dt.timedelta(minutes=1), machine=True)
    _event(db_session, campaign, c[0], sends[c[0].id], EventType.CLICK, T0 + dt.timedelta(hours=2, minutes=5),
           link_id=links[1].id)
    _event(db_session, campaign, c[1], sends[c[1].id], EventType.CLICK, T0 + dt.timedelta(hours=2, minutes=6),
           link_id=links[1].id)
    _event(db_session, campaign, c[1], sends[c[1].id], EventType.CLICK, T0 + dt.timedelta(hours=2, minutes=7),
           link_id=links[1].id)
    _event(db_session, campaign, c[3], sends[c[3].id], EventType.UNSUBSCRIBE, T0 + dt.timedelta(hours=5))
    _event(db_session, campaign, c[4], sends[c[4].id], EventType.BOUNCE, T0 + dt.timedelta(hours=1), kind="hard")
    held = sends[c[5].id]
    held.status, held.reason = SendStatus.HELD, "ratio"
    db_session.commit()

    charts = reports.campaign_charts(db_session, campaign.id, now=T0 + dt.timedelta(days=10))
    t = charts["timeline"]
    assert t["unit"] == "hour" and t["labels"][0] == "2026-03-02 09:00" and t["labels"][5] == "2026-03-02 14:00"
    assert t["series"]["opens"][:3] == [2, 0, 0]                      # machine open not counted…
    assert t["series"]["opens_machine"][0] == 1                       # …but shown apart
    assert t["series"]["clicks"][2] == 3 and sum(t["series"]["clicks"]) == 3
    assert t["series"]["unsubscribes"][5] == 1 and t["series"]["bounces"][1] == 1
    assert [(x["people"], x["clicks"]) for x in charts["links"]] == [(0, 0), (2, 3)]
    assert charts["outcomes"]["held"] == 1 and charts["outcomes"]["bounced"] == 1
    assert charts["outcomes"]["delivered"] == 4                       # 5 sent, one bounced
    assert charts["rules"] == [{"reason": "ratio", "held": 1, "skipped": 0}]


def test_long_campaigns_are_charted_by_day(runtime, db_session, make_contacts, make_campaign, run_worker) -> None:
    campaign, contacts, sends, _ = _sent_campaign(runtime, db_session, make_contacts, make_campaign, run_worker, 2)
    at = T0 + dt.timedelta(days=6, hours=14)                          # Sunday 23:00
    _event(db_session, campaign, contacts[0], sends[contacts[0].id], EventType.OPEN, at)
    db_session.commit()
    t = reports.campaign_charts(db_session, campaign.id)["timeline"]
    assert t["unit"] == "day" and t["labels"][0] == "2026-03-02" and t["labels"][-1] == "2026-03-08"
    assert t["series"]["opens"] == [0, 0, 0, 0, 0, 0, 1]


def test_dashboard_counts_list_growth_and_weekly_people_engaged(db_session, make_contacts) -> None:
    _, contacts = make_contacts(5)
    now = dt.datetime(2026, 3, 18, 12, 0, tzinfo=dt.UTC)                 # a Wednesday
    created = [now - dt.timedelta(weeks=30), now - dt.timedelta(weeks=2), now - dt.timedelta(weeks=2),
               now - dt.timedelta(days=1), now - dt.timedelta(days=1)]
    for contact, at in zip(contacts, created, strict=True):
        db_session.execute(update(Contact).where(Contact.id == contact.id).values(created_at=at))
    for contact, machine in ((contacts[0], False), (contacts[0], False), (contacts[1], False), (contacts[2], True)):
        db_session.add(Event(contact_id=contact.id, type=EventType.OPEN, occurred_at=now - dt.timedelta(hours=3),
                             machine=machine))
    db_session.add(Event(contact_id=contacts[3].id, type=EventType.CLICK, occurred_at=now - dt.timedelta(weeks=1)))
    db_session.commit()
    d = reports.dashboard(db_session, weeks=4, now=now)
    assert d["labels"] == ["2026-02-23", "2026-03-02", "2026-03-09", "2026-03-16"]
    assert d["growth"]["new"] == [0, 2, 0, 2]
    assert d["growth"]["total"] == [1, 3, 3, 5]                      # one contact from before the window
    assert d["engagement"]["opened"] == [0, 0, 0, 2]                  # people, not opens; machines excluded
    assert d["engagement"]["clicked"] == [0, 0, 1, 0]


def test_report_and_dashboard_pages_load_the_vendored_chart_library(
        logged_in, runtime, db_session, make_contacts, make_campaign, run_worker) -> None:
    campaign, *_ = _sent_campaign(runtime, db_session, make_contacts, make_campaign, run_worker, 2)
    page = logged_in.get(f"/admin/campaigns/{campaign.id}/report")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert '/static/vendor/chart.umd.min.js' in html and '/static/charts.js' in html
    for name in ("engagement", "links", "outcomes", "rules", "losses"):
        assert f'data-chart="{name}"' in html
    assert "<script>" not in html                                       # no inline script (CSP)
    data = logged_in.get(f"/admin/campaigns/{campaign.id}/report.json").get_json()
    assert data["outcomes"]["delivered"] == 2 and len(data["links"]) == 2
    dash = logged_in.get("/admin/").get_data(as_text=True)
    assert 'data-chart="growth"' in dash and 'data-chart="trend"' in dash and "Test campaign" in dash
    assert logged_in.get("/admin/dashboard.json").get_json()["growth"]["total"][-1] == 2
    lib = logged_in.get("/static/vendor/chart.umd.min.js")
    assert lib.status_code == 200 and b"Chart.js v4" in lib.data[:200]
    lib.close()
    assert "MIT" in (STATIC / "vendor" / "chart.js.LICENSE.md").read_text()


def test_held_and_skipped_rules_read_in_words_on_the_report(
        logged_in, runtime, db_session, make_contacts, make_campaign, run_worker) -> None:
    campaign, contacts, sends, _ = _sent_campaign(runtime, db_session, make_contacts, make_campaign, run_worker, 2)
    db_session.execute(update(Send).where(Send.id == sends[contacts[0].id].id).values(
        status=SendStatus.SKIPPED, reason="topic"))
    db_session.commit()
    html = logged_in.get(f"/admin/campaigns/{campaign.id}/report").get_data(as_text=True)
    assert "<td>left the campaign's topic</td>" in html.replace("&#39;", "'")
    rules = logged_in.get(f"/admin/campaigns/{campaign.id}/report.json").get_json()["rules"]
    assert rules == [{"reason": "topic", "label": "left the campaign's topic", "held": 0, "skipped": 1}]


def test_the_campaigns_list_orders_like_the_dashboard_by_the_date_it_shows(logged_in, db_session) -> None:
    now = dt.datetime.now(dt.UTC)
    db_session.add_all([Campaign(name="Drafted long ago, sent today", subject="a", mjml="<mjml></mjml>",
                                 created_at=now - dt.timedelta(days=30), started_at=now),
                        Campaign(name="Drafted yesterday", subject="b", mjml="<mjml></mjml>",
                                 created_at=now - dt.timedelta(days=1))])
    db_session.commit()
    for url in ("/admin/campaigns", "/admin/"):
        html = logged_in.get(url).get_data(as_text=True)
        assert html.index("Drafted long ago, sent today") < html.index("Drafted yesterday"), url


def test_topic_subscribers_are_the_people_a_campaign_to_it_reaches(logged_in, db_session, make_contacts) -> None:
    from campaigns.models import ContactStatus

    topic, contacts = make_contacts(3)
    contacts[0].status = ContactStatus.UNSUBSCRIBED      # left all mail; the topic row stays as history
    db_session.commit()
    html = logged_in.get("/admin/topics").get_data(as_text=True)
    assert re.search(r"<td>Newsletter</td><td></td><td class=\"num\">2</td>", html), html
