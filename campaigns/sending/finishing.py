"""Finishing a campaign: marked finished once dispatch is done and no send waits, is held or is in flight.

Every path that can leave a campaign with nothing to do (dispatch, a batch, the sweeper, the release of held sends,
the digest) asks here; it is this small module so none of them needs the rest of the others.
"""

from __future__ import annotations

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.models import AbPhase, AbTest, Campaign, CampaignStatus, Send, SendStatus, utcnow


def maybe_finish(session: Session, campaign_id: int) -> bool:
    """Mark the campaign finished when dispatch is done and no row is waiting, held or in flight (one atomic
    UPDATE; the caller commits). Held sends keep a campaign running until they are released and sent, or expire
    (campaigns.sending.release), and so does an A/B test waiting for its decision."""
    pending = exists().where(Send.campaign_id == campaign_id,
                             Send.status.in_([SendStatus.QUEUED, SendStatus.SENDING, SendStatus.HELD]))
    # An A/B test whose winner has not gone to the rest yet keeps the campaign running (campaigns.abtests).
    deciding = exists().where(AbTest.campaign_id == campaign_id, AbTest.phase != AbPhase.REST)
    done = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.RUNNING,
               Campaign.dispatched_at.is_not(None), ~pending, ~deciding)
        .values(status=CampaignStatus.FINISHED, finished_at=utcnow())
    ).rowcount
    if done and webhook_events.wanted(session, webhook_events.EventType.CAMPAIGN_FINISHED):
        row = session.execute(select(Campaign.name, Campaign.kind, Campaign.subject, Campaign.started_at,
                                     Campaign.finished_at).where(Campaign.id == campaign_id)).one()
        sent = session.scalar(select(func.count()).where(Send.campaign_id == campaign_id,
                                                         Send.status == SendStatus.SENT))
        webhook_events.record(session, webhook_events.EventType.CAMPAIGN_FINISHED, {
            "campaign": {"id": campaign_id, "name": row.name, "kind": str(row.kind), "subject": row.subject},
            "started_at": row.started_at, "finished_at": row.finished_at, "sent": sent})
    return bool(done)
