"""Demo history for `make demo`: three campaigns sent in past weeks, with opens (people and machines),
clicks per link, unsubscribes, bounces and skipped sends, so the report and dashboard charts have something to show.
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.composing import editor as campaign_service
from campaigns.feedback.engagement import recompute_engagement
from campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    ContactStatus,
    Event,
    EventType,
    PolicyLedger,
    Send,
    Sender,
    SendStatus,
    Subscription,
    Topic,
    utcnow,
)
from campaigns.resources import starters_dir

STARTERS = starters_dir()
# (name, starter, subject, weeks ago, human open rate, click rate among openers)
HISTORY = (
    ("Seasonal greeting", "holiday", "Season's greetings from all of us", 3.8, 0.52, 0.10),
    ("Newsletter: plans for the season", "newsletter",
     "{{ contact.first_name|default('Hello', true) }}, plans for the new season", 2.4, 0.44, 0.22),
    ("Invitation: planting evening", "event", "{{ contact.first_name|default('Friend', true) }}, you're invited: "
     "a planting evening", 0.9, 0.47, 0.28),
)
SKIP_REASONS = ("preference", "paused", "topic")


def seed_history(session: Session, rng: random.Random, owner: Sender, topic: Topic) -> None:
    """Finished campaigns with send rows and engagement events spread over the days after each send."""
    for name, starter, subject, weeks, open_rate, click_rate in HISTORY:
        started = (utcnow() - dt.timedelta(weeks=weeks)).replace(hour=8, minute=0, second=0, microsecond=0)
        # Only who had subscribed by then: nobody gets mail from before they joined.
        subscribers = list(session.scalars(
            select(Contact).join(Subscription, Subscription.contact_id == Contact.id)
            .where(Subscription.topic_id == topic.id, Subscription.subscribed.is_(True),
                   Subscription.updated_at <= started,
                   Contact.status == ContactStatus.SUBSCRIBED).order_by(Contact.id)))
        campaign = Campaign(name=name, kind=CampaignKind.NURTURE, subject=subject, from_name=owner.name,
                            from_email=owner.email, mjml=(STARTERS / f"{starter}.mjml").read_text(),
                            status=CampaignStatus.FINISHED, started_at=started, dispatched_at=started,
                            finished_at=started + dt.timedelta(minutes=4), created_at=started - dt.timedelta(days=3))
        campaign.topics = [topic]
        session.add(campaign)
        session.flush()
        result = campaign_service.compiled(campaign)
        link_ids = campaign_service.ensure_links(session, campaign, result)
        campaign.content_hash = result.content_hash
        _sends_and_events(session, rng, campaign, subscribers, link_ids, open_rate, click_rate)
    # Last opened, last clicked and the engagement score, from the human opens and clicks above, by the code that
    # rebuilds them in the live system (after machine opens are reclassified).
    session.flush()
    recompute_engagement(session, list(session.scalars(select(Contact.id))))


def _sends_and_events(session: Session, rng: random.Random, campaign: Campaign, contacts: list[Contact],
                      link_ids: list[int], open_rate: float, click_rate: float) -> None:
    started = campaign.started_at
    # Readers open soon after the send, fewer every hour after: an exponential delay with a mean of ~9 hours.
    def later(mean_hours: float = 9.0) -> dt.datetime:
        return started + dt.timedelta(hours=min(rng.expovariate(1 / mean_hours), 24 * 6), minutes=rng.randint(1, 59))

    weights = [1 / (i + 1) for i in range(len(link_ids))]     # the first links get the most clicks
    for contact in contacts:
        roll = rng.random()
        if roll < 0.03:
            session.add(Send(campaign_id=campaign.id, contact_id=contact.id, status=SendStatus.SKIPPED,
                             reason=rng.choice(SKIP_REASONS), last_error="skipped at send time"))
            campaign.skipped += 1
            continue
        send = Send(campaign_id=campaign.id, contact_id=contact.id, status=SendStatus.SENT, attempts=1,
                    sent_at=started + dt.timedelta(seconds=rng.randint(5, 240)), smtp_code=250)
        session.add(send)
        session.flush()
        # What the sending policy counts (see campaigns.sending.policy): these mails earned the coupon.
        session.add(PolicyLedger(send_id=send.id, contact_id=contact.id, kind=campaign.kind, sent_at=send.sent_at))
        # As the send path does (delivery records last_sent_at with each sent row): the contact page, segments
        # ("Last mailed") and the frequency choice read it.
        contact.last_sent_at = max(contact.last_sent_at or send.sent_at, send.sent_at)
        campaign.recipients += 1
        campaign.sent += 1

        def event(type_: EventType, at: dt.datetime, send: Send = send, contact: Contact = contact,
                  **kw: object) -> None:
            session.add(Event(contact_id=contact.id, campaign_id=campaign.id, send_id=send.id, type=type_,
                              occurred_at=at, **kw))

        if rng.random() < 0.012:
            event(EventType.BOUNCE, send.sent_at + dt.timedelta(minutes=2), data={"kind": "soft"})
            continue
        if rng.random() < 0.12:      # Apple Mail Privacy Protection and friends: fetched, not read
            event(EventType.OPEN, send.sent_at + dt.timedelta(minutes=rng.randint(1, 20)), machine=True)
        if rng.random() < open_rate:
            opened = later()
            event(EventType.OPEN, opened)
            if rng.random() < 0.3:
                event(EventType.OPEN, opened + dt.timedelta(hours=rng.randint(2, 40)))
            if link_ids and rng.random() < click_rate:
                for link_id in {rng.choices(link_ids, weights)[0] for _ in range(rng.choice([1, 1, 2]))}:
                    event(EventType.CLICK, opened + dt.timedelta(minutes=rng.randint(0, 15)),
                          data={"link_id": link_id})
        if rng.random() < 0.015:     # left this topic: later campaigns no longer reach them
            topic_id = campaign.topics[0].id
            left = later(20)
            event(EventType.UNSUBSCRIBE, left, data={"topic_id": topic_id})
            session.execute(update(Subscription).where(Subscription.contact_id == contact.id,
                                                       Subscription.topic_id == topic_id)
                            .values(subscribed=False, updated_at=left))
    session.flush()
