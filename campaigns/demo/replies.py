"""Demo replies: a few customers answered the latest seeded newsletter (Gmail, Outlook and German quoting styles)
and one out-of-office came back. They go through the real intake (campaigns.feedback.inbound), so they are matched
by their reply+TOKEN address, stripped, recorded on the timeline and owed a forward to the owner, which the demo's
worker sends to the Outbox."""

from __future__ import annotations

import datetime as dt
import random
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.config import Settings
from campaigns.feedback.engagement import recompute_engagement
from campaigns.feedback.inbound import ingest_message
from campaigns.models import Campaign, Contact, Event, EventType, Reply, Send, SendStatus, utcnow
from mailer.tracking import TokenCodec

REPLIES = (
    ("Thank you! Is it suitable for beginners? I have never pruned roses before.\n\nBest,\n{first}"
     "\n\nOn {date}, {sender} <{sender_email}> wrote:\n> {subject}\n", {}),
    ("Könnten Sie mir die Einladung auch als PDF schicken?\n\nViele Grüße\n{first}\n\nAm {date} schrieb "
     "{sender} <{sender_email}>:\n> {subject}\n", {}),
    ("Please put me down for two seats.\n\n________________________________\nFrom: {sender} "
     "<{sender_email}>\nSent: {date}\nSubject: {subject}\n\n{subject}\n", {}),
    ("Thank you for your message. I am out of the office until Monday with limited access to e-mail.\n",
     {"Auto-Submitted": "auto-replied", "Subject": "Out of Office: {subject}"}),
)


def seed_replies(session: Session, settings: Settings, rng: random.Random) -> int:
    """Answers to the latest finished campaign from people who clicked it (then who opened it: they read it);
    returns how many were recorded."""
    campaign = session.scalar(select(Campaign).where(Campaign.finished_at.is_not(None))
                              .order_by(Campaign.started_at.desc()).limit(1))
    if campaign is None:
        return 0
    readers: list[int] = []
    for kind in (EventType.CLICK, EventType.OPEN):
        readers += [cid for cid in session.scalars(select(Event.contact_id).where(
            Event.campaign_id == campaign.id, Event.type == kind, Event.machine.is_(False))
            .distinct().order_by(Event.contact_id)) if cid not in readers]
    # Customers with an owner first: their replies are forwarded to Anna Becker (the Outbox shows the forwards).
    owned = set(session.scalars(select(Contact.id).where(Contact.id.in_(readers), Contact.owner_id.is_not(None))))
    readers.sort(key=lambda cid: cid not in owned)
    subject = campaign.name if "{" in campaign.subject else campaign.subject
    tokens = TokenCodec(settings.secret_key, settings.old_secret_keys)
    domain = settings.reply_domain or settings.return_domain
    recorded: list[int] = []
    for (body, headers), contact_id in zip(REPLIES, readers, strict=False):
        contact = session.get(Contact, contact_id)
        send = session.scalar(select(Send).where(Send.campaign_id == campaign.id, Send.contact_id == contact_id,
                                                 Send.status == SendStatus.SENT))
        if contact is None or send is None or send.sent_at is None:
            continue
        msg = EmailMessage()
        msg["From"] = f"{contact.full_name} <{contact.email}>" if contact.full_name else contact.email
        msg["To"] = recipient_urls.reply_address(tokens, domain, send.id)
        msg["Subject"] = headers.get("Subject", "Re: {subject}").format(subject=subject)
        msg["Message-ID"] = f"<demo-reply-{send.id}@mail.example.org>"
        msg["Date"] = format_datetime(send.sent_at + dt.timedelta(hours=3))
        for name, value in headers.items():
            if name != "Subject":
                msg[name] = value
        msg.set_content(body.format(first=contact.first_name or "", date=f"{send.sent_at:%a, %d %b %Y %H:%M}",
                                    sender=campaign.from_name, sender_email=campaign.from_email, subject=subject))
        outcome = ingest_message(session, tokens, msg.as_bytes())
        if outcome.detail.isdigit():
            reply_id = int(outcome.detail)
            at = min(send.sent_at + dt.timedelta(hours=rng.randint(1, 30)), utcnow())
            session.execute(update(Reply).where(Reply.id == reply_id).values(received_at=at))
            session.execute(update(Event).where(Event.data["reply_id"].as_integer() == reply_id,
                                                Event.contact_id == contact_id).values(occurred_at=at))
            recorded.append(contact_id)
    session.flush()
    recompute_engagement(session, recorded)   # the replies count as of when they came, not as of seeding
    return len(recorded)
