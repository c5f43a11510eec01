"""The admin audit log: record an action, and list entries with filters (newest first, keyset pages)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import AuditEntry

PAGE = 50


class Action(StrEnum):
    """What an admin did; the page's filter lists these."""

    CAMPAIGN_SEND = "campaign.send"
    CAMPAIGN_RESUME = "campaign.resume"
    CAMPAIGN_PAUSE = "campaign.pause"
    CAMPAIGN_CANCEL = "campaign.cancel"
    CAMPAIGN_SCHEDULE = "campaign.schedule"
    CAMPAIGN_UNSCHEDULE = "campaign.unschedule"
    CAMPAIGN_TEST = "campaign.test_send"
    CAMPAIGN_AB_TEST = "campaign.ab_test"           # an A/B test set up, changed or removed
    CAMPAIGN_AB_PICK = "campaign.ab_pick"           # a person chose the variant the rest gets
    SENDER_ADD = "settings.sender_add"
    SENDER_EDIT = "settings.sender_edit"
    SENDER_DELETE = "settings.sender_delete"
    POSTAL_ADDRESS = "settings.postal_address"
    POLICY = "settings.policy"
    RELAY_TEST = "settings.relay_test"
    DKIM_GENERATE = "dkim.generate"
    DKIM_ACTIVATE = "dkim.activate"
    DKIM_DISCARD = "dkim.discard"
    USER_CREATE = "user.create"
    USER_ROLE = "user.role"
    USER_ACTIVATE = "user.activate"
    USER_DEACTIVATE = "user.deactivate"
    USER_PASSWORD = "user.password"
    CONTACTS_EXPORT = "contacts.export"
    CONTACT_GDPR_EXPORT = "contact.gdpr_export"
    CONTACT_ERASE = "contact.erase"
    IMPORT_START = "import.start"
    SIGNUP_CONSENT_EXPORT = "signups.consent_export"
    SURVEY_ANSWERS_EXPORT = "survey.answers_export"
    API_KEY_CREATE = "settings.api_key_create"
    API_KEY_REVOKE = "settings.api_key_revoke"
    WEBHOOK_CREATE = "webhook.create"
    WEBHOOK_EDIT = "webhook.edit"
    WEBHOOK_ENABLE = "webhook.enable"
    WEBHOOK_DISABLE = "webhook.disable"
    WEBHOOK_AUTO_DISABLE = "webhook.auto_disable"
    WEBHOOK_DELETE = "webhook.delete"
    WEBHOOK_ROTATE = "webhook.rotate_secret"
    WEBHOOK_REPLAY = "webhook.replay"
    WEBHOOK_TEST = "webhook.test"
    CAMPAIGN_ARCHIVE = "campaign.archive"      # shown in (or taken out of) a public archive
    FEED_DELETE = "feed_mailing.delete"        # a feed mailing removed (the mails it sent stay)
    TIER_SAVE = "loyalty.tier_save"
    TIER_DELETE = "loyalty.tier_delete"
    DRAW_SAVE = "draw.save"                    # a prize draw created or edited
    DRAW_DRAW = "draw.draw"                    # the winners drawn and the seed revealed (by a person or the job)
    DRAW_EXPORT = "draw.entries_export"
    DRAW_NOTIFY = "draw.notify_winners"


def record(session: Session, actor: str, action: Action | str, target: str = "", detail: str = "",
           ip: str = "") -> AuditEntry:
    """Add one entry to the session (the caller commits it with, or right after, the change it describes)."""
    entry = AuditEntry(actor=actor[:320], action=str(action)[:64], target=target[:200], detail=detail[:1000],
                       ip=ip[:64])
    session.add(entry)
    return entry


@dataclass(frozen=True)
class Filters:
    """The audit page's filters; empty values do not filter."""

    actor: str = ""
    action: str = ""
    since: dt.date | None = None
    until: dt.date | None = None          # inclusive
    before_id: int | None = None          # keyset: entries older than this one


def entries(session: Session, filters: Filters, limit: int = PAGE) -> list[AuditEntry]:
    """Entries matching filters, newest first; at most limit."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if filters.actor:
        query = query.where(AuditEntry.actor == filters.actor.strip().lower())
    if filters.action:
        query = query.where(AuditEntry.action == filters.action)
    if filters.since:
        query = query.where(AuditEntry.at >= dt.datetime.combine(filters.since, dt.time(), dt.UTC))
    if filters.until:
        query = query.where(AuditEntry.at < dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time(),
                                                                dt.UTC))
    if filters.before_id:
        query = query.where(AuditEntry.id < filters.before_id)
    return list(session.scalars(query))


def actors(session: Session) -> list[str]:
    """Everyone who appears in the log (for the filter)."""
    return sorted(session.scalars(select(AuditEntry.actor).distinct()))
