"""API: contacts — upsert by email, read, update, erase (GDPR), list with a keyset cursor, bulk upsert."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from flask import url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.contacts import birthdays, exports, records
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import ApiScope, Contact, ContactStatus, Order, Segment, Topic
from campaigns.web.api.blueprint import bp
from campaigns.web.api.guard import caller
from campaigns.web.api.schemas import (
    BulkError,
    BulkResult,
    BulkUpsert,
    ContactFields,
    ContactOut,
    ContactPage,
    ContactPatch,
    ContactQuery,
    ContactUpsert,
    LifetimeValue,
    decode_cursor,
    encode_cursor,
)
from campaigns.web.api.spec import API_PREFIX, operation
from campaigns.web.context import db

TAG = "Contacts"
NO_RESUBSCRIBE = (ContactStatus.UNSUBSCRIBED, ContactStatus.BOUNCED, ContactStatus.COMPLAINED)


def totals(session: Session, contact_ids: Sequence[int]) -> dict[int, list[LifetimeValue]]:
    """Lifetime value per currency of each contact, in one query (sums of exact decimals)."""
    out: dict[int, list[LifetimeValue]] = {cid: [] for cid in contact_ids}
    if not contact_ids:
        return out
    rows = session.execute(select(Order.contact_id, Order.currency, func.sum(Order.amount), func.count(Order.id))
                           .where(Order.contact_id.in_(list(contact_ids)))
                           .group_by(Order.contact_id, Order.currency).order_by(Order.contact_id, Order.currency))
    for cid, currency, total, n in rows:
        out[cid].append(LifetimeValue(currency=currency, orders=n,
                                      total=Decimal(str(total or 0)).quantize(Decimal("0.01"))))
    return out


def contact_out(contact: Contact, values: list[LifetimeValue]) -> ContactOut:
    return ContactOut(
        id=contact.id, email=contact.email, status=contact.status, first_name=contact.first_name,
        last_name=contact.last_name, phone=contact.phone, address_line1=contact.address_line1,
        address_line2=contact.address_line2, city=contact.city, region=contact.region,
        postal_code=contact.postal_code, country=contact.country, birthday=birthdays.text(contact.birthday) or None,
        timezone=contact.timezone, locale=contact.locale, attributes=dict(contact.attributes or {}),
        interests=sorted(i.interest for i in contact.interests),
        topic_ids=sorted(s.topic_id for s in contact.subscriptions if s.subscribed),
        consent_source=contact.consent_source, consent_at=contact.consent_at, created_at=contact.created_at,
        updated_at=contact.updated_at, order_count=sum(v.orders for v in values), lifetime_value=values,
        tier=contact.tier or "")


def one(session: Session, contact: Contact) -> ContactOut:
    return contact_out(contact, totals(session, [contact.id])[contact.id])


def _form(contact: Contact | None, fields: ContactFields, email: str) -> dict[str, Any]:
    """save_contact's form-like data: the contact's current values, overlaid with the fields sent."""
    data: dict[str, Any] = {}
    if contact is not None:
        data = {name: getattr(contact, name) for name in records.EDITABLE_FIELDS}
        data["birthday"] = contact.birthday
    sent = fields.model_dump(exclude_unset=True, exclude={"interests", "topic_ids", "status", "email"})
    data.update({k: ("" if v is None and k != "birthday" else v) for k, v in sent.items()})
    data["email"] = email
    return data


def _check_topics(session: Session, topic_ids: Sequence[int] | None) -> None:
    if topic_ids:
        known = set(session.scalars(select(Topic.id).where(Topic.id.in_(set(topic_ids)))))
        missing = sorted(set(topic_ids) - known)
        if missing:
            raise ValidationError(f"there is no topic {missing[0]}", field="topic_ids")


def _status(contact: Contact, wanted: str | None, created: bool) -> None:
    """Apply the status the API asked for. Unsubscribing is always allowed; subscribing only for a contact this
    request created (and whose address is not suppressed) or one who never left: consent given by the contact
    (unsubscribe, complaint) or facts (bounces) are not the integration's to overrule."""
    if wanted is None or wanted == contact.status:
        return
    if wanted == ContactStatus.SUBSCRIBED and (contact.status in NO_RESUBSCRIBE and not created):
        raise InvalidState(f"{contact.email} is {contact.status}: only the contact can subscribe again "
                           "(preference center or a sign-up form)")
    if wanted == ContactStatus.SUBSCRIBED and records.suppressed_status(db(), contact.email) is not None:
        raise InvalidState(f"{contact.email} is suppressed (bounced, complained or erased) and stays unsubscribed")
    contact.status = ContactStatus(wanted)


def save(session: Session, fields: ContactFields, email: str, contact: Contact | None) -> tuple[Contact, bool]:
    """Create or update one contact from API fields (flushed, not committed); True when it was created."""
    _check_topics(session, fields.topic_ids)
    created = contact is None
    saved = records.save_contact(session, _form(contact, fields, email), contact, topic_ids=fields.topic_ids,
                                 interests=fields.interests, consent_source=f"api: {caller().name}"[:200])
    _status(saved, fields.status, created and saved.status == ContactStatus.SUBSCRIBED)
    session.flush()
    return saved, created


def by_email(session: Session, raw: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.email == records.normalize_email(raw)))


@operation(bp, "POST", f"{API_PREFIX}/contacts", tag=TAG, summary="Create or update a contact by email",
           scope=ApiScope.CONTACTS_WRITE, body=ContactUpsert, response=ContactOut, status=200,
           extra_responses={201: ("Created", ContactOut)}, errors=(409,))
def contact_upsert(body: ContactUpsert):
    """Creates the contact (201) or updates the one with this email (200); fields left out stay as they are."""
    session = db()
    contact, created = save(session, body, body.email, by_email(session, body.email))
    session.commit()
    headers = {"Location": url_for("api.contact_get", contact_id=contact.id)}
    return one(session, contact), 201 if created else 200, headers


@operation(bp, "GET", f"{API_PREFIX}/contacts", tag=TAG, summary="List contacts (keyset pages, filters)",
           scope=ApiScope.CONTACTS_READ, query=ContactQuery, response=ContactPage)
def contact_list(query: ContactQuery):
    """Contacts in id order. Pass next_cursor as cursor for the next page; it is null on the last page."""
    session = db()
    if query.segment_id is not None and session.get(Segment, query.segment_id) is None:
        raise ValidationError(f"there is no segment {query.segment_id}", field="segment_id")
    page = records.list_contacts(session, query=query.q or "", after=decode_cursor(query.cursor), limit=query.limit,
                                 status=query.status or "", segment_id=query.segment_id)
    values = totals(session, [c.id for c in page.contacts])
    return ContactPage(data=[contact_out(c, values[c.id]) for c in page.contacts],
                       next_cursor=encode_cursor(page.next_after))


@operation(bp, "GET", f"{API_PREFIX}/contacts/<int:contact_id>", tag=TAG, summary="Read a contact",
           scope=ApiScope.CONTACTS_READ, response=ContactOut)
def contact_get(contact_id: int):
    session = db()
    return one(session, records.get_contact(session, contact_id))


@operation(bp, "PATCH", f"{API_PREFIX}/contacts/<int:contact_id>", tag=TAG, summary="Update a contact",
           scope=ApiScope.CONTACTS_WRITE, body=ContactPatch, response=ContactOut, errors=(409,))
def contact_update(contact_id: int, body: ContactPatch):
    """Changes only the fields sent."""
    session = db()
    contact = records.get_contact(session, contact_id)
    save(session, body, body.email or contact.email, contact)
    session.commit()
    return one(session, contact)


@operation(bp, "DELETE", f"{API_PREFIX}/contacts/<int:contact_id>", tag=TAG, status=204,
           summary="Erase a contact (GDPR)", scope=ApiScope.CONTACTS_WRITE)
def contact_delete(contact_id: int):
    """Deletes the contact with its events, sends, orders and subscriptions. Only a hash of the address stays on
    the suppression list, so it is never mailed again (even if imported later). Cannot be undone."""
    session = db()
    exports.erase_contact(session, contact_id, by=f"api: {caller().name}")
    session.commit()
    return None


@operation(bp, "POST", f"{API_PREFIX}/contacts/bulk", tag=TAG, summary="Create or update up to 10,000 contacts",
           scope=ApiScope.CONTACTS_WRITE, body=BulkUpsert, response=BulkResult)
def contact_bulk(body: BulkUpsert):
    """Upserts each contact by email like POST /contacts. Invalid entries are reported by index and skipped; the
    valid ones are saved in one transaction. An email given twice is an error for its later entries."""
    session = db()
    created = updated = 0
    errors: list[BulkError] = []
    seen: set[str] = set()
    for index, item in enumerate(body.contacts):
        try:
            email = records.normalize_email(item.email)
            if email in seen:
                raise ValidationError(f"{email} appears earlier in this request", field="email")
            seen.add(email)
            with session.begin_nested():
                _contact, was_created = save(session, item, email, by_email(session, email))
            created += was_created
            updated += not was_created
        except (ValidationError, InvalidState) as exc:
            errors.append(BulkError(index=index, email=item.email[:320], field=getattr(exc, "field", None),
                                    message=str(exc)))
    session.commit()
    return BulkResult(created=created, updated=updated, failed=len(errors), errors=errors)

