"""Contacts: validation, create/update, search and keyset-paginated listing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from campaigns.errors import NotFound, ValidationError
from campaigns.models import (
    Contact,
    ContactInterest,
    ContactStatus,
    Subscription,
    Suppression,
    SuppressionReason,
    Topic,
    utcnow,
)

logger = logging.getLogger(__name__)

EDITABLE_FIELDS = ("first_name", "last_name", "phone", "address_line1", "address_line2", "city", "region",
                   "postal_code", "country", "timezone", "locale")


def normalize_email(raw: str, *, own_address: bool = False) -> str:
    """Validate syntax and return the address lower-cased; raises ValidationError with the reason.

    Recipients on special-use domains (.test, .invalid, localhost…) are refused: mail to them can never arrive.
    Our own sender addresses may use them, so a staging setup can send as news@shop.test.
    """
    try:
        result = validate_email((raw or "").strip(), check_deliverability=False,
                                globally_deliverable=not own_address, test_environment=own_address)
    except EmailNotValidError as exc:
        raise ValidationError(f"{raw!r} is not a valid email address: {exc}", field="email") from None
    return result.normalized.lower()


def suppressed_status(session: Session, email: str) -> ContactStatus | None:
    """The status a suppressed address keeps when it is added again (bounced, complained, unsubscribed), else None."""
    from campaigns.services.ingest import email_hash  # ingest builds on this module

    row = session.get(Suppression, email_hash(email))
    if row is None:
        return None
    return {SuppressionReason.COMPLAINT: ContactStatus.COMPLAINED,
            SuppressionReason.MANUAL: ContactStatus.UNSUBSCRIBED}.get(row.reason, ContactStatus.BOUNCED)


def get_contact(session: Session, contact_id: int) -> Contact:
    """Load one contact or raise NotFound."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    return contact


def _parse_birthday(value: Any) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValidationError(f"birthday {value!r} is not a date like 1990-04-23", field="birthday") from None


def save_contact(session: Session, data: Mapping[str, Any], contact: Contact | None = None,
                 *, topic_ids: Iterable[int] | None = None, interests: Iterable[str] | None = None,
                 consent_source: str = "admin") -> Contact:
    """Create or update a contact from form-like data; raises ValidationError and changes nothing on bad input."""
    email = normalize_email(str(data.get("email", "")))
    clash = session.scalar(select(Contact.id).where(Contact.email == email))
    if clash is not None and (contact is None or clash != contact.id):
        raise ValidationError(f"{email} is already in the contact list", field="email")
    birthday = _parse_birthday(data.get("birthday"))
    country = str(data.get("country", "") or "").strip().upper()
    if country and (len(country) != 2 or not country.isalpha()):
        raise ValidationError("country must be a two-letter code such as DE or US", field="country")
    if contact is None:
        contact = Contact(email=email, status=suppressed_status(session, email) or ContactStatus.SUBSCRIBED,
                          consent_source=consent_source, consent_at=utcnow(), attributes={})
        session.add(contact)
    contact.email = email
    for name in EDITABLE_FIELDS:
        if name in data:
            value = str(data[name] or "").strip()
            setattr(contact, name, value.upper() if name == "country" else value)
    if not contact.timezone:
        contact.timezone = "UTC"
    contact.birthday = birthday
    if "attributes" in data and isinstance(data["attributes"], Mapping):
        contact.attributes = dict(data["attributes"])
    if topic_ids is not None:
        set_subscriptions(session, contact, topic_ids)
    if interests is not None:
        wanted = {i.strip().lower() for i in interests if i and i.strip()}
        contact.interests = [ContactInterest(interest=i) for i in sorted(wanted)]
    session.flush()
    return contact


def set_subscriptions(session: Session, contact: Contact, topic_ids: Iterable[int]) -> None:
    """Subscribe the contact to exactly these topics, keeping rows of the others as unsubscribed (history)."""
    wanted = set(topic_ids)
    existing = {s.topic_id: s for s in contact.subscriptions}
    known = set(session.scalars(select(Topic.id).where(Topic.id.in_(wanted)))) if wanted else set()
    if wanted - known:
        raise ValidationError("unknown topic", field="topics")
    for topic_id, sub in existing.items():
        sub.subscribed = topic_id in wanted
    for topic_id in wanted - existing.keys():
        contact.subscriptions.append(Subscription(topic_id=topic_id, subscribed=True))


@dataclass(frozen=True)
class ContactPage:
    """One page of contacts and the cursor of the next one."""

    contacts: list[Contact]
    next_after: int | None


def list_contacts(session: Session, *, query: str = "", after: int = 0, limit: int = 50,
                  status: str = "") -> ContactPage:
    """Contacts ordered by id after a cursor (keyset pagination: the same cost on page 1 and page 20,000)."""
    stmt = select(Contact).where(Contact.id > after).order_by(Contact.id).limit(limit + 1)
    q = query.strip().lower()
    if q:
        if "@" in q:
            stmt = stmt.where(Contact.email.startswith(q, autoescape=True))
        else:
            like = f"{q}%"
            stmt = stmt.where(or_(Contact.email.startswith(q, autoescape=True),
                                  func.lower(Contact.first_name).like(like),
                                  func.lower(Contact.last_name).like(like)))
    if status:
        stmt = stmt.where(Contact.status == status)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return ContactPage(rows, rows[-1].id if more and rows else None)


def count_contacts(session: Session) -> dict[str, int]:
    """Number of contacts per status."""
    return dict(session.execute(select(Contact.status, func.count()).group_by(Contact.status)).all())


def personalization(contact: Contact, interests: Iterable[str] = ()) -> dict[str, Any]:
    """The `contact` variable templates see: profile fields plus custom attributes (fields win on clashes)."""
    data: dict[str, Any] = dict(contact.attributes or {})
    data.update(
        email=contact.email, first_name=contact.first_name, last_name=contact.last_name,
        full_name=contact.full_name, phone=contact.phone, city=contact.city, region=contact.region,
        postal_code=contact.postal_code, country=contact.country, locale=contact.locale,
        birthday=contact.birthday.isoformat() if contact.birthday else "", interests=list(interests),
    )
    return data
