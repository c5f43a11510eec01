"""Demo data: one prize draw with an open entry window and a few entries (made as readers make them)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.draws import service as draws
from campaigns.models import Contact, ContactStatus, utcnow

RULES = ("Open to subscribers of our newsletter. One entry per person, from the link in our mail. The winner is "
         "drawn when entries close, by the method on this page, and told by mail within a week. No purchase "
         "necessary; the prize cannot be exchanged for cash.")


def seed_draw(session: Session, entries: int = 6) -> None:
    """The spring draw: opened three days ago, closes in eleven; the first subscribed contacts have entered."""
    now = utcnow().replace(microsecond=0)
    draw = draws.save_draw(session, {
        "name": "Spring raised-bed draw", "prize": "A cedar raised bed with a season of organic seeds",
        "rules": RULES, "winners_count": "1",
        "opens_at": (now - dt.timedelta(days=3)).isoformat(), "closes_at": (now + dt.timedelta(days=11)).isoformat()})
    ids = session.scalars(select(Contact.id).where(Contact.status == ContactStatus.SUBSCRIBED)
                          .order_by(Contact.id).limit(entries))
    for i, contact_id in enumerate(ids):
        draws.enter(session, draw, contact_id, source="mail", now=now - dt.timedelta(days=2, hours=-3 * i))
