"""Double opt-in signup, the person's side: the request, the confirmation mail, confirming, and expiry.

Flow (docs/signup.md): the public endpoint validates the form and checks rate limits in Redis, then only enqueues
a job; the job (handle_request: request_signup, then send_confirmation) finds or creates the contact, writes a
pending Signup with a copy of the consent text, and mails a sealed link (Purpose.CONFIRM carrying the signup id and
the day it was issued). Confirming makes the contact subscribed to the chosen topics and turns the row into the
consent record.

No account enumeration: the request path never reads the contact list, so new, pending, subscribed and suppressed
addresses get the same answer in the same time. Whether a mail goes out is decided by the worker:

* new address, unsubscribed contact, or subscribed contact who chose topics they do not have yet → confirmation;
* subscribed contact who already has every chosen topic → nothing (there is nothing to confirm);
* bounced, complained or suppressed address → nothing, ever;
* a pending signup mailed less than RESEND_AFTER ago, or mailed MAX_MAILS times → no further mail.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from redis import Redis
from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.orm import Session

from campaigns import queueing
from campaigns.contacts.records import normalize_email, set_subscriptions
from campaigns.contacts.suppression import suppressed_status
from campaigns.errors import RapportError, ValidationError
from campaigns.models import (
    Contact,
    ContactStatus,
    Event,
    EventType,
    Signup,
    SignupForm,
    SignupStatus,
    Topic,
    utcnow,
)
from campaigns.queueing import Job
from campaigns.runtime import Runtime
from campaigns.signup.forms import is_checked
from mailer.message import MessageTemplate, format_date, serialize
from mailer.ratelimit import RateLimited, RateLimiter
from mailer.tracking import Purpose
from mailer.transport import PermanentFailure

logger = logging.getLogger(__name__)

SIGNUP_TTL = dt.timedelta(days=7)           # an unconfirmed signup expires after this
RESEND_AFTER = dt.timedelta(minutes=10)     # no second confirmation mail to one address sooner
MAX_MAILS = 3                               # confirmation mails per pending signup, at most
IP_PER_HOUR = 20                            # sign-up posts from one IP address
ADDRESS_PER_HOUR = 3                        # sign-up posts naming one address (storm protection)


class RateLimitExceeded(RapportError):
    """Too many sign-ups from one network; try again later."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("Too many sign-ups from your network. Please try again later.")
        self.retry_after = retry_after


class ConsentChanged(ValidationError):
    """The form was loaded with an older consent text than the current one: the person must see the new one."""


# ---------------------------------------------------------------- the public request


@dataclass(frozen=True)
class SignupRequest:
    """What a person submitted, validated; plain values so it can travel to the worker."""

    form_id: int
    email: str
    first_name: str
    topic_ids: list[int]
    consent_version: int
    ip: str
    user_agent: str
    requested_at: str   # ISO 8601

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_request(form: SignupForm, data: Mapping[str, Any], topics: Iterable[str], *, ip: str, user_agent: str,
                  now: dt.datetime | None = None) -> SignupRequest:
    """Validate a submitted form; raises ValidationError (field set) or ConsentChanged."""
    email = normalize_email(str(data.get("email", "") or "")[:320])
    first_name = str(data.get("first_name", "") or "").strip()
    if len(first_name) > 200 or "\x00" in first_name:
        raise ValidationError("the first name is too long", field="first_name")
    offered = {t.id for t in form.topics}
    chosen: set[int] = set()
    for raw in topics:
        try:
            topic_id = int(raw)
        except (TypeError, ValueError):
            raise ValidationError("choose topics from the list", field="topics") from None
        if topic_id not in offered:
            raise ValidationError("choose topics from the list", field="topics")
        chosen.add(topic_id)
    if not chosen and len(offered) == 1:
        chosen = set(offered)       # a one-topic form may leave the box out
    if not chosen:
        raise ValidationError("choose at least one topic", field="topics")
    version = str(data.get("consent_version", "") or "").strip()
    if version and version != str(form.consent_version):
        raise ConsentChanged("the consent text has changed since this form was loaded: please read it and "
                             "agree again", field="consent")
    if not is_checked(data.get("consent", "")):
        raise ValidationError("please agree to the text above to subscribe", field="consent")
    return SignupRequest(form_id=form.id, email=email, first_name=first_name, topic_ids=sorted(chosen),
                         consent_version=form.consent_version, ip=ip[:64], user_agent=user_agent[:300],
                         requested_at=(now or utcnow()).isoformat())


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def admit(redis: Redis, ip: str, email: str | None) -> bool:
    """Count a sign-up post against the rate limits.

    Raises RateLimitExceeded when this IP posted too often (the person is told). Returns False when the address
    was named too often: the caller answers exactly as usual but sends nothing (no storms, no enumeration).
    """
    per_ip = RateLimiter(redis, f"rapport:signup:ip:{_hash(ip or '-')}", None, IP_PER_HOUR)
    try:
        per_ip.acquire(block=False)
    except RateLimited as exc:
        raise RateLimitExceeded(exc.retry_after) from None
    if email is None:
        return False
    per_address = RateLimiter(redis, f"rapport:signup:addr:{_hash(email)}", None, ADDRESS_PER_HOUR)
    try:
        per_address.acquire(block=False)
    except RateLimited:
        logger.info("signup for one address limited (storm protection)")
        return False
    return True


def submit(rt: Runtime, request: SignupRequest) -> None:
    """Hand a validated request to the worker (the request path never reads the contact list)."""
    queueing.enqueue(rt.queue, Job.SIGNUP_REQUEST, request.to_dict())


def request_signup(session: Session, data: Mapping[str, Any], now: dt.datetime | None = None) -> int | None:
    """Apply a sign-up request in the worker; returns the signup id to mail a confirmation for, or None.

    Flushes; the caller commits (handle_request).
    """
    req = SignupRequest(**data)
    now = now or utcnow()
    form = session.get(SignupForm, req.form_id)
    if form is None or not form.active:
        return None
    if form.consent_version != req.consent_version:
        logger.info("signup for form %s dropped: consent text changed while queued", form.id)
        return None
    topics = [t for t in form.topics if t.id in set(req.topic_ids)]
    if not topics:
        return None
    contact = session.scalar(select(Contact).where(Contact.email == req.email))
    if suppressed_status(session, req.email) is not None:
        return None
    if contact is None:
        contact = Contact(email=req.email, first_name=req.first_name, status=ContactStatus.PENDING,
                          consent_source=f"signup form: {form.name} (unconfirmed)", attributes={})
        session.add(contact)
        session.flush()
    elif contact.status in (ContactStatus.BOUNCED, ContactStatus.COMPLAINED):
        return None
    elif contact.status == ContactStatus.SUBSCRIBED:
        have = {s.topic_id for s in contact.subscriptions if s.subscribed}
        if {t.id for t in topics} <= have:
            return None     # already receives all of it: nothing to confirm, no mail
    pending = session.scalar(select(Signup).where(
        Signup.form_id == form.id, Signup.contact_id == contact.id, Signup.status == SignupStatus.PENDING,
        Signup.expires_at > now).order_by(Signup.id.desc()).limit(1))
    if pending is not None and (pending.mails >= MAX_MAILS or
                                (pending.mailed_at is not None and now - pending.mailed_at < RESEND_AFTER)):
        return None
    if pending is None:
        pending = Signup(form_id=form.id, contact_id=contact.id, status=SignupStatus.PENDING, mails=0)
        session.add(pending)
    pending.topic_ids = [t.id for t in topics]
    pending.topic_names = [t.name for t in topics]
    pending.consent_text = form.consent_text
    pending.consent_version = form.consent_version
    pending.requested_at = dt.datetime.fromisoformat(req.requested_at)
    pending.ip, pending.user_agent = req.ip, req.user_agent
    pending.expires_at = now + SIGNUP_TTL
    session.flush()
    return pending.id


def handle_request(rt: Runtime, data: Mapping[str, Any], now: dt.datetime | None = None) -> bool:
    """The worker's part of a sign-up (the job): apply the request, commit, then mail the confirmation if one is
    due; returns whether a mail went out. A temporary relay failure raises, so the job is retried."""
    with rt.session_factory() as session:
        signup_id = request_signup(session, data, now)
        session.commit()
    return signup_id is not None and send_confirmation(rt, signup_id, now)


def _day(at: dt.datetime) -> int:
    return int(at.timestamp() // 86400)


def confirm_url(rt: Runtime, signup_id: int, now: dt.datetime | None = None) -> str:
    """The sealed confirmation link of a signup."""
    token = rt.tokens.seal(Purpose.CONFIRM, signup_id, _day(now or utcnow()))
    return f"{rt.settings.base_url}/signup/confirm/{token}"


def send_confirmation(rt: Runtime, signup_id: int, now: dt.datetime | None = None) -> bool:
    """Mail the confirmation link of a pending signup now (transactional, DKIM-signed) and count the mail.

    Its own sessions: the message is built in one, no transaction is held while talking to the relay, and the mail
    is counted in another. A temporary relay failure raises (the job is retried); a permanent one is logged and
    returns False.
    """
    now = now or utcnow()
    with rt.session_factory() as session:
        built = _confirmation_mail(rt, session, signup_id, now)
    if built is None:
        return False
    to, data = built
    try:
        rt.relays.pool(None).send(f"bounces@{rt.settings.return_domain}", [to], data)
    except PermanentFailure as exc:
        # The address does not exist (or the relay refuses it): nobody can confirm; it expires like the rest.
        logger.info("signup %s: confirmation refused by the relay: %s", signup_id, exc)
        return False
    with rt.session_factory() as session:
        session.execute(update(Signup).where(Signup.id == signup_id)
                        .values(mailed_at=now, mails=Signup.mails + 1))
        session.commit()
    logger.info("signup %s: confirmation mailed", signup_id)
    return True


def _confirmation_mail(rt: Runtime, session: Session, signup_id: int, now: dt.datetime) -> tuple[str, bytes] | None:
    """The recipient and the signed message of a pending signup's confirmation, or None when none is due."""
    signup = session.get(Signup, signup_id)
    if signup is None or signup.status != SignupStatus.PENDING:
        return None
    contact = session.get(Contact, signup.contact_id)
    form = signup.form
    s = rt.settings
    url = confirm_url(rt, signup.id, now)
    subject = f"Please confirm: {form.title}"
    greeting = f"Hello {contact.first_name}," if contact.first_name else "Hello,"
    topics = ", ".join(signup.topic_names)
    text = (f"{greeting}\n\nplease confirm that you want to receive {topics} from {s.sender_name}:\n\n{url}\n\n"
            f"The link works for {SIGNUP_TTL.days} days. If you did not sign up, ignore this message: "
            f"you will not hear from us.\n\n-- \n{s.postal_address}\n")
    e = html.escape
    body = (f'<!doctype html><html><body style="font-family:sans-serif;line-height:1.5">'
            f'<p>{e(greeting)}</p><p>please confirm that you want to receive <strong>{e(topics)}</strong> '
            f'from {e(s.sender_name)}.</p>'
            f'<p><a href="{e(url)}" style="display:inline-block;padding:10px 18px;background:#2d6a4f;color:#fff;'
            f'text-decoration:none;border-radius:4px">Confirm my subscription</a></p>'
            f'<p style="color:#555">The link works for {SIGNUP_TTL.days} days. If you did not sign up, ignore this '
            f'message: you will not hear from us.</p><p style="color:#777;font-size:12px">{e(s.postal_address)}'
            f'</p></body></html>')
    template = MessageTemplate.create(from_name=s.sender_name, from_email=s.sender_email,
                                      feedback_id=f"signup:{form.id}:transactional:rapport")
    message_id = f"<signup.{signup.id}.{secrets.token_hex(8)}@{s.dkim_domain}>"
    headers, raw = template.build(to_name=contact.first_name, to_email=contact.email, subject=subject,
                                  message_id=message_id, date=format_date(time.time()), html=body, text=text,
                                  extra=(("Auto-Submitted", "auto-generated"),))
    signer = rt.signer
    return contact.email, serialize(headers, raw, signer.sign(headers, raw) if signer is not None else b"")


# ---------------------------------------------------------------- confirming


class ConfirmOutcome(StrEnum):
    """Where a confirmation link leads (the page shown, and its HTTP status)."""

    PENDING = "pending"           # valid and not clicked yet: the page asks to confirm
    CONFIRMED = "confirmed"       # this click confirmed it
    ALREADY = "already"           # confirmed before
    EXPIRED = "expired"           # too old, expired, or the signup is gone
    UNAVAILABLE = "unavailable"   # the address bounced, complained or is suppressed


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation link leads to."""

    outcome: ConfirmOutcome
    signup: Signup | None = None
    contact: Contact | None = None


def open_confirmation(session: Session, rt: Runtime, token: str, now: dt.datetime | None = None) -> Confirmation:
    """Check a confirmation token without changing anything; raises mailer.tracking.InvalidToken when forged."""
    now = now or utcnow()
    signup_id, issued_day = rt.tokens.open(Purpose.CONFIRM, token)
    signup = session.get(Signup, signup_id)
    if signup is None:
        return Confirmation(ConfirmOutcome.EXPIRED)      # expired and removed, or the person's data was erased
    contact = session.get(Contact, signup.contact_id)
    if signup.status == SignupStatus.CONFIRMED:
        return Confirmation(ConfirmOutcome.ALREADY, signup, contact)
    # A link older than the TTL is dead even if the signup was renewed since (a newer mail has a newer link).
    if signup.status == SignupStatus.EXPIRED or signup.expires_at <= now or issued_day + SIGNUP_TTL.days < _day(now):
        return Confirmation(ConfirmOutcome.EXPIRED, signup, contact)
    if contact is None or contact.status in (ContactStatus.BOUNCED, ContactStatus.COMPLAINED) \
            or suppressed_status(session, contact.email) is not None:
        return Confirmation(ConfirmOutcome.UNAVAILABLE, signup, contact)
    return Confirmation(ConfirmOutcome.PENDING, signup, contact)


def confirm(session: Session, rt: Runtime, token: str, *, ip: str, user_agent: str,
            now: dt.datetime | None = None) -> Confirmation:
    """Confirm a signup: the contact becomes subscribed to its topics and the row the consent record. Flushes; the
    view commits.

    Idempotent: a second click answers "already". Raises InvalidToken for forged or altered tokens.
    """
    now = now or utcnow()
    state = open_confirmation(session, rt, token, now)
    if state.outcome != ConfirmOutcome.PENDING:
        return state
    signup, contact = state.signup, state.contact
    assert signup is not None and contact is not None
    # Only one of two simultaneous clicks wins the pending -> confirmed step.
    won = session.execute(update(Signup).where(Signup.id == signup.id, Signup.status == SignupStatus.PENDING)
                          .values(status=SignupStatus.CONFIRMED, confirmed_at=now, confirm_ip=ip[:64],
                                  confirm_user_agent=user_agent[:300])).rowcount
    if not won:   # nothing written in this transaction: the other click's confirmation is what the row shows
        session.refresh(signup)
        return Confirmation(ConfirmOutcome.ALREADY, signup, contact)
    existing = set(session.scalars(select(Topic.id).where(Topic.id.in_(signup.topic_ids or []))))
    have = {s.topic_id for s in contact.subscriptions if s.subscribed}
    set_subscriptions(session, contact, have | existing)
    form_name = signup.form.name
    resubscribed = contact.status == ContactStatus.UNSUBSCRIBED
    contact.status = ContactStatus.SUBSCRIBED
    contact.consent_source = f"signup form: {form_name}"[:200]
    contact.consent_at = now
    session.add(Event(contact_id=contact.id, type=EventType.SUBSCRIBE, occurred_at=now,
                      data={"source": "signup form", "form": form_name, "signup_id": signup.id,
                            "consent_version": signup.consent_version, "topics": list(signup.topic_names),
                            "resubscribed": resubscribed}))
    session.flush()
    session.refresh(signup)
    logger.info("signup %s confirmed (contact %s)", signup.id, contact.id)
    return Confirmation(ConfirmOutcome.CONFIRMED, signup, contact)


# ---------------------------------------------------------------- expiry


def expire_pending(session: Session, now: dt.datetime | None = None) -> int:
    """Mark unconfirmed signups past their time as expired and delete contacts that only ever were pending.

    A contact created by a signup that nobody confirmed is removed with its signup rows (data minimisation);
    existing contacts keep the expired row. Returns the number of signups expired. The caller (the job) commits.
    """
    now = now or utcnow()
    expired = session.execute(update(Signup).where(Signup.status == SignupStatus.PENDING, Signup.expires_at <= now)
                              .values(status=SignupStatus.EXPIRED)).rowcount or 0
    has_signup = exists().where(Signup.contact_id == Contact.id)
    still_pending = exists().where(and_(Signup.contact_id == Contact.id, Signup.status == SignupStatus.PENDING))
    doomed = select(Contact.id).where(Contact.status == ContactStatus.PENDING, has_signup, ~still_pending)
    ids = list(session.scalars(doomed))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        # Explicit deletes of the children keep this independent of ON DELETE CASCADE being enforced.
        session.execute(delete(Signup).where(Signup.contact_id.in_(chunk)))
        session.execute(delete(Event).where(Event.contact_id.in_(chunk)))
        session.execute(delete(Contact).where(Contact.id.in_(chunk), Contact.status == ContactStatus.PENDING))
    if expired or ids:
        logger.info("expired %d unconfirmed signups, removed %d never-confirmed contacts", expired, len(ids))
    return expired
