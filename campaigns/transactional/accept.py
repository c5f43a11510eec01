"""Accepting a transactional message: the template, the recipient, the variables and files, checked; the row
written and its job queued on the transactional queue once the caller commits.

The recipient rule (docs/api.md): an address that is not yet a contact becomes one *without marketing consent*
(status unsubscribed, like a buyer recorded from an order), so a receipt never adds anyone to newsletters. An
address that bounced, complained or is on the suppression list gets no mail: the message is recorded as
`suppressed` with the reason and never queued. Unsubscribed contacts do get transactional mail (a receipt is not
marketing); the contact policy's caps do not apply to it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import RedisError
from rq import Queue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns import queueing
from campaigns.addresses import normalize_email
from campaigns.contacts.suppression import suppressed_status
from campaigns.errors import NotFound, ValidationError
from campaigns.models import Campaign, CampaignKind, Contact, ContactStatus, TxMessage, TxStatus
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.sending.committed import when_committed
from campaigns.transactional import files as tx_files

logger = logging.getLogger(__name__)
MAX_VARIABLES_BYTES = 32 * 1024      # the variables as JSON
MAX_VARIABLES = 100
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# What every message's template already sees (campaigns.sending.delivery.CampaignMailer.message): a variable may
# not hide them. Names starting with "_" are the renderer's own and fail the pattern above.
RESERVED = frozenset({"contact", "sender", "unsubscribe_url", "preferences_url", "coupon", "survey", "survey_url",
                      "survey_block", "digest", "loop", "range", "dict", "lipsum", "cycler", "joiner", "namespace"})
NO_CONSENT_SOURCE = "transactional mail (no marketing consent)"


@dataclass(frozen=True)
class Request:
    template: int | str               # a campaign id or slug
    to: str
    to_name: str = ""
    variables: Mapping[str, Any] | None = None
    attachments: Sequence[Mapping[str, Any]] = ()


def public_id() -> str:
    return "tx_" + secrets.token_urlsafe(18)


def template(session: Session, ref: int | str) -> Campaign:
    """The transactional campaign with this id or slug (404 otherwise; 422 for a campaign of another kind)."""
    if isinstance(ref, int):
        campaign = session.get(Campaign, ref)
    else:
        campaign = session.scalar(select(Campaign).where(Campaign.slug == ref.strip().lower()))
    if campaign is None:
        raise NotFound(f"there is no transactional template {ref!r}")
    if campaign.kind != CampaignKind.TRANSACTIONAL:
        raise ValidationError(f"campaign {campaign.id} is a {campaign.kind} campaign; only transactional "
                              "campaigns can be sent through this API", field="template")
    if campaign.coupon_pool_id is not None or campaign.survey_id is not None:
        raise ValidationError("this template hands out a coupon or a survey, which transactional messages do "
                              "not support; remove it from the campaign", field="template")
    return campaign


def check_variables(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Names that are identifiers and hide nothing, at most MAX_VARIABLES_BYTES of JSON."""
    variables = dict(raw or {})
    if len(variables) > MAX_VARIABLES:
        raise ValidationError(f"at most {MAX_VARIABLES} variables", field="variables")
    for name in variables:
        if not NAME.fullmatch(name):
            raise ValidationError(f"{name[:70]!r} is not a variable name (a letter, then letters, digits or _; "
                                  "at most 64)", field=f"variables.{name[:70]}")
        if name in RESERVED:
            raise ValidationError(f"{name!r} is a name templates already use; choose another",
                                  field=f"variables.{name}")
    if len(json.dumps(variables, ensure_ascii=False).encode("utf-8")) > MAX_VARIABLES_BYTES:
        raise tx_files.TooLarge(f"the variables are larger than {MAX_VARIABLES_BYTES // 1024} KB as JSON",
                                field="variables")
    return variables


def blocked(contact: Contact, suppressed: ContactStatus | None) -> str:
    """Why no mail may go to this contact now ("" when it may); suppressed: its address's suppression status."""
    if contact.status in (ContactStatus.BOUNCED, ContactStatus.COMPLAINED):
        return f"the address {contact.status}: no mail goes to it"
    if suppressed is not None:
        return f"the address is on the suppression list ({suppressed})"
    return ""


def recipient(session: Session, email: str, name: str, suppressed: ContactStatus | None) -> Contact:
    """The contact with this (normalized) address, created without marketing consent when there is none (a
    concurrent request creating the same one is found instead)."""
    contact = session.scalar(select(Contact).where(Contact.email == email))
    if contact is not None:
        return contact
    first, _, last = " ".join(name.split()).partition(" ")
    try:
        with session.begin_nested():
            contact = Contact(email=email, first_name=first[:200], last_name=last[:200], timezone="UTC",
                              status=suppressed or ContactStatus.UNSUBSCRIBED, consent_source=NO_CONSENT_SOURCE,
                              consent_at=None, attributes={})
            session.add(contact)
            session.flush()
    except IntegrityError:
        contact = session.scalar(select(Contact).where(Contact.email == email))
        if contact is None:
            raise ValidationError("the recipient could not be recorded; retry", field="to") from None
    return contact


def accept(rt: Runtime, session: Session, req: Request, *, api_key_id: int | None = None) -> TxMessage:
    """Check the request, write the message (flushed) and queue its delivery for when the caller commits.

    Raises NotFound (template), ValidationError / files.TooLarge (input). A blocked recipient is no error: the
    message is written as suppressed, with the reason, and not queued.
    """
    email = normalize_email(req.to)
    campaign = template(session, req.template)
    variables = check_variables(req.variables)
    attached = tx_files.check(req.attachments)
    suppressed = suppressed_status(session, email)
    contact = recipient(session, email, req.to_name, suppressed)
    reason = blocked(contact, suppressed)
    message = TxMessage(public_id=public_id(), campaign_id=campaign.id, contact_id=contact.id, email=email,
                        api_key_id=api_key_id, variables=variables,
                        attachments=tx_files.described(tx_files.stored(attached)) if reason
                        else tx_files.stored(attached),
                        status=TxStatus.SUPPRESSED if reason else TxStatus.QUEUED, reason=reason, attempts=0,
                        smtp_reply="", subject="")
    session.add(message)
    session.flush()
    if not reason:
        queue, tx_id = rt.tx_queue, message.id
        when_committed(session, lambda: enqueue(queue, tx_id))
    return message


def enqueue(queue: Queue, tx_id: int) -> None:
    """Queue one message's delivery. The row is stored by then: if Redis is away, resume_due queues it later."""
    try:
        queueing.enqueue(queue, Job.SEND_TRANSACTIONAL, tx_id)
    except RedisError:
        logger.warning("transactional message %s not queued now (Redis unavailable); resume_due will", tx_id)


def find(session: Session, message_id: str) -> TxMessage:
    message = session.scalar(select(TxMessage).where(TxMessage.public_id == message_id))
    if message is None:
        raise NotFound("there is no transactional message with this id")
    return message
