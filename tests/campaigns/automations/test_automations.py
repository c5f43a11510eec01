"""Automations: date triggers in the contact's time zone, 29 February, calendars, cadence, welcome series, and
occurrences that are sent exactly once through the real worker and SMTP."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from campaigns.automations import runs as auto
from campaigns.composing.editor import save_campaign
from campaigns.contacts.records import save_contact
from campaigns.errors import ValidationError
from campaigns.models import (
    AutomationOccurrence,
    AutomationRun,
    Campaign,
    CampaignStatus,
    Contact,
    Order,
    Send,
    SendStatus,
)

UTC = dt.UTC
GREETING = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Happy day, {{ contact.first_name }}!</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


@pytest.fixture()
def template(db_session):
    def make(kind: str = "nurture", name: str = "Greeting", subject: str = "For you, {{ contact.first_name }}"):
        c = save_campaign(db_session, {"name": name, "kind": kind, "subject": subject, "mjml": GREETING,
                                       "from_name": "Anna Becker", "all_contacts": "1"})
        c.all_contacts = True
        db_session.commit()
        return c
    return make


def person(db_session, email: str, *, tz: str = "UTC", birthday: str = "", **extra) -> Contact:
    c = save_contact(db_session, {"email": email, "first_name": email.split("@")[0].title(), "timezone": tz,
                                  "birthday": birthday})
    for k, v in extra.items():
        setattr(c, k, v)
    db_session.commit()
    return c


def automation(db_session, template: Campaign, **data) -> object:
    steps = data.pop("steps", [("0", str(template.id))])
    obj = auto.save_automation(db_session, {"name": data.pop("name", "Auto"), **data}, steps)
    auto.set_active(db_session, obj, True)
    db_session.commit()
    return obj


def sends(db_session) -> list[tuple[str, str]]:
    db_session.commit()    # a fresh snapshot: the service and the worker wrote in their own sessions
    rows = db_session.execute(select(Contact.email, Campaign.name).join(Send, Send.contact_id == Contact.id)
                              .join(Campaign, Campaign.id == Send.campaign_id).order_by(Contact.email)).all()
    db_session.commit()
    return [(e, n) for e, n in rows]


def test_birthday_goes_out_at_the_local_send_time_once(db_session, runtime, template, run_worker,
                                                       outbox) -> None:
    tpl = template()
    person(db_session, "berlin@example.com", tz="Europe/Berlin", birthday="1990-05-14")
    person(db_session, "newyork@example.com", tz="America/New_York", birthday="1985-05-14")
    person(db_session, "other@example.com", tz="Europe/Berlin", birthday="1990-05-15")
    a = automation(db_session, tpl, name="Birthday", trigger="date", date_field="birthday", send_time="09:00")

    early = dt.datetime(2026, 5, 14, 6, 0, tzinfo=UTC)        # 08:00 in Berlin, 02:00 in New York
    assert auto.run_due(runtime, early)["queued"] == 0
    berlin_nine = dt.datetime(2026, 5, 14, 7, 5, tzinfo=UTC)  # 09:05 in Berlin
    assert auto.run_due(runtime, berlin_nine)["queued"] == 1
    assert auto.run_due(runtime, berlin_nine + dt.timedelta(minutes=1))["queued"] == 0   # the next tick
    run_worker()
    assert [list(m.recipients) for m in outbox.list()] == [["berlin@example.com"]]
    ny_nine = dt.datetime(2026, 5, 14, 13, 1, tzinfo=UTC)     # 09:01 in New York: joins the same run
    assert auto.run_due(runtime, ny_nine)["queued"] == 1
    run_worker()
    assert sorted(r for m in outbox.list() for r in m.recipients) == ["berlin@example.com", "newyork@example.com"]
    runs = db_session.scalars(select(AutomationRun).where(AutomationRun.automation_id == a.id)).all()
    assert [r.occurrence_date for r in runs] == [dt.date(2026, 5, 14)]
    run_campaign = db_session.get(Campaign, runs[0].campaign_id)
    db_session.refresh(run_campaign)
    assert run_campaign.status == CampaignStatus.FINISHED and run_campaign.sent == 2
    assert run_campaign.mjml == tpl.mjml and run_campaign.id != tpl.id
    assert db_session.get(Campaign, tpl.id).status == CampaignStatus.DRAFT   # the template itself is never sent
    # The next day is the other contact's birthday (a new run); those greeted yesterday are not mailed again.
    assert auto.run_due(runtime, ny_nine + dt.timedelta(days=1))["queued"] == 1
    assert ("other@example.com", "Birthday · 2026-05-15") in sends(db_session)
    assert auto.run_due(runtime, ny_nine + dt.timedelta(days=1, minutes=1))["queued"] == 0


def test_days_before_and_the_29th_of_february(db_session, runtime, template) -> None:
    tpl = template()
    person(db_session, "leap@example.com", birthday="2000-02-29")
    person(db_session, "march@example.com", birthday="1999-03-03")
    automation(db_session, tpl, name="Leap", trigger="date", date_field="birthday", send_time="08:00")
    automation(db_session, tpl, name="Ahead", trigger="date", date_field="birthday", days_before="3",
               send_time="08:00")
    # 2027 has no 29 February: the leap-day birthday is greeted on the 28th.
    auto.run_due(runtime, dt.datetime(2027, 2, 28, 8, 30, tzinfo=UTC))
    assert sends(db_session) == [("leap@example.com", "Leap · 2027-02-28"),
                                 ("march@example.com", "Ahead · 2027-03-03")]
    auto.run_due(runtime, dt.datetime(2027, 3, 1, 8, 30, tzinfo=UTC))
    assert len(sends(db_session)) == 2
    # 2028 has one: greeted on the 29th, not on the 28th.
    auto.run_due(runtime, dt.datetime(2028, 2, 28, 8, 30, tzinfo=UTC))
    assert len(sends(db_session)) == 2
    auto.run_due(runtime, dt.datetime(2028, 2, 29, 8, 30, tzinfo=UTC))
    assert ("leap@example.com", "Leap · 2028-02-29") in sends(db_session)


def test_first_order_anniversary_and_date_attribute(db_session, runtime, template) -> None:
    tpl = template()
    # First order at 23:30 UTC on 9 June 2024 is 10 June in Berlin: the anniversary is the local date.
    c = person(db_session, "buyer@example.com", tz="Europe/Berlin")
    db_session.add_all([Order(contact_id=c.id, ordered_at=dt.datetime(2024, 6, 9, 23, 30, tzinfo=UTC),
                              amount=Decimal("10")),
                        Order(contact_id=c.id, ordered_at=dt.datetime(2025, 1, 2, tzinfo=UTC), amount=Decimal("5"))])
    person(db_session, "member@example.com", attributes={"member_since": "2021-06-10"})
    person(db_session, "junk@example.com", attributes={"member_since": "06-10 sometime"})
    db_session.commit()
    automation(db_session, tpl, name="Anniversary", trigger="date", date_field="first_order", send_time="00:00")
    automation(db_session, tpl, name="Member", trigger="date", date_field="attribute",
               attribute_key="member_since", send_time="00:00")
    auto.run_due(runtime, dt.datetime(2026, 6, 9, 12, tzinfo=UTC))
    assert sends(db_session) == []
    auto.run_due(runtime, dt.datetime(2026, 6, 10, 12, tzinfo=UTC))
    assert sends(db_session) == [("buyer@example.com", "Anniversary · 2026-06-10"),
                                 ("member@example.com", "Member · 2026-06-10")]


def test_cron_and_yearly_calendar(db_session, runtime, template) -> None:
    tpl = template()
    person(db_session, "tokyo@example.com", tz="Asia/Tokyo")
    person(db_session, "utc@example.com")
    automation(db_session, tpl, name="Monthly", trigger="cron", cron="0 9 * * MON#1")
    automation(db_session, tpl, name="Xmas", trigger="yearly", yearly_date="12-24", send_time="10:00")
    # Monday 7 December 2026, 00:30 UTC = 09:30 in Tokyo: the first Monday has come there, not yet in UTC.
    auto.run_due(runtime, dt.datetime(2026, 12, 7, 0, 30, tzinfo=UTC))
    assert sends(db_session) == [("tokyo@example.com", "Monthly · 2026-12-07")]
    auto.run_due(runtime, dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    assert sends(db_session)[-1] == ("utc@example.com", "Monthly · 2026-12-07")
    auto.run_due(runtime, dt.datetime(2026, 12, 14, 9, 0, tzinfo=UTC))     # the second Monday: nothing
    assert len(sends(db_session)) == 2
    auto.run_due(runtime, dt.datetime(2026, 12, 24, 10, 0, tzinfo=UTC))
    assert {e for e, n in sends(db_session) if n == "Xmas · 2026-12-24"} == {"tokyo@example.com", "utc@example.com"}


@pytest.mark.parametrize(("expr", "message"), [
    ("0 9 * *", "five fields"),
    ("61 9 * * *", "not valid"),
    ("0 0 30 2 *", "never fires"),
    ("0 9,17 * * *", "more than once a day"),
    ("", "enter a schedule"),
])
def test_bad_cron_is_refused_with_a_clear_message(db_session, runtime, template, expr, message) -> None:
    tpl = template()
    with pytest.raises(ValidationError, match=message):
        auto.save_automation(db_session, {"name": "Bad", "trigger": "cron", "cron": expr}, [("0", str(tpl.id))])


def test_form_mistakes_are_refused(db_session, runtime, template) -> None:
    tpl = template()
    no_audience = save_campaign(db_session, {"name": "Nobody", "kind": "nurture", "subject": "x", "mjml": GREETING})
    db_session.commit()
    cases = [({"trigger": "yearly", "yearly_date": "02-30"}, [("0", str(tpl.id))], "MM-DD"),
             ({"trigger": "date", "date_field": "birthday", "days_before": "-1"}, [("0", str(tpl.id))], "0 to 365"),
             ({"trigger": "date", "date_field": "attribute", "attribute_key": "a'b"}, [("0", str(tpl.id))], "attr"),
             ({"trigger": "date", "date_field": "birthday", "send_time": "25:00"}, [("0", str(tpl.id))], "HH:MM"),
             ({"trigger": "welcome"}, [("0", str(tpl.id)), ("0", str(tpl.id))], "same day"),
             ({"trigger": "cadence"}, [("0", "")], "choose the mail"),
             ({"trigger": "cadence"}, [("0", str(no_audience.id))], "no audience"),
             ({"trigger": "nonsense"}, [("0", str(tpl.id))], "what starts")]
    for data, steps, message in cases:
        with pytest.raises(ValidationError, match=message):
            auto.save_automation(db_session, {"name": "X", **data}, steps)
        db_session.rollback()
    # 29 February is a valid yearly date.
    a = auto.save_automation(db_session, {"name": "Leap day", "trigger": "yearly", "yearly_date": "02-29"},
                             [("0", str(tpl.id))])
    assert "28 February in other years" in auto.describe(a)


def test_cadence_watch_mails_the_quiet_ones_once(db_session, runtime, template, client) -> None:
    tpl = template(name="Nurture")
    now = dt.datetime(2026, 9, 1, 12, tzinfo=UTC)
    person(db_session, "quiet@example.com", last_sent_at=now - dt.timedelta(days=45),
           created_at=now - dt.timedelta(days=400))
    person(db_session, "recent@example.com", last_sent_at=now - dt.timedelta(days=3),
           created_at=now - dt.timedelta(days=400))
    person(db_session, "never@example.com", created_at=now - dt.timedelta(days=31))
    person(db_session, "new@example.com", created_at=now - dt.timedelta(days=2))
    page = auto.not_contacted(db_session, 30, now=now)
    assert sorted(c.email for c in page.contacts) == ["never@example.com", "quiet@example.com"]
    automation(db_session, tpl, name="Keep in touch", trigger="cadence", inactive_days="30", send_time="09:00")
    auto.run_due(runtime, now)
    assert sorted(e for e, _ in sends(db_session)) == ["never@example.com", "quiet@example.com"]
    # Still not sent (say, held by the policy) the next day: not queued again within the 30 days.
    auto.run_due(runtime, now + dt.timedelta(days=1))
    assert len(sends(db_session)) == 2


def test_welcome_series_steps_follow_the_subscription(db_session, runtime, template) -> None:
    first, second = template(name="Welcome 1"), template(name="Welcome 2")
    person(db_session, "old@example.com", consent_at=dt.datetime(2020, 1, 1, tzinfo=UTC))
    a = automation(db_session, first, name="Welcome", trigger="welcome",
                   steps=[("3", str(second.id)), ("0", str(first.id))])
    assert [s.delay_days for s in a.steps] == [0, 3]
    joined = a.activated_at + dt.timedelta(hours=1)
    person(db_session, "new@example.com", consent_at=joined, created_at=joined)
    auto.run_due(runtime, joined + dt.timedelta(minutes=1))
    assert [e for e, _ in sends(db_session)] == ["new@example.com"]   # old subscribers are never welcomed
    auto.run_due(runtime, joined + dt.timedelta(days=2))
    assert len(sends(db_session)) == 1
    auto.run_due(runtime, joined + dt.timedelta(days=3, minutes=1))
    assert [n.split(" · ")[1] for e, n in sends(db_session)] == ["day 0", "day 3"]
    auto.run_due(runtime, joined + dt.timedelta(days=3, minutes=2))
    assert len(sends(db_session)) == 2


def test_concurrent_ticks_send_each_occurrence_once(db_session, runtime, template, run_worker, outbox) -> None:
    tpl = template()
    for i in range(12):
        person(db_session, f"p{i}@example.com", tz=["UTC", "Europe/Berlin", "Asia/Tokyo"][i % 3],
               birthday="1980-07-01")
    automation(db_session, tpl, name="Birthday", trigger="date", date_field="birthday", send_time="00:00")
    now = dt.datetime(2026, 7, 1, 12, tzinfo=UTC)
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            auto.run_due(runtime, now)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert db_session.scalar(select(func.count()).select_from(AutomationOccurrence)) == 12
    assert db_session.scalar(select(func.count()).select_from(Send)) == 12
    assert db_session.scalar(select(func.count()).select_from(AutomationRun)) == 1
    run_worker()
    recipients = [r for m in outbox.list() for r in m.recipients]
    assert len(recipients) == 12 and len(set(recipients)) == 12


def test_lost_send_row_is_repaired_and_broken_template_stops_before_marking(db_session, runtime, template) -> None:
    tpl = template()
    person(db_session, "a@example.com", birthday="1980-07-01")
    a = automation(db_session, tpl, name="Birthday", trigger="date", date_field="birthday", send_time="00:00")
    now = dt.datetime(2026, 7, 1, 12, tzinfo=UTC)
    auto.run_due(runtime, now)
    # A crash between the occurrence's commit and its send row: the next tick adds the row, once.
    db_session.query(Send).delete()
    db_session.commit()
    assert auto.run_due(runtime, now + dt.timedelta(minutes=1))["queued"] == 1
    assert auto.run_due(runtime, now + dt.timedelta(minutes=2))["queued"] == 0
    # A template broken after the fact: the automation reports it and marks nobody.
    person(db_session, "b@example.com", birthday="1980-07-02")
    tpl = db_session.get(Campaign, tpl.id)
    tpl.mjml = "<mjml><mj-body><mj-text>{{ contact.first_name </mj-text></mj-body></mjml>"
    db_session.commit()
    assert auto.run_due(runtime, now + dt.timedelta(days=1))["errors"] == 1
    db_session.expire_all()
    assert "line" in db_session.get(type(a), a.id).last_error
    assert db_session.scalar(select(func.count()).select_from(AutomationOccurrence)) == 1


def test_automation_sends_respect_unsubscribes(db_session, runtime, template, run_worker, outbox) -> None:
    tpl = template()
    person(db_session, "gone@example.com", birthday="1980-07-01")
    automation(db_session, tpl, name="Birthday", trigger="date", date_field="birthday", send_time="00:00")
    auto.run_due(runtime, dt.datetime(2026, 7, 1, 12, tzinfo=UTC))
    gone = db_session.scalar(select(Contact).where(Contact.email == "gone@example.com"))
    gone.status = "unsubscribed"        # between the tick and the batch: re-checked at send time
    db_session.commit()
    run_worker()
    assert outbox.list() == []
    assert db_session.scalar(select(Send.status)) == SendStatus.SKIPPED


def test_demo_birthday_automation_sends_a_greeting_with_a_present(db_session, runtime, run_worker, outbox) -> None:
    from campaigns.demo import data as demo_data

    assert demo_data.seed(runtime.settings, contacts=40)
    db_session.commit()
    contact = db_session.scalars(select(Contact).where(Contact.status == "subscribed", Contact.birthday.is_not(None))
                                 .order_by(Contact.id)).first()
    day = auto.yearly_date(contact.birthday.month, contact.birthday.day, 2027)
    born_that_day = {c.email for c in db_session.scalars(select(Contact).where(Contact.status == "subscribed"))
                     if c.birthday and (c.birthday.month, c.birthday.day) == (day.month, day.day)}
    db_session.commit()
    auto.run_due(runtime, dt.datetime.combine(day, dt.time(10), UTC))   # 11:00 or 12:00 in the demo's zones
    run_worker()
    got = {r for m in outbox.list() for r in m.recipients}
    assert got == born_that_day and contact.email in got
    message = outbox.get(outbox.list()[0].key)
    assert "Happy birthday" in message.subject and "BDAY-" in (message.html or "")


def test_a_paused_run_resumes_for_its_own_contacts_only(db_session, runtime, template, run_worker, outbox) -> None:
    from campaigns.sending import lifecycle as sending

    tpl = template()
    person(db_session, "birthday@example.com", birthday="1980-07-01")
    person(db_session, "bystander@example.com", birthday="1980-01-01")
    automation(db_session, tpl, name="Birthday", trigger="date", date_field="birthday", send_time="00:00")
    auto.run_due(runtime, dt.datetime(2026, 7, 1, 12, tzinfo=UTC))
    run = db_session.scalar(select(AutomationRun))
    campaign = db_session.get(Campaign, run.campaign_id)
    sending.pause(db_session, campaign, "relay trouble")     # e.g. the relay refused us
    db_session.commit()
    run_worker()
    assert outbox.list() == []
    assert auto.resume_run(runtime, db_session, run.campaign_id) == 1
    db_session.commit()
    with pytest.raises(ValidationError, match="only a paused run"):
        auto.resume_run(runtime, db_session, run.campaign_id)
    run_worker()
    assert [list(m.recipients) for m in outbox.list()] == [["birthday@example.com"]]


def test_the_campaign_pages_resume_of_a_run_stays_with_its_contacts(db_session, runtime, template, run_worker,
                                                                     outbox) -> None:
    """sending.start (the campaign page's Send/Resume) on a run resumes the run; it never walks the audience."""
    from campaigns.errors import InvalidState
    from campaigns.sending import lifecycle as sending

    tpl = template()
    person(db_session, "birthday@example.com", birthday="1980-07-01")
    person(db_session, "bystander@example.com", birthday="1980-01-01")
    automation(db_session, tpl, name="Birthday", trigger="date", date_field="birthday", send_time="00:00")
    auto.run_due(runtime, dt.datetime(2026, 7, 1, 12, tzinfo=UTC))
    run = db_session.scalar(select(AutomationRun))
    campaign = db_session.get(Campaign, run.campaign_id)
    sending.pause(db_session, campaign, "relay trouble")
    db_session.commit()
    run_worker()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    with pytest.raises(InvalidState, match="automation"):
        sending.start(db_session, runtime, db_session.get(Campaign, run.campaign_id))
    run_worker()
    assert [list(m.recipients) for m in outbox.list()] == [["birthday@example.com"]]
