"""Reputation guard: a campaign whose first sends bounce hard or draw complaints far above normal is paused with
the reason before it reaches the rest of the list.

Mailbox providers judge a sender by exactly these rates (a few per cent of hard bounces means an old or bought
list; complaints above 0.1 % get mail filtered). The rates are judged over a campaign's first sends only
(Settings.pause_within_sends, from pause_min_sends on, so a handful of early bounces decides nothing). A person who
reads the reason and presses Send again has decided: the campaign is not paused for it a second time.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, Event, EventType
from campaigns.runtime import Runtime

logger = logging.getLogger(__name__)


def _decided_key(rt: Runtime, campaign_id: int) -> str:
    return f"rapport:{rt.settings.queue_name}:reputation-decided:{campaign_id}"


def pause_reason(rt: Runtime, session: Session, campaign_id: int) -> str:
    """Why the campaign should be paused now for its bounce or complaint rate, or "" (also once a person resumed)."""
    s = rt.settings
    sent = session.scalar(select(Campaign.sent).where(Campaign.id == campaign_id)) or 0
    if sent < s.pause_min_sends or sent > s.pause_within_sends:
        return ""
    try:
        if rt.redis.exists(_decided_key(rt, campaign_id)):
            return ""
    except RedisError:
        return ""       # no way to remember a person's decision now: judge again later
    of = (Event.campaign_id == campaign_id)
    hard = sum(1 for data in session.scalars(select(Event.data).where(of, Event.type == EventType.BOUNCE)
                                             .limit(s.pause_within_sends * 2))
               if (data or {}).get("kind") == "hard")
    complaints = session.scalar(select(func.count()).where(of, Event.type == EventType.COMPLAINT)) or 0
    reason = ""
    if hard / sent > s.pause_hard_bounce_rate:
        reason = (f"paused automatically: {hard} of the first {sent} messages bounced hard ({hard / sent:.1%}; "
                  f"the limit is {s.pause_hard_bounce_rate:.1%}). Mailbox providers read this as an old or bought "
                  "list and start refusing the sender's mail. Check where these addresses came from; the bounced "
                  "ones are suppressed already. Press Send to go on anyway.")
    elif complaints / sent > s.pause_complaint_rate:
        reason = (f"paused automatically: {complaints} of the first {sent} recipients reported it as spam "
                  f"({complaints / sent:.2%}; the limit is {s.pause_complaint_rate:.2%}). Providers filter a sender "
                  "above this rate. Check that these people asked for this mail; press Send to go on anyway.")
    if reason:
        try:
            rt.redis.set(_decided_key(rt, campaign_id), "1", ex=90 * 24 * 3600)
        except RedisError:
            logger.warning("campaign_id=%s: could not remember the reputation pause", campaign_id)
    return reason
