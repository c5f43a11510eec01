"""Recording a shop's orders: map the buyer to a contact by email, add the order once, keep totals exact.

Consent rule (docs/api.md): an order is not consent to marketing. A buyer who is not yet a contact is added as a
customer with status "unsubscribed" (no marketing mail, no topics) unless the order says they opted in to
marketing, in which case they are added as "subscribed" with the order as the consent record. An existing contact's
status is never lowered by an order, and an opt-in only lifts a contact that an earlier order added without
consent: someone who unsubscribed, bounced or complained stays as they are. Suppressed addresses keep their status.

Idempotency: (source, external_id) is unique on the order table. Recording an order a second time (a retried
webhook, a replayed API call) finds the first one and changes nothing, so lifetime value and order count (sums
over the order rows, campaigns.contacts.records.order_totals) stay exact.

Loyalty tier: a new order recomputes the buyer's tier in the same transaction (campaigns.orders.tiers).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.contacts import records
from campaigns.errors import ValidationError
from campaigns.models import Contact, ContactStatus, Order, OrderSource, OrderTag, utcnow
from campaigns.orders import tiers

logger = logging.getLogger(__name__)

MAX_AMOUNT = Decimal("9999999999.99")       # Numeric(12, 2)
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_TAGS = 50
NO_CONSENT_SOURCE = "order (no marketing consent)"


@dataclass(frozen=True)
class OrderInput:
    """One order as a shop reports it, before validation."""

    source: OrderSource
    email: str
    amount: str | Decimal | int | float
    currency: str = "EUR"
    external_id: str | None = None
    ordered_at: dt.datetime | None = None
    reference: str = ""
    accepts_marketing: bool = False
    first_name: str = ""
    last_name: str = ""
    # Product tags (a product's tag, category or SKU): what a post-purchase automation's product filter matches.
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recorded:
    """The order row, and whether this call created it (False: it was there already)."""

    order: Order
    created: bool
    contact_created: bool


def parse_amount(raw: object) -> Decimal:
    """An exact amount with at most two decimals; floats go through their shortest text form (19.99, not 19.98…)."""
    if isinstance(raw, bool):
        raise ValidationError("the amount is a number such as 19.99", field="amount")
    try:
        amount = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError("the amount is a number such as 19.99", field="amount") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        raise ValidationError(f"the amount is between 0 and {MAX_AMOUNT}", field="amount")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValidationError("the amount has at most two decimals", field="amount")
    return amount.quantize(Decimal("0.01"))


def clean_tags(raw: object) -> list[str]:
    """Product tags as stored: trimmed, lower case, each at most 100 characters, no duplicates, at most 50."""
    if raw is None:
        return []
    if isinstance(raw, str) or not hasattr(raw, "__iter__"):
        raise ValidationError("the product tags are a list of words such as [\"plants\", \"tools\"]", field="tags")
    tags: list[str] = []
    for value in raw:
        if not isinstance(value, str):
            raise ValidationError("each product tag is a text", field="tags")
        tag = " ".join(value.split()).lower()
        if not tag:
            continue
        if len(tag) > 100 or "\x00" in tag:
            raise ValidationError("a product tag is at most 100 characters", field="tags")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"an order has at most {MAX_TAGS} product tags", field="tags")
    return tags


def _clean(item: OrderInput) -> tuple[str, Decimal, str, str | None, dt.datetime]:
    email = records.normalize_email(item.email)
    amount = parse_amount(item.amount)
    currency = (item.currency or "").strip().upper()
    if not CURRENCY.fullmatch(currency):
        raise ValidationError("the currency is a three-letter ISO 4217 code such as EUR", field="currency")
    external = (item.external_id or "").strip() or None
    if external is not None and (len(external) > 100 or "\x00" in external):
        raise ValidationError("the order id is at most 100 characters", field="external_id")
    if len(item.reference or "") > 100 or "\x00" in (item.reference or ""):
        raise ValidationError("the reference is at most 100 characters", field="reference")
    when = item.ordered_at or utcnow()
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when > utcnow() + dt.timedelta(days=1):
        raise ValidationError("the order date is in the future", field="ordered_at")
    return email, amount, currency, external, when


def _existing(session: Session, source: str, external: str | None) -> Order | None:
    if external is None:
        return None
    return session.scalar(select(Order).where(Order.source == source, Order.external_id == external))


def _buyer(session: Session, item: OrderInput, email: str, when: dt.datetime) -> tuple[Contact, bool]:
    """The contact for this email, created or lifted per the consent rule in the module docstring."""
    contact = session.scalar(select(Contact).where(Contact.email == email))
    source = item.source.value or "admin"
    if contact is None:
        suppressed = records.suppressed_status(session, email)
        opted_in = item.accepts_marketing and suppressed is None
        data = {"email": email, "first_name": item.first_name[:200], "last_name": item.last_name[:200]}
        contact = records.save_contact(session, data, consent_source=(f"{source} checkout opt-in" if opted_in
                                                                        else NO_CONSENT_SOURCE))
        if not opted_in:
            contact.status = suppressed or ContactStatus.UNSUBSCRIBED
            contact.consent_at = None
        else:
            contact.consent_at = when
        return contact, True
    if (item.accepts_marketing and contact.status == ContactStatus.UNSUBSCRIBED
            and contact.consent_source == NO_CONSENT_SOURCE and records.suppressed_status(session, email) is None):
        contact.status = ContactStatus.SUBSCRIBED
        contact.consent_source = f"{source} checkout opt-in"
        contact.consent_at = when
    return contact, False


def record_order(session: Session, item: OrderInput) -> Recorded:
    """Add the order (flushed, not committed) or find the one already recorded under the same external id."""
    email, amount, currency, external, when = _clean(item)
    tags = clean_tags(item.tags)
    found = _existing(session, item.source.value, external)
    if found is not None:
        return Recorded(found, False, False)
    contact, contact_created = _buyer(session, item, email, when)
    order = Order(contact_id=contact.id, ordered_at=when, amount=amount, currency=currency,
                  reference=(item.reference or external or "")[:100], source=item.source.value, external_id=external)
    try:
        with session.begin_nested():       # a concurrent delivery of the same order loses here, not with a 500
            session.add(order)
            session.flush()
            session.add_all(OrderTag(order_id=order.id, tag=tag) for tag in tags)
    except IntegrityError:
        found = _existing(session, item.source.value, external)
        if found is None:
            raise
        return Recorded(found, False, False)
    tiers.recompute(session, [contact.id], reason=tiers.REASON_ORDER)   # exact when this order is committed
    logger.info("order %s recorded from %s for contact %s", order.id, item.source.value or "admin", contact.id)
    webhook_events.record(session, webhook_events.EventType.ORDER_RECORDED, {
        "order": {"id": order.id, "ordered_at": when, "amount": str(amount), "currency": currency,
                  "reference": order.reference, "source": order.source, "external_id": external},
        "contact": {"id": contact.id, "email": contact.email}, "contact_created": contact_created})
    return Recorded(order, True, contact_created)


def order_tags(session: Session, order_ids: list[int]) -> dict[int, list[str]]:
    """The product tags of these orders, by order id (alphabetical)."""
    found: dict[int, list[str]] = {i: [] for i in order_ids}
    if order_ids:
        for order_id, tag in session.execute(select(OrderTag.order_id, OrderTag.tag)
                                             .where(OrderTag.order_id.in_(order_ids)).order_by(OrderTag.tag)):
            found[order_id].append(tag)
    return found


def contact_orders(session: Session, contact_id: int, *, after: int | None = None, limit: int = 50) -> list[Order]:
    """One contact's orders, newest id first (keyset: the page after the order with id `after`)."""
    stmt = select(Order).where(Order.contact_id == contact_id)
    if after is not None:
        stmt = stmt.where(Order.id < after)
    return list(session.scalars(stmt.order_by(Order.id.desc()).limit(limit)))
