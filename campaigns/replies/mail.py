"""The mail Rapport sends about a reply, through the same DKIM signer and SMTP relay as every campaign message:

* the forward: to the contact's owner (their sender identity's address) or REPLY_FORWARD_TO, From the customer's
  name via Rapport's own domain (so DKIM and DMARC align) with Reply-To the customer, so the owner answers from their
  own mail client;
* the answer written in the admin: a personal mail From the chosen sender to the contact, threaded under the reply
  with In-Reply-To and References.

Both are owed as a state on the Reply row (MailState.PENDING) and sent by `send_due`, which the ingest commands call
right after their commit and the periodic `reply_mail` job calls as the safety net; a failure is retried up to
MAX_MAIL_ATTEMPTS times, a permanent refusal fails at once (Reply.last_error says why).

One sender per reply, on every database: a sender first *claims* the reply with one conditional UPDATE (a mail
still pending, no live lease) and goes on only when that changed the row, so the ingest's immediate forward and
the periodic job never both send it. The claim is a lease (LEASE), committed before the SMTP conversation (no
transaction is held while talking to the relay) and cleared with the outcome; a sender that died mid-way leaves
an expired lease, and the next run retries the mail.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import logging
import time
from collections.abc import Sequence

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.models import Campaign, Contact, MailState, Reply, ReplyStatus, Sender, utcnow
from campaigns.runtime import Runtime
from mailer.message import MessageTemplate, format_address, format_date, serialize
from mailer.transport import DeliveryError

logger = logging.getLogger(__name__)

MAX_MAIL_ATTEMPTS = 5
FORWARD_LOCAL_PART = "replies"      # From: "<customer> via <sender name>" <replies@DKIM_DOMAIN>
LEASE = dt.timedelta(minutes=5)     # a claim older than this belongs to a dead sender (SMTP timeouts are shorter)


def _html(text: str) -> str:
    return ('<!doctype html><html><body><div style="white-space:pre-wrap;font-family:sans-serif">'
            f"{html.escape(text)}</div></body></html>")


def _message_id(kind: str, reply_id: int, settings: Settings) -> str:
    digest = hashlib.blake2s(f"{kind}:{reply_id}:{time.time_ns()}".encode(), digest_size=10).hexdigest()
    return f"<{kind}.{reply_id}.{digest}@{settings.dkim_domain}>"


def forward_target(session: Session, settings: Settings, reply: Reply) -> str:
    """Where a reply is forwarded: the contact's owner, else REPLY_FORWARD_TO, else '' (nobody)."""
    contact = session.get(Contact, reply.contact_id) if reply.contact_id else None
    owner = session.get(Sender, contact.owner_id) if contact is not None and contact.owner_id else None
    return owner.email if owner is not None else settings.reply_forward_to


def forward_message(session: Session, settings: Settings, reply: Reply, to: str) -> tuple[list, bytes]:
    """Headers and body of the forward of reply to `to`."""
    who = reply.from_name or reply.from_email
    campaign = session.get(Campaign, reply.campaign_id) if reply.campaign_id else None
    about = f"replied to “{campaign.name}”" if campaign is not None else "wrote to you"
    text = (f"{reply.text}\n\n-- \n{who} <{reply.from_email}> {about} on {reply.received_at:%Y-%m-%d %H:%M} UTC.\n"
            f"Answer with your mail client (the answer goes to {reply.from_email}) or in Rapport: "
            f"{settings.base_url}/admin/replies/{reply.id}\n")
    if reply.original_text and reply.original_text.strip() != reply.text.strip():
        text += f"\n----- The whole message -----\n{reply.original_text}\n"
    template = MessageTemplate.create(
        from_name=f"{who} via {settings.sender_name}", from_email=f"{FORWARD_LOCAL_PART}@{settings.dkim_domain}",
        reply_to=format_address(reply.from_name, reply.from_email))
    return template.build(
        to_name="", to_email=to, subject=reply.subject or f"Reply from {who}",
        message_id=_message_id("fwd", reply.id, settings), date=format_date(time.time()), text=text,
        html=_html(text), extra=(("Auto-Submitted", "auto-forwarded"), ("X-Rapport-Reply", str(reply.id))))


def answer_message(session: Session, settings: Settings, reply: Reply) -> tuple[str, list, bytes]:
    """(recipient, headers, body) of the answer written in the admin, threaded under the reply."""
    contact = session.get(Contact, reply.contact_id) if reply.contact_id else None
    sender = session.get(Sender, reply.answer_sender_id) if reply.answer_sender_id else None
    if contact is None or sender is None:
        raise LookupError("the contact or the sender of this answer no longer exists")
    subject = reply.subject if reply.subject.lower().startswith(("re:", "aw:", "sv:")) else f"Re: {reply.subject}"
    quoted = "\n".join(f"> {line}" for line in (reply.text or "").splitlines())
    text = (f"{reply.answer_text}\n\nOn {reply.received_at:%Y-%m-%d %H:%M} UTC, "
            f"{reply.from_name or reply.from_email} wrote:\n{quoted}\n")
    template = MessageTemplate.create(from_name=sender.name, from_email=sender.email,
                                      reply_to=sender.reply_to or "")
    thread = [("In-Reply-To", reply.message_id)] if reply.message_id else []
    refs = [r for r in [*reply.references.split(), reply.message_id] if r][-10:]
    if refs:
        thread.append(("References", " ".join(dict.fromkeys(refs))))
    headers, body = template.build(
        to_name=contact.full_name, to_email=contact.email, subject=subject,
        message_id=_message_id("ans", reply.id, settings), date=format_date(time.time()), text=text,
        html=_html(text), extra=thread)
    return contact.email, headers, body


def _send(rt: Runtime, to: str, headers: list, body: bytes) -> None:
    signer = rt.signer
    prefix = signer.sign(headers, body) if signer is not None else b""
    rt.relays.pool(None).send(f"bounces@{rt.settings.return_domain}", [to], serialize(headers, body, prefix))


def _failed(reply: Reply, exc: Exception, permanent: bool) -> MailState:
    reply.mail_attempts += 1
    reply.last_error = str(exc)[:1000]
    give_up = permanent or reply.mail_attempts >= MAX_MAIL_ATTEMPTS
    logger.warning("reply %s: mail %s: %s", reply.id, "failed for good" if give_up else "will be retried", exc)
    return MailState.FAILED if give_up else MailState.PENDING


def _owed(session: Session, settings: Settings, reply: Reply, kind: str) -> tuple[str, list, bytes] | None:
    """(recipient, headers, body) of the forward or answer the reply owes, or None (nothing owed, or it cannot be
    sent: the state says why)."""
    if kind == "forward":
        if reply.forward_state != MailState.PENDING:
            return None
        to = reply.forward_to or forward_target(session, settings, reply)
        if not to:
            reply.forward_state = MailState.NONE
            reply.last_error = "no owner and no REPLY_FORWARD_TO: not forwarded"
            return None
        reply.forward_to = to
        return (to, *forward_message(session, settings, reply, to))
    if reply.answer_state != MailState.PENDING:
        return None
    try:
        return answer_message(session, settings, reply)
    except LookupError as exc:
        reply.answer_state = _failed(reply, exc, True)
        return None


def _send_one(rt: Runtime, reply_id: int) -> int:
    """Send what the claimed reply owes (forward, answer) and record the states; returns mails sent. No
    transaction is open while the relay is spoken to (on SQLite it would hold the database's write lock)."""
    went = 0
    for kind in ("forward", "answer"):
        with rt.session_factory() as session:
            reply = session.get(Reply, reply_id)
            mail = _owed(session, rt.settings, reply, kind) if reply is not None else None
            session.commit()
        if mail is None:
            continue
        error: tuple[Exception, bool] | None = None
        try:
            _send(rt, *mail)
        except DeliveryError as exc:
            error = (exc, exc.permanent)
        except OSError as exc:
            error = (exc, False)
        with rt.session_factory() as session:
            reply = session.get(Reply, reply_id)
            if reply is None:
                continue
            state = _failed(reply, *error) if error else MailState.SENT
            if kind == "forward":
                reply.forward_state = state
            else:
                reply.answer_state = state
                if state == MailState.SENT:
                    reply.status = ReplyStatus.ANSWERED
            session.commit()
        went += error is None
    return went


def claim(session: Session, reply_id: int) -> bool:
    """Take the reply for sending the mail it owes: True for exactly one caller until its lease expires, on SQLite
    as on PostgreSQL (one conditional UPDATE; rowcount 1 wins). The caller commits the claim before sending."""
    now = utcnow()
    owed = or_(Reply.forward_state == MailState.PENDING, Reply.answer_state == MailState.PENDING)
    free = or_(Reply.mail_lease_until.is_(None), Reply.mail_lease_until < now)
    return session.execute(update(Reply).where(Reply.id == reply_id, owed, free)
                           .values(mail_lease_until=now + LEASE)
                           .execution_options(synchronize_session=False)).rowcount == 1


def send_due(rt: Runtime, reply_ids: Sequence[int] | None = None, *, limit: int = 200) -> int:
    """Send the forwards and answers owed (of these replies, or all); returns mails sent. Each reply is claimed
    first (claim: one sender per reply) and its state committed right after its mail went, so a crash resends at
    most the one in flight, once its lease ran out."""
    with rt.session_factory() as session:
        stmt = select(Reply.id).where(or_(Reply.forward_state == MailState.PENDING,
                                          Reply.answer_state == MailState.PENDING)).order_by(Reply.id).limit(limit)
        if reply_ids is not None:
            stmt = stmt.where(Reply.id.in_(list(reply_ids)))
        due = list(session.scalars(stmt))
    sent = 0
    for reply_id in due:
        with rt.session_factory() as session:
            if not claim(session, reply_id):   # another sender has it, or it was sent meanwhile
                session.rollback()
                continue
            session.commit()
        try:
            sent += _send_one(rt, reply_id)
        finally:
            with rt.session_factory() as session:
                session.execute(update(Reply).where(Reply.id == reply_id).values(mail_lease_until=None)
                                .execution_options(synchronize_session=False))
                session.commit()
    if due:
        logger.info("reply mail: %d mails sent for %d due replies", sent, len(due))
    return sent


def send_now(rt: Runtime, reply_id: int) -> None:
    """Right after a reply was committed: forward it now. Never raises: what fails is left to the reply_mail job."""
    try:
        send_due(rt, [reply_id])
    except Exception:
        logger.warning("reply %s: forwarding now failed; the reply_mail job will retry", reply_id, exc_info=True)
