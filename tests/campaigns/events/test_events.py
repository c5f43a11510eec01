"""Event invitations through the real app and worker: the invitation mail with answer links, GET/HEAD change
nothing, the page's POST records and shows places left, a full event waitlists, a yes→no promotes the first in line
and tells them by mail, the reminder the day before goes once, attendance, and the .ics file parses back."""

from __future__ import annotations

import datetime as dt
import re
from email import message_from_bytes
from email.policy import default

import pytest
import time_machine
from icalendar import Calendar
from sqlalchemy import select

from campaigns import queueing
from campaigns.errors import ValidationError
from campaigns.events import attendance, service
from campaigns.models import CalendarEvent, EventReply, EventType
from campaigns.models import Event as ContactEvent
from campaigns.sending import lifecycle as sending
from tests.helpers import fresh

BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari"}
INVITE_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, you are invited:</mj-text>
<mj-text>{{ event_block() }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
LINK = re.compile(r"https?://[^\s\"'<>]+/e/[A-Za-z0-9_-]+(?:\.ics)?")


def mails(outbox) -> list:
    return [outbox.get(entry.key) for entry in outbox.list(limit=1000)]


def links_of(message) -> dict[str, str]:
    """answer -> link of the mail's event block (from the plain-text part: "Yes, I'll come: <url>")."""
    found = {}
    for label, answer in (("Yes, I'll come", "yes"), ("Maybe", "maybe"), ("No", "no"), ("Calendar", "ics")):
        m = re.search(re.escape(label) + r": (\S+)", message.text)
        if m:
            found[answer] = m.group(1)
    return found


def path(url: str) -> str:
    return url[url.index("/e/"):]


def answers(db_session) -> dict[int, str]:
    fresh(db_session)
    out = dict(db_session.execute(select(EventReply.contact_id, EventReply.answer)).all())
    db_session.rollback()
    return out


@pytest.fixture()
def invited(runtime, db_session, make_contacts, make_campaign, outbox, run_worker):
    """Four contacts invited to an event with 2 places, three days from now, 18:30 in Paris."""
    topic, contacts = make_contacts(4)
    campaign = make_campaign([topic], mjml=INVITE_MJML, subject="You are invited")
    start_local = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).astimezone(service.zone_of("Europe/Paris"))
    event = service.save(db_session, None, {
        "title": "Autumn tasting", "zone": "Europe/Paris", "starts_at": f"{start_local:%Y-%m-%d}T18:30",
        "duration_minutes": "90", "capacity": "2", "place": "12 rue des Vignes, Paris; back room",
        "campaign_id": str(campaign.id)})
    db_session.commit()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    by_email = {m.recipients[0]: m for m in mails(outbox)}
    assert len(by_email) == 4
    return event, contacts, {c.id: links_of(by_email[c.email]) for c in contacts}


def test_invitation_replies_waitlist_promotion_reminder_and_calendar(
        runtime, db_session, invited, outbox, run_worker, client) -> None:
    event, contacts, links = invited
    a, b, c, d = (x.id for x in contacts)
    assert set(links[a]) == {"yes", "maybe", "no", "ics"} and links[a]["yes"] != links[b]["yes"]

    # Scanners and link checkers open every link: GET and HEAD show the page and record nothing.
    for method in ("GET", "HEAD"):
        r = client.open(path(links[a]["yes"]), method=method, headers=BROWSER)
        assert r.status_code == 200
    page = client.get(path(links[a]["yes"]), headers=BROWSER).get_data(as_text=True)
    assert "Your answer “yes” is selected below" in page and "2 of 2 places left" in page
    assert re.search(r'name="answer" value="yes" checked', page)
    assert answers(db_session) == {}

    # POST records; the page shows the places left.
    r = client.post(path(links[a]["yes"]), data={"answer": "yes"}, headers=BROWSER)
    assert r.status_code == 200 and "You have a place" in r.get_data(as_text=True)
    assert "1 of 2 places left" in r.get_data(as_text=True)
    done = client.post(path(links[b]["yes"]), data={"answer": "yes"}, headers=BROWSER).get_data(as_text=True)
    assert "0 of 2 places left" in done
    # Full: the next yes waits, first in line; a maybe holds no place; a bad answer is refused, nothing lost.
    full = client.post(path(links[c]["yes"]), data={"answer": "yes"}, headers=BROWSER).get_data(as_text=True)
    assert "number 1 on the waitlist" in full
    bad = client.post(path(links[d]["maybe"]), data={"answer": "perhaps"}, headers=BROWSER)
    assert bad.status_code == 422 and "choose yes, no or maybe" in bad.get_data(as_text=True)
    client.post(path(links[d]["maybe"]), data={"answer": "maybe"}, headers=BROWSER)
    assert answers(db_session) == {a: "yes", b: "yes", c: "waitlist", d: "maybe"}
    assert fresh(db_session).get(CalendarEvent, event.id).taken == 2
    db_session.rollback()

    # Each new place is confirmed by mail with the calendar file attached (not the waitlist, nor maybe).
    run_worker()
    confirmations = [m for m in mails(outbox) if m.subject.startswith("You have a place")]
    assert sorted(m.recipients[0] for m in confirmations) == sorted([contacts[0].email, contacts[1].email])
    attached = [part for part in message_from_bytes(confirmations[0].raw, policy=default).iter_attachments()]
    assert [p.get_content_type() for p in attached] == ["text/calendar"]
    assert Calendar.from_ical(attached[0].get_content()).walk("VEVENT")[0]["summary"] == "Autumn tasting"
    assert "/e/" in confirmations[0].text

    # A day later (the sending policy allows one nurture mail a day), a yes becomes no: the first in line gets the
    # place and is told by mail, once.
    sent_before = len(mails(outbox))
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25), tick=True):
        client.post(path(links[a]["no"]), data={"answer": "no"}, headers=BROWSER)
        assert answers(db_session) == {a: "no", b: "yes", c: "yes", d: "maybe"}
        run_worker()
        new = mails(outbox)[: len(mails(outbox)) - sent_before]
        assert [m.recipients[0] for m in new] == [contacts[2].email]
        assert "you are in" in new[0].subject and links_of(new[0])["no"]
        queueing.enqueue(runtime.queue, queueing.Job.EVENT_MAIL)
        run_worker()
        assert len(mails(outbox)) == sent_before + 1

    # The contact's timeline holds each answer.
    timeline = [e.data["answer"] for e in fresh(db_session).scalars(
        select(ContactEvent).where(ContactEvent.contact_id == c, ContactEvent.type == EventType.EVENT_REPLY)
        .order_by(ContactEvent.id))]
    assert timeline == ["waitlist", "yes"]
    db_session.rollback()

    # The reminder the day before: to yes and maybe, once each.
    reminder_time = fresh(db_session).get(CalendarEvent, event.id).starts_at - dt.timedelta(hours=20)
    db_session.rollback()
    with time_machine.travel(reminder_time, tick=True):
        for _ in range(2):
            queueing.enqueue(runtime.queue, queueing.Job.EVENT_MAIL)
            run_worker()
        reminders = [m for m in mails(outbox) if m.subject.startswith("Tomorrow")]
        assert sorted(m.recipients[0] for m in reminders) == sorted(contacts[i].email for i in (1, 2, 3))
        assert "Autumn tasting" in reminders[0].subject
        # The reminder's own links answer for the same event: the maybe says yes, and waits (the event is full).
        to_d = next(m for m in reminders if m.recipients[0] == contacts[3].email)
        done = client.post(path(links_of(to_d)["yes"]), data={"answer": "yes"}, headers=BROWSER)
        assert "number 1 on the waitlist" in done.get_data(as_text=True)
        assert answers(db_session)[d] == "waitlist"

    # The calendar file parses back with the right time, in the event's zone.
    ics = client.get(path(links[a]["ics"]), headers=BROWSER)
    assert ics.status_code == 200 and ics.mimetype == "text/calendar"
    vevent = Calendar.from_ical(ics.data).walk("VEVENT")[0]
    start = vevent.decoded("dtstart")
    stored = fresh(db_session).get(CalendarEvent, event.id)
    assert start == stored.starts_at and (start.hour, start.minute) == (18, 30)
    assert str(start.tzinfo) == "Europe/Paris" or getattr(start.tzinfo, "key", "") == "Europe/Paris"
    assert str(vevent["location"]) == "12 rue des Vignes, Paris; back room"
    assert str(vevent["uid"]).startswith(f"event-{event.id}@")

    # Attendance and the answers' figures.
    rows = {r.contact_id: r for r, _c in attendance.invitees(db_session, event.id)}
    attendance.mark(db_session, event.id, [rows[b].id], [rows[b].id, rows[c].id])
    db_session.commit()
    figures = attendance.figures(db_session, stored)
    assert (figures.yes, figures.no, figures.maybe, figures.waitlist) == (2, 1, 0, 1)
    assert (figures.attended, figures.no_show, figures.remaining) == (1, 1, 0)
    assert attendance.csv_text(db_session, stored).splitlines()[1].startswith(contacts[1].email + ",")


def test_forged_and_test_links_and_form_errors(runtime, db_session, client) -> None:
    assert client.get("/e/" + "A" * 30, headers=BROWSER).status_code == 404
    survey = runtime.tokens.seal(__import__("mailer.tracking").tracking.Purpose.SURVEY, 5, 0, 1)
    assert client.get("/e/" + survey, headers=BROWSER).status_code == 404
    test = runtime.tokens.seal(__import__("mailer.tracking").tracking.Purpose.EVENT, 0, 1)
    assert "This was a test message" in client.get("/e/" + test, headers=BROWSER).get_data(as_text=True)
    for bad, message in (({"title": ""}, "title"), ({"title": "x", "zone": "Mars/Base"}, "unknown time zone"),
                         ({"title": "x", "starts_at": "soon"}, "start"),
                         ({"title": "x", "starts_at": "2026-12-10T18:30", "capacity": "-1", "place": "p"},
                          "capacity"),
                         ({"title": "x", "starts_at": "2026-12-10T18:30"}, "place or a link")):
        with pytest.raises(ValidationError, match=message):
            service.parse_form(bad)


def test_a_freed_place_is_saved_and_told_even_when_redis_is_down_at_that_moment(
        runtime, db_session, invited, outbox, run_worker, client) -> None:
    import socket

    from redis import Redis

    event, contacts, links = invited
    a, _b, c, _d = (x.id for x in contacts)
    for i in (0, 1, 2):
        client.post(path(links[contacts[i].id]["yes"]), data={"answer": "yes"}, headers=BROWSER)
    run_worker()                                  # the two confirmations
    before = len(mails(outbox))
    with socket.socket() as probe:               # a port nobody listens on: connection refused, a real outage
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    live = runtime.redis
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25), tick=True):
        runtime.use_redis(Redis(host="127.0.0.1", port=dead_port, socket_connect_timeout=0.5))
        try:
            r = client.post(path(links[a]["no"]), data={"answer": "no"}, headers=BROWSER)
        finally:
            runtime.use_redis(live)
        assert r.status_code == 200 and "you will not come" in r.get_data(as_text=True)
        assert answers(db_session)[c] == "yes"
        queueing.enqueue(runtime.queue, queueing.Job.EVENT_MAIL)      # the periodic run
        run_worker()
    told = mails(outbox)[: len(mails(outbox)) - before]
    assert [m.recipients[0] for m in told] == [contacts[2].email] and "you are in" in told[0].subject


def test_an_invitation_started_without_its_event_is_held_until_the_event_is_attached(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    from campaigns.models import Campaign, CampaignStatus

    topic, contacts = make_contacts(2)
    campaign = make_campaign([topic], mjml=INVITE_MJML, subject="You are invited")
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    assert mails(outbox) == []
    paused = fresh(db_session).get(Campaign, campaign.id)
    assert paused.status == CampaignStatus.PAUSED and "no event is attached" in paused.status_reason
    db_session.rollback()
    service.save(db_session, None, {"title": "Late attach", "starts_at": "2027-02-01T18:00", "zone": "UTC",
                                    "place": "Shop", "campaign_id": str(campaign.id)})
    db_session.commit()
    sending.start(db_session, runtime, fresh(db_session).get(Campaign, campaign.id))    # resume
    db_session.commit()
    run_worker()
    sent = mails(outbox)
    assert sorted(m.recipients[0] for m in sent) == sorted(c.email for c in contacts)
    assert all(set(links_of(m)) == {"yes", "maybe", "no", "ics"} for m in sent)
