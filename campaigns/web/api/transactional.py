"""API: transactional messages — send one (a receipt, a notice) from a transactional template, read its status."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from campaigns.errors import NotFound
from campaigns.models import ApiScope, Campaign, TxMessage, TxStatus
from campaigns.transactional import accept, files, tracking
from campaigns.web.api.blueprint import bp
from campaigns.web.api.guard import caller
from campaigns.web.api.problems import ApiProblem
from campaigns.web.api.schemas import Email, Id, Input
from campaigns.web.api.spec import API_PREFIX, operation
from campaigns.web.context import db, rt

Slug = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class TxAttachmentIn(Input):
    filename: str = Field(min_length=1, max_length=150, description="As the recipient sees it, e.g. invoice.pdf; "
                                                                    "its extension must fit the content type")
    content_type: str = Field(max_length=100, description="application/pdf, image/png, image/jpeg, image/gif, "
                                                          "text/plain, text/csv or text/calendar")
    content: str = Field(description=f"The file, base64; at most {files.MAX_FILE_BYTES // 2**20} MB decoded, "
                                     f"{files.MAX_TOTAL_BYTES // 2**20} MB for all files of a message")


class TxIn(Input):
    template: Id | Slug = Field(description="The transactional campaign: its id, or its API name (slug)")
    to: Email = Field(description="The recipient; not yet a contact: added without marketing consent")
    to_name: str = Field(default="", max_length=200, description="The recipient's name, for a new contact")
    variables: dict[str, Any] = Field(default_factory=dict, description=(
        "Template variables: {{ order_number }} in the template. Names are identifiers; at most "
        f"{accept.MAX_VARIABLES} and {accept.MAX_VARIABLES_BYTES // 1024} KB as JSON"))
    attachments: list[TxAttachmentIn] = Field(default_factory=list, max_length=files.MAX_FILES)


class TxAttachmentOut(BaseModel):
    filename: str
    content_type: str
    size: int


class TxTracking(BaseModel):
    machine: bool = Field(description="Whether machine opens and clicks (image proxies, scanners) are counted")
    opens: int = Field(description="Opens of this message (a click without a recorded open counts as one)")
    clicks: int
    first_opened_at: dt.datetime | None
    first_clicked_at: dt.datetime | None


class TxStatusQuery(Input):
    machine: bool = Field(default=False, description="Count machine opens and clicks too (default: people only)")


class TxOut(BaseModel):
    message_id: str = Field(description="Read the status back at /api/v1/tx/{message_id}")
    status: TxStatus = Field(description="queued, sending, sent, failed, suppressed (never sent: the address "
                                         "bounced, complained or is suppressed), bounced (the relay refused the "
                                         "recipient), unknown (handed over without a reply)")
    reason: str = Field(description="Why it was suppressed, failed or is being retried")
    template_id: int | None
    template: str | None = Field(description="The template's API name")
    to: str
    contact_id: int | None
    attempts: int
    smtp_code: int | None = Field(description="The relay's last reply code")
    smtp_reply: str = Field(description="The relay's last reply")
    subject: str = Field(description="As sent")
    attachments: list[TxAttachmentOut]
    created_at: dt.datetime
    updated_at: dt.datetime
    sent_at: dt.datetime | None
    next_attempt_at: dt.datetime | None = Field(description="When a message being retried is tried again")
    tracking: TxTracking = Field(description="Its opens and clicks, recorded per message")


def tx_out(m: TxMessage, slug: str | None, seen: tracking.Engagement | None = None, machine: bool = False) -> TxOut:
    seen = seen or tracking.Engagement()
    return TxOut(message_id=m.public_id, status=m.status, reason=m.reason, template_id=m.campaign_id,
                 template=slug, to=m.email, contact_id=m.contact_id, attempts=m.attempts, smtp_code=m.smtp_code,
                 smtp_reply=m.smtp_reply, subject=m.subject,
                 attachments=[TxAttachmentOut(**a) for a in files.described(m.attachments or [])],
                 created_at=m.created_at, updated_at=m.updated_at or m.created_at, sent_at=m.sent_at,
                 next_attempt_at=m.next_attempt_at,
                 tracking=TxTracking(machine=machine, opens=seen.opens, clicks=seen.clicks,
                                     first_opened_at=seen.first_opened_at, first_clicked_at=seen.first_clicked_at))


@operation(bp, "POST", f"{API_PREFIX}/tx", tag="Transactional", summary="Send a transactional message",
           scope=ApiScope.SEND_TRANSACTIONAL, body=TxIn, response=TxOut, status=202, errors=(404, 413))
def tx_send(body: TxIn):
    """Renders the transactional template for one recipient with the variables and attachments, DKIM-signed,
    on a queue workers take before any campaign's batches. Answers at once with the message id (202); the status
    says `queued`, or `suppressed` when the address bounced, complained or is suppressed (nothing is sent then).
    Send an Idempotency-Key so a retried call never sends twice."""
    session = db()
    try:
        message = accept.accept(rt(), session, accept.Request(
            template=body.template, to=body.to, to_name=body.to_name, variables=body.variables,
            attachments=[a.model_dump() for a in body.attachments]), api_key_id=caller().id)
    except files.TooLarge as exc:
        raise ApiProblem(413, str(exc), errors=[{"field": exc.field or "attachments", "message": str(exc)}]) from None
    slug = session.get(Campaign, message.campaign_id).slug
    session.commit()
    return tx_out(message, slug), 202, {"Location": f"{API_PREFIX}/tx/{message.public_id}"}


@operation(bp, "GET", f"{API_PREFIX}/tx/<string:message_id>", tag="Transactional",
           summary="A transactional message's status", scope=ApiScope.SEND_TRANSACTIONAL, query=TxStatusQuery,
           response=TxOut)
def tx_status(message_id: str, query: TxStatusQuery):
    """Where the message is: queued, sent (with the relay's reply and time), failed, suppressed, bounced… and
    its opens and clicks (`tracking`: people only, unless `machine=true`). A key reads the messages it sent; a key
    that also has `contacts:read` (which reads every contact's events anyway) reads any message."""
    session = db()
    message = accept.find(session, message_id)
    key = caller()
    if message.api_key_id != key.id and ApiScope.CONTACTS_READ not in key.scopes:
        # Another integration's message (a recipient's address, subject, engagement): as if there were none.
        raise NotFound("there is no transactional message with this id")
    campaign = session.get(Campaign, message.campaign_id) if message.campaign_id else None
    seen = tracking.engagement(session, [message.id], machine=query.machine).get(message.id)
    return tx_out(message, campaign.slug if campaign else None, seen, query.machine)
