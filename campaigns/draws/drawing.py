"""The draw itself, what is published about it, and the entries export.

The method (docs/draws.md), verifiable by anyone from the published data:

* at creation a 32-byte random seed is made; SHA-256(seed) is shown on the public page from then on;
* each entry gets an opaque reference (16 hex characters, no personal data), listed on the public page;
* after the window closes the seed is revealed and every reference is ranked by HMAC-SHA256(key=seed,
  message=reference) as hex, ascending (ties cannot happen: references are unique); the first N are the winners.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns.accounts import audit
from campaigns.csvfiles import SafeWriter
from campaigns.draws.service import state
from campaigns.errors import InvalidState
from campaigns.models import Contact, Draw, DrawEntry, utcnow
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)

# The draw waits this long after the window closes, so an entry confirmed in the window's last instant is stored
# before the entry list is ranked (and the list the draw used is the list published).
GRACE = dt.timedelta(minutes=1)
ALGORITHM = "rank references by HMAC-SHA256(seed, reference) hex ascending; the first winners_count win"


def ranking_key(seed: bytes, ref: str) -> str:
    """The rank of one entry reference under seed (lower wins)."""
    return hmac.new(seed, ref.encode("ascii"), hashlib.sha256).hexdigest()


def winners(seed_hex: str, refs: Sequence[str], count: int) -> list[str]:
    """The winning references in order: the deterministic function of (seed, references) the public can recompute."""
    seed = bytes.fromhex(seed_hex)
    return sorted(refs, key=lambda ref: ranking_key(seed, ref))[:count]


def refs_of(session: Session, draw_id: int) -> list[str]:
    """Every entry reference of the draw, sorted (the published entry list)."""
    return list(session.scalars(select(DrawEntry.ref).where(DrawEntry.draw_id == draw_id).order_by(DrawEntry.ref)))


def draw(session: Session, draw_obj: Draw, *, actor: str, now: dt.datetime | None = None) -> list[DrawEntry]:
    """Draw the winners once the window has closed (a second call changes nothing and returns the same winners).

    Claims the draw with a conditional UPDATE, so two people pressing the button at once draw it once. Flushes;
    the caller commits.
    """
    now = now or utcnow()
    if draw_obj.drawn_at is None:
        if state(draw_obj, now) != "closed" or now < draw_obj.closes_at + GRACE:
            raise InvalidState(f"the entry window closes on {draw_obj.closes_at:%Y-%m-%d %H:%M} UTC: the draw can "
                               "only be made after it (a minute after, so the last entries are in)")
        claimed = session.execute(update(Draw).where(Draw.id == draw_obj.id, Draw.drawn_at.is_(None))
                                  .values(drawn_at=now, drawn_by=actor[:320]).execution_options(
                                      synchronize_session=False)).rowcount
        session.refresh(draw_obj)
        if claimed:
            chosen = winners(draw_obj.seed, refs_of(session, draw_obj.id), draw_obj.winners_count)
            for rank, ref in enumerate(chosen, 1):
                session.execute(update(DrawEntry).where(DrawEntry.draw_id == draw_obj.id, DrawEntry.ref == ref)
                                .values(winner_rank=rank).execution_options(synchronize_session=False))
            audit.record(session, actor, audit.Action.DRAW_DRAW, f"draw {draw_obj.id}",
                         f"{draw_obj.name}: {len(chosen)} winner(s) drawn; seed revealed")
            session.flush()
            logger.info("draw %s drawn by %s: %d winners", draw_obj.id, actor, len(chosen))
    return winner_entries(session, draw_obj.id)


def entry_count(session: Session, draw_id: int) -> int:
    return session.scalar(select(func.count()).select_from(DrawEntry).where(DrawEntry.draw_id == draw_id)) or 0


def latest_entries(session: Session, draw_id: int, limit: int) -> list[tuple[DrawEntry, str | None]]:
    """The admin page's entries with their contact's email: the winners by rank, then the newest other entries, up
    to limit rows; reads those rows only (the index on draw_id, id), never the whole entry list or every contact."""
    winners = winner_entries(session, draw_id)
    newest = select(DrawEntry.id).where(DrawEntry.draw_id == draw_id, DrawEntry.winner_rank.is_(None)) \
        .order_by(DrawEntry.id.desc()).limit(max(limit - len(winners), 0)).scalar_subquery()
    others = session.scalars(select(DrawEntry).where(DrawEntry.id.in_(newest)).order_by(DrawEntry.id.desc()))
    shown = winners[:limit] + list(others)
    emails = dict(session.execute(select(Contact.id, Contact.email).where(
        Contact.id.in_({e.contact_id for e in shown if e.contact_id}))).all()) if shown else {}
    return [(e, emails.get(e.contact_id)) for e in shown]


def winner_entries(session: Session, draw_id: int) -> list[DrawEntry]:
    return list(session.scalars(select(DrawEntry).where(DrawEntry.draw_id == draw_id,
                                                        DrawEntry.winner_rank.is_not(None))
                                .order_by(DrawEntry.winner_rank)))


def draw_due(rt: Runtime, now: dt.datetime | None = None) -> int:
    """Draw every draw whose window has closed (the periodic `draws` task); returns how many were drawn."""
    now = now or utcnow()
    done = 0
    with rt.session_factory() as session:
        due = list(session.scalars(select(Draw).where(Draw.drawn_at.is_(None), Draw.closes_at <= now - GRACE)))
        for draw_obj in due:
            draw(session, draw_obj, actor="scheduled draw", now=now)
            session.commit()
            done += 1
    return done


def published(session: Session, draw_obj: Draw, now: dt.datetime | None = None) -> dict[str, Any]:
    """What the public page publishes (and /draws/<id>.json serves): no personal data, only references."""
    current = state(draw_obj, now)
    drawn = draw_obj.drawn_at is not None
    data: dict[str, Any] = {
        "draw": draw_obj.public_id, "name": draw_obj.name, "prize": draw_obj.prize, "rules": draw_obj.rules,
        "opens_at": draw_obj.opens_at.isoformat(), "closes_at": draw_obj.closes_at.isoformat(),
        "state": current, "winners_count": draw_obj.winners_count,
        "seed_hash": draw_obj.seed_hash, "hash": "sha256", "algorithm": ALGORITHM,
        "entries": refs_of(session, draw_obj.id) if current != "upcoming" else [],
        "seed": draw_obj.seed if drawn else None,
        "drawn_at": draw_obj.drawn_at.isoformat() if drawn else None,
        "winners": [e.ref for e in winner_entries(session, draw_obj.id)] if drawn else [],
    }
    return data


def export_csv(session: Session, draw_id: int) -> Iterator[str]:
    """The entries as CSV (reference, contact, when, how, winner rank), a chunk of rows at a time."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(["reference", "email", "first_name", "last_name", "entered_at", "source", "winner_rank"])
    rows = session.execute(select(DrawEntry.ref, Contact.email, Contact.first_name, Contact.last_name,
                                  DrawEntry.entered_at, DrawEntry.source, DrawEntry.winner_rank)
                           .outerjoin(Contact, Contact.id == DrawEntry.contact_id)
                           .where(DrawEntry.draw_id == draw_id).order_by(DrawEntry.id)).yield_per(1000)
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
