"""Prize draws through the real app, worker and capture server: the one-click link enters only on POST (once),
eligibility and the window are enforced, the draw is verifiable from the published data (the docs' snippet
recomputes it), drawing twice changes nothing, the winners get a DKIM-signed personal mail from the owner."""

from __future__ import annotations

import datetime as dt
import email
import hashlib
import json
import re
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from campaigns.accounts import audit
from campaigns.contacts import segments
from campaigns.draws import drawing
from campaigns.draws import service as draws
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import AuditEntry, Contact, Draw, DrawEntry, Event, EventType, Sender, utcnow
from campaigns.queueing import Job, enqueue
from campaigns.sending import lifecycle as sending
from mailer.tracking import Purpose
from tests.helpers import csrf, fresh

ROOT = Path(__file__).resolve().parents[3]
DRAW_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, win a garden bench!</mj-text>
<mj-button href="{{ draw_url() }}">Enter the draw</mj-button>
</mj-column></mj-section></mj-body></mjml>"""
DRAW_LINK = re.compile(r"https://mail\.shop\.test/d/[A-Za-z0-9_-]+")
BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari"}
SCANNER = {"User-Agent": "Mimecast Safe Links scanner"}


def snippet() -> str:
    text = (ROOT / "docs" / "draws.md").read_text(encoding="utf-8")
    return re.search(r"<!-- verify-snippet -->\n```python\n(.*?)```", text, re.S).group(1)


def form(**over) -> dict:
    now = utcnow()
    data = {"name": "Summer bench draw", "prize": "A teak garden bench", "rules": "One entry per subscriber.",
            "winners_count": "1", "segment_id": "",
            "opens_at": (now - dt.timedelta(hours=1)).isoformat(), "closes_at": (now + dt.timedelta(days=7)).isoformat()}
    data.update(over)
    return data


@pytest.fixture()
def world(runtime, db_session, make_contacts, make_campaign, run_worker):
    """Four contacts (three in Berlin, one in Hamburg), a draw for the Berlin segment, and the mail with the link."""
    topic, contacts = make_contacts(4)
    contacts[3].city = "Hamburg"
    segment = segments.save_segment(db_session, {"name": "Berliners", "definition": json.dumps(
        {"match": "all", "rules": [{"field": "city", "op": "is", "value": "Berlin"}]})})
    db_session.commit()
    draw = draws.save_draw(db_session, form(segment_id=str(segment.id), winners_count="1"))
    db_session.commit()
    campaign = make_campaign([topic], mjml=DRAW_MJML)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    return draw, contacts


def links(outbox) -> dict[str, str]:
    out = {}
    for entry in outbox.list(limit=100):
        msg = outbox.get(entry.key)
        found = DRAW_LINK.findall(msg.html)
        out[msg.recipients[0]] = found[0] if found else ""
    return out


def entries(db_session) -> list[DrawEntry]:
    fresh(db_session)
    out = list(db_session.scalars(select(DrawEntry).order_by(DrawEntry.id)))
    db_session.rollback()
    return out


def close_window(db_session, draw_id: int) -> None:
    """Time passes: the window closed a minute ago."""
    db_session.execute(update(Draw).where(Draw.id == draw_id).values(
        closes_at=utcnow() - dt.timedelta(minutes=1)))
    db_session.commit()


def test_one_click_entry_only_on_post_once_eligible_and_in_the_window(
        world, runtime, client, db_session, outbox) -> None:
    draw, contacts = world
    mails = links(outbox)
    assert all(mails.values()) and len(set(mails.values())) == 4          # a personal link in every mail
    link = mails[contacts[0].email]
    assert "/c/" not in link                                               # not wrapped in click tracking
    # Scanners and people opening the link change nothing.
    for method in ("HEAD", "GET"):
        for headers in (SCANNER, BROWSER):
            assert client.open(link, method=method, headers=headers).status_code == 200
    page = client.get(link, headers=BROWSER).get_data(as_text=True)
    assert "A teak garden bench" in page and "Enter the draw" in page and 'method="post"' in page
    assert entries(db_session) == []
    score_before = fresh(db_session).get(Contact, contacts[0].id).engagement_score or 0.0
    db_session.rollback()

    r = client.post(link, headers=BROWSER)
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "You are in the draw" in html
    (entry,) = entries(db_session)
    assert entry.contact_id == contacts[0].id and entry.source == "mail" and entry.ref in html
    again = client.post(link, headers=BROWSER).get_data(as_text=True)
    assert "You have entered already" in again and entry.ref in again
    assert len(entries(db_session)) == 1
    fresh(db_session)
    events = db_session.scalars(select(Event).where(Event.contact_id == contacts[0].id,
                                                    Event.type == EventType.DRAW_ENTRY)).all()
    assert len(events) == 1 and events[0].data["draw_id"] == draw.id
    assert db_session.get(Contact, contacts[0].id).engagement_score == pytest.approx(score_before + 3.0, abs=0.01)
    db_session.rollback()

    # Not in the segment (Hamburg): refused with a reason, nothing recorded.
    r = client.post(mails[contacts[3].email], headers=BROWSER)
    assert r.status_code == 409 and "selected subscribers only" in r.get_data(as_text=True)
    # Unsubscribed since the mail: refused too.
    db_session.execute(update(Contact).where(Contact.id == contacts[2].id).values(status="unsubscribed"))
    db_session.commit()
    assert client.post(mails[contacts[2].email], headers=BROWSER).status_code == 409
    assert len(entries(db_session)) == 1

    # A forged or altered token is a 404 before the database is read; a test message's link enters nobody.
    assert client.post(link[:-2] + ("AA" if not link.endswith("AA") else "BB")).status_code == 404
    test_page = client.post("/d/" + runtime.tokens.seal(Purpose.DRAW, draw.id, 0), headers=BROWSER)
    assert test_page.status_code == 200 and "This was a test message" in test_page.get_data(as_text=True)
    assert len(entries(db_session)) == 1

    # The window closes: entering is refused, the entrant's confirmation still shows.
    close_window(db_session, draw.id)
    r = client.post(mails[contacts[1].email], headers=BROWSER)
    assert r.status_code == 409 and "closed" in r.get_data(as_text=True)
    assert "You have entered already" in client.post(link, headers=BROWSER).get_data(as_text=True)
    assert len(entries(db_session)) == 1
