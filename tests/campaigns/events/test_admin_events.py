"""The admin's side of events: create and edit (errors keep what was typed), attach to a nurture campaign that shows
the answer links, the answers with counts, attendance, the safe CSV export, and the figures on the campaign report."""

from __future__ import annotations

import re

from campaigns.events import replies
from campaigns.models import CalendarEvent, EventReply, ReplyAnswer
from tests.campaigns.events.test_events import INVITE_MJML
from tests.helpers import fresh


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_admin_creates_attaches_lists_marks_attendance_and_exports(editor, db_session, make_contacts,
                                                                   make_campaign, run_worker) -> None:
    client = editor
    topic, contacts = make_contacts(3)
    plain = make_campaign([topic])                                   # no answer links in its content
    invite = make_campaign([topic], mjml=INVITE_MJML)
    token = csrf_of(client.get("/admin/events/new").get_data(as_text=True))
    data = {"csrf_token": token, "title": "Pruning workshop", "starts_at": "2027-03-04T10:00", "zone": "Mars/Base",
            "duration_minutes": "120", "capacity": "1", "place": "The greenhouse", "campaign_id": str(plain.id)}
    r = client.post("/admin/events/new", data=data)
    assert r.status_code == 400 and "unknown time zone" in r.get_data(as_text=True)
    assert 'value="Pruning workshop"' in r.get_data(as_text=True)
    data["zone"] = "America/New_York"
    r = client.post("/admin/events/new", data=data)
    assert r.status_code == 400 and "event_block()" in r.get_data(as_text=True)
    data["campaign_id"] = str(invite.id)
    r = client.post("/admin/events/new", data=data)
    assert r.status_code == 302
    event_id = int(r.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    event = fresh(db_session).get(CalendarEvent, event_id)
    assert (event.starts_at.hour, event.campaign_id) == (15, invite.id)      # 10:00 in New York is 15:00 UTC
    db_session.rollback()

    # Two yes for one place: the second waits; more places on the edit page move the waitlist up.
    for i, contact in enumerate(contacts):
        inv = replies.Invitation(fresh(db_session).get(CalendarEvent, event_id), contact, 100 + i, None)
        replies.record(db_session, inv, ReplyAnswer.NO if i == 2 else ReplyAnswer.YES)
        db_session.commit()
    assert fresh(db_session).get(CalendarEvent, event_id).taken == 1
    db_session.rollback()
    page = client.get(f"/admin/events/{event_id}").get_data(as_text=True)
    assert "Pruning workshop" in page and "Thursday 4 March 2027, 10:00 (America/New_York)" in page
    counts = re.findall(r"<strong>(\d+)</strong><span>(\w[\w ]*)", page)
    assert ("1", "yes ") in counts and "(of 1 places)" in page and ("1", "waitlist") in counts and ("1", "no") in counts
    edit = client.get(f"/admin/events/{event_id}/edit").get_data(as_text=True)
    assert 'value="2027-03-04T10:00"' in edit
    r = client.post(f"/admin/events/{event_id}/edit", data={**data, "csrf_token": csrf_of(edit), "capacity": "2"})
    assert r.status_code == 302
    rows = {r.contact_id: r for r in fresh(db_session).query(EventReply)}
    assert rows[contacts[1].id].answer == "yes" and rows[contacts[1].id].promoted_at is not None
    first, second = rows[contacts[0].id].id, rows[contacts[1].id].id
    db_session.rollback()
    # Fewer places than people holding one is refused.
    r = client.post(f"/admin/events/{event_id}/edit", data={**data, "csrf_token": csrf_of(edit), "capacity": "1"})
    assert r.status_code == 400 and "2 people already hold a place" in r.get_data(as_text=True)

    # Attendance: the first came, the second did not.
    page = client.get(f"/admin/events/{event_id}").get_data(as_text=True)
    r = client.post(f"/admin/events/{event_id}", data={"csrf_token": csrf_of(page), "shown": [first, second],
                                                       "attended": [first]})
    assert r.status_code == 302
    page = client.get(f"/admin/events/{event_id}").get_data(as_text=True)
    counts = re.findall(r"<strong>(\d+)</strong><span>(\w[\w ]*)", page)
    assert ("1", "attended") in counts and ("1", "did not come") in counts

    db_session.rollback()
    fresh(db_session).get(type(contacts[0]), contacts[0].id).first_name = "=cmd|' /C calc'!A0"
    db_session.commit()
    csv_text = client.get(f"/admin/events/{event_id}/answers.csv").get_data(as_text=True)
    lines = csv_text.splitlines()
    assert lines[0] == "email,first_name,last_name,answer,answered_at,attended"
    assert lines[1].startswith(f"{contacts[0].email},'=cmd") and lines[1].endswith(",yes")
    assert len(lines) == 4 and lines[3].split(",")[3] == "no"

    # The campaign report shows the answers and attendance.
    report = client.get(f"/admin/campaigns/{invite.id}/report")
    if "Event:" not in report.get_data(as_text=True):        # the report's figures are counted by the worker
        run_worker()
        report = client.get(f"/admin/campaigns/{invite.id}/report")
    html = report.get_data(as_text=True)
    assert "Event:" in html and "Pruning workshop" in html and "<strong>1</strong><span>attended" in html
    assert "Events" in client.get("/admin/events").get_data(as_text=True)
