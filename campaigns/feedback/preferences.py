"""What recipients decide flows back into the contact list: unsubscribes, the preference center, click targets,
and relays' native webhook payloads translated to the normalized relay events.

Opens and clicks are recorded by campaigns.feedback.engagement; bounces and complaints by .ingest.
Every change of consent is an event with a timestamp (the consent history shown in the preference center).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from campaigns import stops
from campaigns.contacts.records import set_subscriptions
from campaigns.errors import NotFound, ValidationError
from campaigns.models import (
    Campaign,
    CampaignKind,
    Contact,
    ContactStatus,
    Event,
    EventType,
    Frequency,
    Subscription,
    Topic,
    campaign_topic,
    utcnow,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnsubscribeScope:
    """Who a token unsubscribes and which topics its campaign belongs to."""

    contact: Contact
    campaign: Campaign | None
    topics: list[Topic]


def resolve_unsubscribe(session: Session, contact_id: int, campaign_id: int) -> UnsubscribeScope:
    """Load the contact (and campaign) named by an unsubscribe token; NotFound for tests or erased contacts."""
    contact = session.get(Contact, contact_id) if contact_id else None
    if contact is None:
        raise NotFound("no contact")
    campaign = session.get(Campaign, campaign_id) if campaign_id else None
    topics = list(session.scalars(
        select(Topic).join(campaign_topic, campaign_topic.c.topic_id == Topic.id)
        .where(campaign_topic.c.campaign_id == campaign_id))) if campaign else []
    return UnsubscribeScope(contact, campaign, topics)


def unsubscribe(session: Session, scope: UnsubscribeScope, *, everything: bool, source: str) -> bool:
    """Unsubscribe from all mail or from the campaign's topics; idempotent; returns whether anything changed."""
    contact = scope.contact
    changed = False
    if everything or not scope.topics:
        if contact.status == ContactStatus.SUBSCRIBED or contact.status == ContactStatus.PENDING:
            contact.status = ContactStatus.UNSUBSCRIBED
            changed = True
    else:
        topic_ids = [t.id for t in scope.topics]
        changed = bool(session.execute(
            update(Subscription).where(Subscription.contact_id == contact.id,
                                       Subscription.topic_id.in_(topic_ids), Subscription.subscribed.is_(True))
            .values(subscribed=False, updated_at=utcnow())).rowcount)
        if changed:   # a bulk UPDATE: tell running sends before the commit (see campaigns.stops)
            stops.note(session, [f"t:{contact.id}:{t}" for t in topic_ids])
    if changed:
        session.add(Event(contact_id=contact.id, campaign_id=scope.campaign.id if scope.campaign else None,
                          type=EventType.UNSUBSCRIBE,
                          data={"scope": "all" if everything or not scope.topics else "topics",
                                "topics": [t.name for t in scope.topics], "source": source}))
        logger.info("contact %s unsubscribed (%s, campaign_id=%s)", contact.id, source,
                    scope.campaign.id if scope.campaign else None)
    session.commit()
    return changed


PAUSE_WEEKS = (2, 4, 8, 12)
FREQUENCY_LABELS = {Frequency.EVERY: "Every mail", Frequency.WEEKLY: "A weekly digest at most",
                    Frequency.MONTHLY: "A monthly digest at most"}
FREQUENCY_GAP = {Frequency.WEEKLY: dt.timedelta(days=7), Frequency.MONTHLY: dt.timedelta(days=30)}


def is_paused(contact: Contact, now: dt.datetime | None = None) -> bool:
    """Whether the contact asked for a break from non-transactional mail that has not ended yet."""
    return contact.paused_until is not None and contact.paused_until > (now or utcnow())


def frequency_allows(contact: Contact, now: dt.datetime | None = None) -> bool:
    """Whether the contact's chosen frequency allows another non-transactional message now (by last_sent_at)."""
    gap = FREQUENCY_GAP.get(Frequency(contact.frequency or Frequency.EVERY))
    if gap is None or contact.last_sent_at is None:
        return True
    return (now or utcnow()) - contact.last_sent_at >= gap


def may_receive(contact: Contact, kind: str, now: dt.datetime | None = None) -> bool:
    """The preference-center part of eligibility: pause and frequency (transactional mail ignores both)."""
    if kind == CampaignKind.TRANSACTIONAL:
        return True
    return not is_paused(contact, now) and frequency_allows(contact, now)


def update_preferences(session: Session, contact: Contact, *, topic_ids: Iterable[int], first_name: str,
                       last_name: str, resubscribe: bool = False, frequency: str | None = None,
                       pause_weeks: int | None = None, now: dt.datetime | None = None) -> list[str]:
    """Apply the preference center form, keep a consent event, commit; returns what changed, in words.

    pause_weeks: None keeps the current pause, 0 ends it, N pauses for N weeks from now.
    """
    now = now or utcnow()
    if frequency is not None and frequency not in set(Frequency):
        raise ValidationError("choose how often you want mail", field="frequency")
    if pause_weeks is not None and pause_weeks not in (0, *PAUSE_WEEKS):
        raise ValidationError("choose a pause of 2, 4, 8 or 12 weeks", field="pause")
    public = {t.id: t.name for t in session.scalars(select(Topic).where(Topic.public.is_(True)))}
    chosen = set(topic_ids) & set(public)
    before = {s.topic_id for s in contact.subscriptions if s.subscribed}
    hidden = {t for t in before if t not in public}
    set_subscriptions(session, contact, chosen | hidden)
    changes: list[str] = []
    data: dict = {"source": "preference center"}
    added, removed = sorted(chosen - before), sorted((before & set(public)) - chosen)
    if added:
        data["topics_on"] = [public[t] for t in added]
        changes.append("You now receive " + ", ".join(public[t] for t in added) + ".")
    if removed:
        data["topics_off"] = [public[t] for t in removed]
        changes.append("You no longer receive " + ", ".join(public[t] for t in removed) + ".")
    first, last = first_name.strip()[:200], last_name.strip()[:200]
    if (first, last) != (contact.first_name, contact.last_name):
        contact.first_name, contact.last_name = first, last
        data["name"] = True
        changes.append("Your name is saved.")
    if frequency is not None and frequency != contact.frequency:
        data["frequency"] = [str(contact.frequency), frequency]
        contact.frequency = Frequency(frequency)
        changes.append(f"How often: {FREQUENCY_LABELS[Frequency(frequency)].lower()}.")
    if pause_weeks == 0 and is_paused(contact, now):
        contact.paused_until = None
        data["paused_until"] = None
        changes.append("Your pause has ended: mail resumes.")
    elif pause_weeks:
        contact.paused_until = now + dt.timedelta(weeks=pause_weeks)
        data["paused_until"] = contact.paused_until.isoformat()
        changes.append(f"No mail until {contact.paused_until:%d %B %Y}.")
    if resubscribe and contact.status == ContactStatus.UNSUBSCRIBED:
        contact.status = ContactStatus.SUBSCRIBED
        contact.consent_source = "preference center"
        contact.consent_at = now
        session.add(Event(contact_id=contact.id, type=EventType.RESUBSCRIBE, occurred_at=now,
                          data={"source": "preference center"}))
        changes.append("You are subscribed again.")
    if len(data) > 1:
        session.add(Event(contact_id=contact.id, type=EventType.PREFERENCES, occurred_at=now, data=data))
    session.commit()
    return changes or ["Nothing changed."]


CONSENT_EVENTS = (EventType.SUBSCRIBE, EventType.UNSUBSCRIBE, EventType.RESUBSCRIBE, EventType.PREFERENCES,
                  EventType.COMPLAINT)


def consent_history(session: Session, contact_id: int, limit: int = 20) -> list[Event]:
    """The contact's latest consent events, newest first."""
    return list(session.scalars(select(Event).where(Event.contact_id == contact_id,
                                                    Event.type.in_([str(t) for t in CONSENT_EVENTS]))
                                .order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)))


# Link URLs never change once a campaign is sent; drafts may edit them, so entries live only a short while.
_LINK_TTL = 30.0
_links: dict[int, tuple[float, int, str]] = {}


_lookup_engines: dict[str, Engine] = {}


def _lookup_engine(engine: Engine) -> Engine:
    """An autocommit engine without pre-ping for the click lookups: one network round trip per query instead of
    three (ping, query, rollback). SQLite's engine is cheap as it is."""
    if engine.dialect.name == "sqlite":
        return engine
    key = engine.url.render_as_string(hide_password=False)
    lookup = _lookup_engines.get(key)
    if lookup is None:
        lookup = _lookup_engines[key] = create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_recycle=300)
    return lookup


def _read_row(engine: Engine, sql: str, value: int) -> tuple | None:
    """One row by primary key on a raw pooled DB-API connection, outside any transaction: this runs on every
    click, and a plain autocommit cursor costs a fraction of an ORM round trip and takes no write lock."""
    engine = _lookup_engine(engine)
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.execute(sql.replace("?", "?" if engine.dialect.paramstyle == "qmark" else "%s"), (value,))
        row = cur.fetchone()
        cur.close()
        conn.rollback()
    finally:
        conn.close()
    return tuple(row) if row else None


def click_target(engine: Engine, link_id: int) -> str:
    """The stored URL of link_id; NotFound when there is no such link.

    Runs on every click, so it reads through a cache of the (immutable once sent) link table and touches nothing
    else: the click token is sealed (AES-SIV) over the send and link ids we paired when rendering, so nobody can
    make it name another campaign's link, and the hit writer (services.hits) still drops any click whose link is
    not of its send's campaign before it becomes an event.
    """
    cached = _links.get(link_id)
    if cached is None or cached[0] < time.monotonic():
        row = _read_row(engine, "SELECT campaign_id, url FROM link WHERE id = ?", link_id)
        if row is None:
            raise NotFound("unknown link")
        if len(_links) > 10_000:
            _links.clear()
        cached = _links[link_id] = (time.monotonic() + _LINK_TTL, row[0], row[1])
    return cached[2]


# ---------------------------------------------------------------- relays' native webhook payloads
#
# Each relay reports bounces, complaints, deliveries, opens and clicks in its own JSON. These functions translate
# one relay's payload into events of Rapport's normalized format (docs/webhooks.md), which
# campaigns.feedback.ingest.apply_relay_event applies, so every relay ends in the same service calls.
# Authentication is the endpoint's job (campaigns.web.public.webhooks); this part only reads the JSON.

RELAY_FORMATS = ("ses", "postmark", "mailgun", "sendgrid")


class BadPayload(ValueError):
    """The body is not a payload of the relay it was posted for."""


def _brackets(message_id: object) -> str | None:
    """A Message-ID with angle brackets (relays report it with or without)."""
    if not isinstance(message_id, str) or not message_id.strip() or len(message_id) > 990:
        return None
    value = message_id.strip()
    return value if value.startswith("<") else f"<{value}>"


def _smtp_code(text: object) -> int | None:
    """The SMTP reply code at the start of a diagnostic ('smtp; 550 5.1.1 …', '550 unknown user')."""
    if not isinstance(text, str):
        return None
    for word in text.replace(";", " ").split()[:3]:
        if len(word) == 3 and word.isdigit() and 200 <= int(word) <= 599:
            return int(word)
    return None


def _short(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _clean(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if v is not None}


def relay_events(relay: str, payload: Any) -> list[dict[str, Any]]:
    """Normalized events (docs/webhooks.md) from one relay's native webhook payload; raises BadPayload.

    An event Rapport has no use for becomes {"ignored": "<why>"}, so the answer still lists it.
    """
    if relay == "ses":
        return _ses(payload)
    if relay == "postmark":
        return [_postmark(payload)]
    if relay == "mailgun":
        return [_mailgun(payload)]
    if relay == "sendgrid":
        if not isinstance(payload, list):
            raise BadPayload("SendGrid posts a JSON list of events")
        return [_sendgrid(e) for e in payload]
    raise BadPayload(f"unknown relay {relay!r}")


def _ses(message: Any) -> list[dict[str, Any]]:
    """An SES notification (the Message of an SNS notification): notificationType or eventType publishing."""
    if not isinstance(message, dict) or not isinstance(message.get("mail"), dict):
        raise BadPayload("not an Amazon SES notification")
    kind = message.get("notificationType") or message.get("eventType")
    mail = message["mail"]
    common = _dict(mail.get("commonHeaders"))
    headers = {str(h.get("name", "")).lower(): h.get("value") for h in _list(mail.get("headers"))
               if isinstance(h, dict)}
    base = {"rapport_id": _short(headers.get("x-rapport-id"), 200),
            "message_id": _brackets(common.get("messageId") or headers.get("message-id"))}
    ses_id = str(mail.get("messageId", ""))[:100]
    if kind == "Bounce":
        bounce = _dict(message.get("bounce"))
        hard = bounce.get("bounceType") == "Permanent"
        out = []
        for r in _list(bounce.get("bouncedRecipients")):
            if not isinstance(r, dict):
                continue
            diagnostic = r.get("diagnosticCode")
            out.append(_clean({**base, "type": "bounce", "bounce_type": "hard" if hard else "soft",
                               "recipient": _short(r.get("emailAddress"), 320),
                               "id": f"ses:{bounce.get('feedbackId', ses_id)}:{r.get('emailAddress', '')}"[:200],
                               "timestamp": bounce.get("timestamp"), "status": _short(r.get("status"), 11),
                               "smtp_code": _smtp_code(diagnostic), "diagnostic": _short(diagnostic, 1000)}))
        return out or [{"ignored": "bounce without recipients"}]
    if kind == "Complaint":
        complaint = _dict(message.get("complaint"))
        return [_clean({**base, "type": "complaint", "recipient": _short(r.get("emailAddress"), 320),
                        "id": f"ses:{complaint.get('feedbackId', ses_id)}:{r.get('emailAddress', '')}"[:200],
                        "timestamp": complaint.get("timestamp"),
                        "feedback_type": _short(complaint.get("complaintFeedbackType"), 64)})
                for r in _list(complaint.get("complainedRecipients")) if isinstance(r, dict)] \
            or [{"ignored": "complaint without recipients"}]
    if kind == "Delivery":
        delivery = _dict(message.get("delivery"))
        return [_clean({**base, "type": "delivered", "recipient": _short(r, 320),
                        "id": f"ses:delivery:{ses_id}:{r}"[:200], "timestamp": delivery.get("timestamp")})
                for r in _list(delivery.get("recipients")) if isinstance(r, str)] \
            or [{"ignored": "delivery without recipients"}]
    if kind in ("Open", "Click"):
        detail = _dict(message.get(kind.lower()))
        return [_clean({**base, "type": kind.lower(), "id": f"ses:{kind}:{ses_id}:{detail.get('timestamp', '')}",
                        "timestamp": detail.get("timestamp"), "url": _short(detail.get("link"), 2000),
                        "user_agent": _short(detail.get("userAgent"), 300),
                        "ip": _short(detail.get("ipAddress"), 64)})]
    return [{"ignored": f"SES {str(kind)[:40]} notifications are not used"}]


_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked"}
_POSTMARK_COMPLAINT = {"SpamComplaint", "SpamNotification"}


def _postmark(event: Any) -> dict[str, Any]:
    """One Postmark webhook (RecordType Bounce, SpamComplaint, Delivery, Open or Click)."""
    if not isinstance(event, dict) or not isinstance(event.get("RecordType"), str):
        raise BadPayload("not a Postmark webhook (no RecordType)")
    record = event["RecordType"]
    metadata = event.get("Metadata") if isinstance(event.get("Metadata"), dict) else {}
    base = {"rapport_id": _short(metadata.get("rapport_id") or metadata.get("rapport-id"), 200),
            "recipient": _short(event.get("Email") or event.get("Recipient"), 320)}
    pm_id = str(event.get("ID") or event.get("MessageID") or "")[:100]
    if record in ("Bounce", "SpamComplaint"):
        kind = str(event.get("Type", ""))
        details = _short(event.get("Details") or event.get("Description"), 1000)
        if kind in _POSTMARK_COMPLAINT or record == "SpamComplaint":
            return _clean({**base, "type": "complaint", "id": f"postmark:{pm_id}:complaint",
                           "timestamp": event.get("BouncedAt")})
        if kind not in _POSTMARK_HARD | _POSTMARK_SOFT:
            return {"ignored": f"Postmark bounce type {kind[:40]} is not a delivery failure"}
        return _clean({**base, "type": "bounce", "bounce_type": "hard" if kind in _POSTMARK_HARD else "soft",
                       "id": f"postmark:{pm_id}:bounce", "timestamp": event.get("BouncedAt"),
                       "smtp_code": _smtp_code(details), "diagnostic": details})
    if record == "Delivery":
        return _clean({**base, "type": "delivered", "id": f"postmark:{pm_id}:delivery",
                       "timestamp": event.get("DeliveredAt")})
    if record in ("Open", "Click"):
        geo = event.get("Geo") if isinstance(event.get("Geo"), dict) else {}
        return _clean({**base, "type": record.lower(), "id": f"postmark:{pm_id}:{record}:{event.get('ReceivedAt')}",
                       "timestamp": event.get("ReceivedAt"), "url": _short(event.get("OriginalLink"), 2000),
                       "user_agent": _short(event.get("UserAgent"), 300), "ip": _short(geo.get("IP"), 64)})
    return {"ignored": f"Postmark {record[:40]} webhooks are not used"}


def _mailgun(payload: Any) -> dict[str, Any]:
    """One Mailgun webhook: {"signature": {...}, "event-data": {...}} (failed, complained, delivered, opened…)."""
    data = payload.get("event-data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise BadPayload("not a Mailgun webhook (no event-data)")
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    variables = data.get("user-variables") if isinstance(data.get("user-variables"), dict) else {}
    base = {"rapport_id": _short(variables.get("rapport_id"), 200),
            "message_id": _brackets(headers.get("message-id")), "recipient": _short(data.get("recipient"), 320),
            "id": f"mailgun:{str(data.get('id', ''))[:100]}" if data.get("id") else None,
            "timestamp": data.get("timestamp")}
    event = data["event"]
    if event == "failed":
        status = data.get("delivery-status") if isinstance(data.get("delivery-status"), dict) else {}
        code = status.get("code")
        return _clean({**base, "type": "bounce",
                       "bounce_type": "hard" if data.get("severity") == "permanent" else "soft",
                       "smtp_code": code if isinstance(code, int) and 200 <= code <= 599 else None,
                       "status": _short(status.get("enhanced-code"), 11),
                       "diagnostic": _short(status.get("message") or status.get("description"), 1000)})
    if event == "complained":
        return _clean({**base, "type": "complaint"})
    if event == "delivered":
        return _clean({**base, "type": "delivered"})
    if event in ("opened", "clicked"):
        client = data.get("client-info") if isinstance(data.get("client-info"), dict) else {}
        return _clean({**base, "type": "open" if event == "opened" else "click", "url": _short(data.get("url"), 2000),
                       "user_agent": _short(client.get("user-agent"), 300), "ip": _short(data.get("ip"), 64)})
    return {"ignored": f"Mailgun {event[:40]} events are not used"}


def _sendgrid(event: Any) -> dict[str, Any]:
    """One event of a SendGrid Event Webhook batch (bounce, spamreport, delivered, open, click…)."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return {"ignored": "not a SendGrid event"}
    kind = event["event"]
    base = {"rapport_id": _short(event.get("rapport_id"), 200), "message_id": _brackets(event.get("smtp-id")),
            "recipient": _short(event.get("email"), 320),
            "id": f"sendgrid:{str(event['sg_event_id'])[:100]}" if event.get("sg_event_id") else None,
            "timestamp": event.get("timestamp")}
    if kind == "bounce":
        reason = _short(event.get("reason"), 1000)
        return _clean({**base, "type": "bounce", "bounce_type": "soft" if event.get("type") == "blocked" else "hard",
                       "status": _short(event.get("status"), 11), "smtp_code": _smtp_code(reason),
                       "diagnostic": reason})
    if kind == "spamreport":
        return _clean({**base, "type": "complaint"})
    if kind == "delivered":
        return _clean({**base, "type": "delivered"})
    if kind in ("open", "click"):
        return _clean({**base, "type": kind, "url": _short(event.get("url"), 2000),
                       "user_agent": _short(event.get("useragent"), 300), "ip": _short(event.get("ip"), 64)})
    return {"ignored": f"SendGrid {kind[:40]} events are not used"}
