"""Draws: create and edit (the seed is made once, at creation), eligibility, and entering (one entry per contact).

Entering is engagement: it records a draw_entry event and adds its weight to the contact's engagement score
(campaigns.feedback.engagement.WEIGHTS).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.contacts import segments
from campaigns.db import parse_id
from campaigns.errors import InvalidState, NotFound, ValidationError
from campaigns.feedback.engagement import WEIGHTS, add_to_score
from campaigns.models import Contact, ContactStatus, Draw, DrawEntry, Event, EventType, Segment, utcnow

logger = logging.getLogger(__name__)

MAX_NAME = 200
MAX_TEXT = 10_000
MAX_WINNERS = 100
VIA_MAIL, VIA_PAGE = 0, 1        # the third id of a DRAW token: how the entrant got the link
SOURCES = {VIA_MAIL: "mail", VIA_PAGE: "page"}


def seed_hash(seed_hex: str) -> str:
    """The published commitment: SHA-256 of the 32 seed bytes, hex."""
    return hashlib.sha256(bytes.fromhex(seed_hex)).hexdigest()


def _when(data: Mapping[str, Any], name: str, label: str) -> dt.datetime:
    raw = str(data.get(name, "")).strip()
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"give the {label} as a date and time (YYYY-MM-DD HH:MM, UTC)", field=name) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def save_draw(session: Session, data: Mapping[str, Any], draw: Draw | None = None,
              now: dt.datetime | None = None) -> Draw:
    """Validate the form and create or update the draw (flushed). A drawn draw cannot change; once the window has
    closed only the texts can (the entries were made under its window and eligibility)."""
    now = now or utcnow()
    if draw is not None and draw.drawn_at is not None:
        raise InvalidState("this draw has been drawn: it cannot change any more")
    name = " ".join(str(data.get("name", "")).split())
    if not name or len(name) > MAX_NAME:
        raise ValidationError(f"give the draw a name (at most {MAX_NAME} characters)", field="name")
    if session.scalar(select(Draw.id).where(Draw.name == name, Draw.id != (draw.id if draw else 0))):
        raise ValidationError(f"a draw named “{name}” exists already", field="name")
    prize = str(data.get("prize", "")).strip()
    rules = str(data.get("rules", "")).strip()
    if not prize or len(prize) > MAX_TEXT:
        raise ValidationError("describe the prize", field="prize")
    if not rules or len(rules) > MAX_TEXT:
        raise ValidationError("write the rules (who may enter, until when, how winners are drawn and told)",
                              field="rules")
    opens_at, closes_at = _when(data, "opens_at", "opening"), _when(data, "closes_at", "closing")
    if closes_at <= opens_at:
        raise ValidationError("the window must close after it opens", field="closes_at")
    raw_winners = str(data.get("winners_count", "1")).strip()
    winners = int(raw_winners) if raw_winners.isdigit() and len(raw_winners) < 4 else 0
    if not 1 <= winners <= MAX_WINNERS:
        raise ValidationError(f"the number of winners is 1 to {MAX_WINNERS}", field="winners_count")
    raw_segment = str(data.get("segment_id", "")).strip()
    segment_id = None
    if raw_segment:
        segment_id = parse_id(raw_segment)
        if segment_id is None or session.get(Segment, segment_id) is None:
            raise ValidationError("that segment does not exist", field="segment_id")
    closed = draw is not None and draw.closes_at <= now
    if closed and (closes_at != draw.closes_at or opens_at != draw.opens_at or segment_id != draw.segment_id
                   or winners != draw.winners_count):
        raise InvalidState("the entry window has closed: only the name, prize and rules can change now")
    if not closed and closes_at <= now:
        raise ValidationError("the window must close in the future: the seed is committed before it closes",
                              field="closes_at")
    if draw is None:
        seed = secrets.token_bytes(32).hex()
        draw = Draw(public_id=secrets.token_urlsafe(12), seed=seed, seed_hash=seed_hash(seed))
        session.add(draw)
    draw.name, draw.prize, draw.rules = name, prize, rules
    draw.opens_at, draw.closes_at, draw.segment_id, draw.winners_count = opens_at, closes_at, segment_id, winners
    session.flush()
    return draw


def get_draw(session: Session, draw_id: int) -> Draw:
    draw = session.get(Draw, draw_id)
    if draw is None:
        raise NotFound(f"draw {draw_id} not found")
    return draw


def by_public_id(session: Session, public_id: str) -> Draw:
    draw = session.scalar(select(Draw).where(Draw.public_id == public_id[:32]))
    if draw is None:
        raise NotFound("no such draw")
    return draw


def list_draws(session: Session) -> list[tuple[Draw, int]]:
    """Every draw with its entry count, newest first."""
    counts = dict(session.execute(select(DrawEntry.draw_id, func.count()).group_by(DrawEntry.draw_id)).all())
    return [(d, counts.get(d.id, 0)) for d in session.scalars(select(Draw).order_by(Draw.id.desc()))]


def open_draws(session: Session, now: dt.datetime | None = None) -> list[Draw]:
    """Draws whose entry window is open now, the most recently opened first."""
    now = now or utcnow()
    return list(session.scalars(select(Draw).where(Draw.opens_at <= now, Draw.closes_at > now,
                                                   Draw.drawn_at.is_(None)).order_by(Draw.opens_at.desc(),
                                                                                     Draw.id.desc())))


def state(draw: Draw, now: dt.datetime | None = None) -> str:
    """upcoming, open, closed (waiting for the draw) or drawn."""
    now = now or utcnow()
    if draw.drawn_at is not None:
        return "drawn"
    return "upcoming" if now < draw.opens_at else "open" if now < draw.closes_at else "closed"


def eligible(session: Session, draw: Draw, contact_id: int) -> bool:
    """A subscribed contact in the draw's segment (any subscribed contact when it has none)."""
    cond = true()
    if draw.segment_id is not None:
        segment = session.get(Segment, draw.segment_id)
        cond = segments.condition(session, segment.definition) if segment is not None else None
        if cond is None:
            return False
    return session.scalar(select(Contact.id).where(Contact.id == contact_id, Contact.status ==
                                                   ContactStatus.SUBSCRIBED, cond)) is not None


def entry_of(session: Session, draw_id: int, contact_id: int) -> DrawEntry | None:
    return session.scalar(select(DrawEntry).where(DrawEntry.draw_id == draw_id, DrawEntry.contact_id == contact_id))


@dataclass(frozen=True)
class Entered:
    entry: DrawEntry
    new: bool           # False: the contact had entered already


def enter(session: Session, draw: Draw, contact_id: int, *, source: str = "mail",
          now: dt.datetime | None = None) -> Entered:
    """Enter the contact once (flushed, not committed); raises InvalidState outside the window or when the contact
    may not take part. A second entry returns the first one."""
    now = now or utcnow()
    found = entry_of(session, draw.id, contact_id)
    if found is not None:
        return Entered(found, False)
    current = state(draw, now)
    if current == "upcoming":
        raise InvalidState(f"entries open on {draw.opens_at:%Y-%m-%d at %H:%M} UTC")
    if current != "open":
        raise InvalidState("this draw is closed: entries are no longer accepted")
    if not eligible(session, draw, contact_id):
        raise InvalidState("sorry, this draw is open to selected subscribers only, and this address is not one "
                           "of them")
    entry = DrawEntry(draw_id=draw.id, contact_id=contact_id, ref=secrets.token_hex(8), source=source[:20],
                      entered_at=now)
    try:
        with session.begin_nested():
            session.add(entry)
            session.flush()
    except IntegrityError:       # the same contact entering twice at once: the other request won
        found = entry_of(session, draw.id, contact_id)
        if found is None:
            raise
        return Entered(found, False)
    session.add(Event(contact_id=contact_id, type=EventType.DRAW_ENTRY, occurred_at=now,
                      dedupe_key=f"draw:{draw.id}:{contact_id}",
                      data={"draw_id": draw.id, "draw": draw.name, "source": source}))
    contact = session.get(Contact, contact_id)
    if contact is not None:
        add_to_score(contact, WEIGHTS[EventType.DRAW_ENTRY], now)
    session.flush()
    logger.info("contact %s entered draw %s (%s)", contact_id, draw.id, source)
    return Entered(entry, True)
