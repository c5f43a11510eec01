"""Delivery in each reader's local time, through the real worker, sweeper and capture SMTP server, under a
controllable clock (time-machine moves every clock of this process: the app, the worker, the capture server)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from campaigns.models import Campaign, CampaignStatus, Contact, Send, SendStatus
from campaigns.sending import lifecycle as sending
from campaigns.sending import sweeper
from campaigns.sending.localtime import contact_zone, due_at
from mailer.capture.entries import arrival_time
from mailer.tracking import Purpose
from tests.helpers import csrf, fresh

UTC = dt.UTC
# Saturday 28 March 2026, 10:00 UTC: Europe moves its clocks forward the next night (01:00 UTC).
START = dt.datetime(2026, 3, 28, 10, 0, tzinfo=UTC)
ZONES = {   # the contact's zone -> when their 09:00 comes (UTC), dispatched at START, "next day" when passed
    "America/New_York": dt.datetime(2026, 3, 28, 13, 0, tzinfo=UTC),     # 09:00 EDT, still ahead
    "": dt.datetime(2026, 3, 28, 16, 0, tzinfo=UTC),                     # no zone: the default, Los Angeles (PDT)
    "Mars/Olympus_Mons": dt.datetime(2026, 3, 28, 16, 0, tzinfo=UTC),    # unknown zone: the default too
    "Australia/Adelaide": dt.datetime(2026, 3, 28, 22, 30, tzinfo=UTC),  # +10:30 (ACDT); today's 09:00 passed
    "Asia/Tokyo": dt.datetime(2026, 3, 29, 0, 0, tzinfo=UTC),
    "Asia/Kolkata": dt.datetime(2026, 3, 29, 3, 30, tzinfo=UTC),         # +05:30
    "Europe/London": dt.datetime(2026, 3, 29, 8, 0, tzinfo=UTC),         # 09:00 BST: after the change that night
}


@pytest.fixture()
def clock():
    with time_machine.travel(START, tick=True) as traveller:
        yield traveller


def received(outbox) -> dict[str, list[dt.datetime]]:
    out: dict[str, list[dt.datetime]] = {}
    for entry in outbox.list(limit=10_000):
        for rcpt in entry.recipients:
            out.setdefault(rcpt, []).append(arrival_time(entry.key))
    return out


def test_a_local_time_campaign_sends_each_reader_at_their_0900_none_early_none_twice(
        clock, runtime, editor, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(len(ZONES) * 2)
    due: dict[str, dt.datetime] = {}
    for i, contact in enumerate(contacts):
        name = list(ZONES)[i % len(ZONES)]
        contact.timezone = name
        due[contact.email] = ZONES[name]
    campaign = make_campaign([topic])
    campaign.local_time, campaign.local_zone = "09:00", "America/Los_Angeles"
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()                                   # dispatch and its batch jobs: nobody is due yet
    assert outbox.count() == 0
    fresh(db_session)
    rows = {c.email: db_session.scalar(select(Send.not_before).where(Send.contact_id == c.id)) for c in contacts}
    assert rows == due
    progress = editor.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress["local_waiting"] == len(contacts) and progress["retrying"] == 0
    assert "Waiting for local time: 14 recipients, next at 2026-03-28 13:00 UTC" in progress["waiting"]

    # One reader in Tokyo unsubscribes while waiting: honoured when their time comes.
    leaver = next(c for c in contacts if c.timezone == "Asia/Tokyo")
    token = runtime.tokens.seal(Purpose.UNSUBSCRIBE, leaver.id, campaign.id)
    assert editor.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200

    moments = sorted(set(ZONES.values()))
    for moment in moments:
        for at in (moment - dt.timedelta(minutes=1), moment + dt.timedelta(seconds=5)):
            clock.move_to(at)
            sweeper.sweep(runtime)                 # what the elected scheduler does every few seconds
            run_worker()                           # a fresh worker each time: nothing lives in a process
            got = received(outbox)
            expected = {e for e, when in due.items() if when <= at and e != leaver.email}
            assert set(got) == expected, at
            assert all(len(times) == 1 for times in got.values())           # nobody twice
            assert all(got[e][0] >= due[e] for e in got)                     # nobody early
            fresh(db_session)
            status = db_session.get(Campaign, campaign.id).status
            assert status == (CampaignStatus.FINISHED if at > moments[-1] else CampaignStatus.RUNNING), at
    got = received(outbox)
    assert all(got[e][0] - due[e] < dt.timedelta(minutes=1) for e in got)   # each at their 09:00
    fresh(db_session)
    assert db_session.scalar(select(Send.status).where(Send.contact_id == leaver.id)) == SendStatus.SKIPPED
    c = db_session.get(Campaign, campaign.id)
    assert c.sent == len(contacts) - 1 and c.skipped == 1 and c.finished_at >= moments[-1]


def test_send_at_once_where_the_time_has_passed(clock, runtime, db_session, make_contacts, make_campaign,
                                                outbox, run_worker) -> None:
    topic, contacts = make_contacts(2)
    contacts[0].timezone, contacts[1].timezone = "Asia/Tokyo", "America/New_York"   # 19:00 there; 06:00 there
    campaign = make_campaign([topic])
    campaign.local_time, campaign.local_late = "09:00", "now"
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    assert set(received(outbox)) == {contacts[0].email}
    fresh(db_session)
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.RUNNING
    clock.move_to(ZONES["America/New_York"] + dt.timedelta(seconds=5))
    sweeper.sweep(runtime)
    run_worker()
    assert set(received(outbox)) == {c.email for c in contacts}
    sweeper.sweep(runtime)
    fresh(db_session)
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_the_campaign_page_shows_the_schedule_before_sending(clock, editor, db_session, make_contacts,
                                                             make_campaign) -> None:
    topic, contacts = make_contacts(3)
    contacts[0].timezone, contacts[1].timezone = "Asia/Kolkata", "America/New_York"
    campaign = make_campaign([topic])
    campaign.local_time = "09:00"
    db_session.commit()
    page = editor.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Delivery at 09:00 local time" in page
    assert "Sun 2026-03-29 09:00" in page and "Sun 2026-03-29 03:30" in page    # Kolkata: passed, next day
    assert "09:00 has passed there: next day" in page
    assert "Sat 2026-03-28 13:00" in page                                       # New York: later today
    assert "Each gets it at 09:00 in their own time zone" in page                  # the policy forecast knows


def test_the_campaign_form_saves_and_checks_the_local_time(clock, editor, db_session, make_contacts,
                                                           make_campaign) -> None:
    topic, _ = make_contacts(1)
    campaign = make_campaign([topic])
    form = {"name": "Local", "subject": "Hi", "kind": "nurture", "mjml": campaign.mjml, "topics": str(topic.id),
            "from_name": "Anna Becker", "local_time": "09:30", "local_zone": "Europe/Berlin",
            "local_late": "now", "best_time": "1", "best_from": "7", "best_to": "21",
            "csrf_token": csrf(editor, f"/admin/campaigns/{campaign.id}/edit")}
    r = editor.post(f"/admin/campaigns/{campaign.id}/edit", data=form)
    assert r.status_code in (200, 302), r.get_data(as_text=True)[:2000]
    fresh(db_session)
    c = db_session.get(Campaign, campaign.id)
    assert (c.local_time, c.local_zone, c.local_late, c.best_time, c.best_from, c.best_to) == \
        ("09:30", "Europe/Berlin", "now", True, 7, 21)
    for field, value, message in (("local_zone", "Europe/Atlantis", "unknown time zone"),
                                  ("local_time", "25:00", "time of day"),
                                  ("best_to", "6", "window"),
                                  ("local_time", "22:00", "outside the best-time window"),
                                  ("local_time", "", "needs a local time")):
        r = editor.post(f"/admin/campaigns/{campaign.id}/edit", data={**form, field: value})
        assert message in r.get_data(as_text=True), field
        fresh(db_session)
        assert db_session.get(Campaign, campaign.id).local_time == "09:30"      # nothing lost, nothing changed
    assert db_session.scalar(select(Contact.timezone).limit(1)) is not None


def test_due_times_across_dst_changes_and_half_hour_zones() -> None:
    ny, adelaide = ZoneInfo("America/New_York"), ZoneInfo("Australia/Adelaide")
    night = dt.datetime(2026, 3, 8, 0, 0, tzinfo=UTC)          # 7 March 19:00 EST; clocks go forward at 02:00
    assert due_at(night, ny, dt.time(9)) == dt.datetime(2026, 3, 8, 13, 0, tzinfo=UTC)     # 09:00 EDT
    # 02:30 does not exist that night: read with the offset before the change (03:30 EDT on the wall).
    assert due_at(night, ny, dt.time(2, 30)) == dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    # 01:30 happens twice on 1 November: the first one (EDT).
    autumn = dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    assert due_at(autumn, ny, dt.time(1, 30)) == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    # Adelaide moves from +09:30 to +10:30 on 4 October 2026.
    saturday = dt.datetime(2026, 10, 2, 12, 0, tzinfo=UTC)     # 21:30 on Friday there
    assert due_at(saturday, adelaide, dt.time(9)) == dt.datetime(2026, 10, 2, 23, 30, tzinfo=UTC)
    sunday = dt.datetime(2026, 10, 3, 12, 0, tzinfo=UTC)
    assert due_at(sunday, adelaide, dt.time(9)) == dt.datetime(2026, 10, 3, 22, 30, tzinfo=UTC)
    # Passed: tomorrow's, or at once.
    assert due_at(sunday, ZoneInfo("Asia/Kolkata"), dt.time(9)) == dt.datetime(2026, 10, 4, 3, 30, tzinfo=UTC)
    assert due_at(sunday, ZoneInfo("Asia/Kolkata"), dt.time(9), "now") == sunday
    assert [contact_zone(n, "Europe/Paris").key for n in ("", "UTC", "Nowhere/Land", None, "Asia/Tokyo")] == \
        ["Europe/Paris", "Europe/Paris", "Europe/Paris", "Europe/Paris", "Asia/Tokyo"]


def test_local_time_turned_off_while_paused_sends_the_waiting_at_once(
        clock, runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(2)
    for c in contacts:
        c.timezone = "Asia/Tokyo"                      # 19:00 there: tomorrow
    campaign = make_campaign([topic])
    campaign.local_time = "09:00"
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    assert outbox.count() == 0
    fresh(db_session)
    campaign = db_session.get(Campaign, campaign.id)
    sending.pause(db_session, campaign)
    campaign.local_time = ""
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    assert set(received(outbox)) == {c.email for c in contacts}
    sweeper.sweep(runtime)
    fresh(db_session)
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_rows_from_before_local_time_was_chosen_go_at_once_and_the_sweeper_finds_them(
        clock, runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(3)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    lifecycle_dispatch = sending.dispatch(runtime, campaign.id)           # rows written, no batch has run yet
    assert lifecycle_dispatch == 3
    fresh(db_session)
    campaign = db_session.get(Campaign, campaign.id)
    sending.pause(db_session, campaign)
    campaign.local_time = "09:00"
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    runtime.queue.empty()                                                  # every job lost (a Redis restart)
    for key in runtime.redis.scan_iter(f"rapport:{runtime.settings.queue_name}:*:{campaign.id}"):
        runtime.redis.delete(key)
    did = sweeper.sweep(runtime)
    assert did["send"] == 1 and did["dispatch"] == 1
    run_worker()
    assert set(received(outbox)) == {c.email for c in contacts}
    sweeper.sweep(runtime)
    fresh(db_session)
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_many_waiting_are_counted_from_the_campaigns_counters(
        clock, runtime, editor, db_session, make_contacts, make_campaign, run_worker, monkeypatch) -> None:
    monkeypatch.setattr(sending, "PROGRESS_EXACT", 3)     # counted one by one up to 3, beyond from the counters
    topic, contacts = make_contacts(8)
    for c in contacts:
        c.timezone = "Asia/Tokyo"
    campaign = make_campaign([topic])
    campaign.local_time = "09:00"
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    progress = editor.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress["local_waiting"] == 8 and progress["local_next"] == "2026-03-29T00:00:00+00:00"
