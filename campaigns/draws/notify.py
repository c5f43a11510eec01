"""Telling the winners: one personal mail from a named person (the owner), through the normal send path.

Like an apology (campaigns.coupons.apology) it is a transactional campaign to the winners only, so it is
DKIM-signed, logged in the send table and never goes to a bounced, complained or suppressed address; each winner's
timeline gets a personal_mail event. The marketer's words are text, never template code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from campaigns.composing import editor as campaign_service
from campaigns.coupons.apology import MAX_SUBJECT, compose_mjml, literal, personal_message
from campaigns.draws.drawing import winner_entries
from campaigns.draws.service import get_draw
from campaigns.errors import InvalidState
from campaigns.models import Campaign, CampaignKind, Draw, Event, EventType, utcnow
from campaigns.runtime import Runtime
from campaigns.sending import lifecycle as sending

logger = logging.getLogger(__name__)


def default_subject(draw: Draw) -> str:
    return f"You won: {draw.prize}"[:MAX_SUBJECT]


def default_message(draw: Draw) -> str:
    return (f"Congratulations: you are a winner of our draw “{draw.name}”. Your prize: {draw.prize}.\n\n"
            "Please reply to this mail to tell us where to send it. The draw can be checked by anyone on its "
            "public page.")


@dataclass(frozen=True)
class Notified:
    campaign_id: int
    queued: int


def notify_winners(rt: Runtime, draw_id: int, data: Mapping[str, Any], *, written_by: str) -> Notified:
    """Validate, create the winners' campaign, queue it to the winners. Once per draw.

    Opens its own session and commits it: the campaign must be stored before dispatch_to queues it.
    """
    with rt.session_factory() as session:
        campaign_id, contact_ids = _write(session, draw_id, data, written_by=written_by)
        session.commit()
    queued = sending.dispatch_to(rt, campaign_id, contact_ids)
    logger.info("draw %s: winners' mail campaign %s queued to %d by %s", draw_id, campaign_id, queued, written_by)
    return Notified(campaign_id, queued)


def _write(session: Session, draw_id: int, data: Mapping[str, Any], *, written_by: str) -> tuple[int, list[int]]:
    draw = get_draw(session, draw_id)
    if draw.drawn_at is None:
        raise InvalidState("draw the winners first")
    if draw.notified_at is not None:
        raise InvalidState(f"the winners were told on {draw.notified_at:%Y-%m-%d %H:%M} UTC already")
    winners = [w for w in winner_entries(session, draw.id) if w.contact_id is not None]
    if not winners:
        raise InvalidState("this draw has no winners to tell (nobody entered, or the winners were erased)")
    sender, subject, message = personal_message(session, data)
    campaign = Campaign(
        name=f"Winners of {draw.name} · {utcnow():%Y-%m-%d %H:%M}"[:200],
        kind=CampaignKind.TRANSACTIONAL, subject=literal(subject), preheader="", text_body="", all_contacts=False,
        relay="", from_name=sender.name, from_email=sender.email, reply_to=sender.reply_to or sender.email,
        mjml=compose_mjml(message, "", sender.title or ""), status_reason=f"draw {draw.id}, sent by {written_by}")
    campaign_service.validate(campaign, session)
    session.add(campaign)
    session.flush()
    claimed = session.execute(update(Draw).where(Draw.id == draw.id, Draw.notified_at.is_(None))
                              .values(notified_at=utcnow(), notify_campaign_id=campaign.id)
                              .execution_options(synchronize_session=False)).rowcount
    if not claimed:
        raise InvalidState("the winners are being told already")
    for entry in winners:
        session.add(Event(contact_id=entry.contact_id, campaign_id=campaign.id, type=EventType.PERSONAL_MAIL, data={
            "source": f"{sender.name}, written by {written_by}", "subject": subject, "draw": draw.name}))
    session.flush()
    return campaign.id, [e.contact_id for e in winners]
