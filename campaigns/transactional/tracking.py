"""Opens and clicks of transactional messages, read back: per message (the API's `tracking`, the admin list) and
per template (its campaign report). The events are written by campaigns.feedback.tx_hits (event.tx_message_id);
human only unless machines are asked for; a click without a recorded open implies one (as for campaign mail).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from campaigns.models import Event, EventType, TxMessage, TxStatus


@dataclass(frozen=True)
class Engagement:
    """One message's opens and clicks."""

    opens: int = 0
    clicks: int = 0
    first_opened_at: dt.datetime | None = None
    first_clicked_at: dt.datetime | None = None


def engagement(session: Session, tx_ids: Iterable[int], *, machine: bool = False) -> dict[int, Engagement]:
    """tx_message id -> its opens and clicks (human only, or machine ones too); messages without any are absent."""
    ids = list(set(tx_ids))
    if not ids:
        return {}
    stmt = (select(Event.tx_message_id, Event.type, func.count(), func.min(Event.occurred_at))
            .where(Event.tx_message_id.in_(ids), Event.type.in_([EventType.OPEN, EventType.CLICK]))
            .group_by(Event.tx_message_id, Event.type))
    if not machine:
        stmt = stmt.where(Event.machine.is_(False))
    found: dict[int, dict] = {}
    for tx_id, type_, count, first in session.execute(stmt):
        row = found.setdefault(tx_id, {})
        if type_ == EventType.OPEN:
            row.update(opens=count, first_opened_at=first)
        else:
            row.update(clicks=count, first_clicked_at=first)
    return {tx_id: Engagement(**row) for tx_id, row in found.items()}


@dataclass(frozen=True)
class TemplateTotals:
    """A transactional template's messages: how many were accepted, handed to the relay (sent, including those
    bounced later), opened or clicked by a person, bounced."""

    messages: int = 0
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0


def template_totals(session: Session, campaign_id: int) -> TemplateTotals:
    """The template's messages by outcome; opened and clicked count messages, human events only."""
    by_status = dict(session.execute(select(TxMessage.status, func.count()).where(
        TxMessage.campaign_id == campaign_id).group_by(TxMessage.status)).all())
    engaged = dict(session.execute(
        select(Event.type, func.count(distinct(Event.tx_message_id)))
        .where(Event.campaign_id == campaign_id, Event.tx_message_id.is_not(None), Event.machine.is_(False),
               Event.type.in_([EventType.OPEN, EventType.CLICK]))
        .group_by(Event.type)).all())
    sent = session.scalar(select(func.count()).where(TxMessage.campaign_id == campaign_id,
                                                     TxMessage.sent_at.is_not(None))) or 0
    return TemplateTotals(messages=sum(by_status.values()), sent=sent, opened=engaged.get(EventType.OPEN, 0),
                          clicked=engaged.get(EventType.CLICK, 0), bounced=by_status.get(TxStatus.BOUNCED, 0))
