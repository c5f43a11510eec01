"""Bounces, complaints and mailto unsubscribes flow back into the contact list; suppressed addresses stay suppressed.

Sources: SMTP rejections at send time (record_smtp_rejection), inbound messages from an MTA pipe or a mailbox
(ingest_message, poll_mailbox) and relay webhooks (apply_relay_event). An inbound message is matched to its send by
the sealed MESSAGE token in the VERP return path (bounces+TOKEN@domain), the X-Rapport-ID header or the Message-ID
of the returned original; a mailto unsubscribe by its UNSUBSCRIBE token; as a last resort by the address.

Rules: a hard bounce suppresses at once; soft bounces suppress once BouncePolicy.soft_limit of them arrived within
BouncePolicy.window; a complaint unsubscribes and suppresses. Suppression is stored under a hash of the normalized
address, so it survives the contact's erasure and blocks a re-import (is_suppressed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import imaplib
import logging
import poplib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.feedback import preferences as feedback
from campaigns.models import (
    Contact,
    ContactStatus,
    Event,
    EventType,
    Send,
    Suppression,
    SuppressionReason,
    utcnow,
)
from campaigns.runtime import Runtime
from campaigns.sending import rejections
from mailer.bounces import FeedbackKind, classify_smtp_reply, parse_feedback
from mailer.tracking import InvalidToken, Purpose, TokenCodec

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- suppression


def email_hash(email: str) -> str:
    """SHA-256 of the normalized (trimmed, lower-cased) address: the suppression key."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def is_suppressed(session: Session, email: str) -> bool:
    """Whether this address must never be mailed again (hard bounce, soft bounces, complaint or manual)."""
    return session.get(Suppression, email_hash(email)) is not None


def suppress(session: Session, email: str, reason: SuppressionReason, source: str = "") -> None:
    """Add the address to the suppression list (idempotent; the first reason stays). Does not commit."""
    key = email_hash(email)
    if session.get(Suppression, key) is None:
        session.add(Suppression(email_hash=key, reason=reason, source=source[:200]))
        session.flush()


# ---------------------------------------------------------------- policy


@dataclass(frozen=True)
class BouncePolicy:
    """How many soft bounces within what window suppress an address."""

    soft_limit: int = 3
    window: dt.timedelta = dt.timedelta(days=30)

    @classmethod
    def from_settings(cls, settings: Settings) -> BouncePolicy:
        """RAPPORT_SOFT_BOUNCE_LIMIT and RAPPORT_SOFT_BOUNCE_WINDOW_DAYS, via Settings."""
        return cls(soft_limit=settings.soft_bounce_limit,
                   window=dt.timedelta(days=settings.soft_bounce_window_days))


# ---------------------------------------------------------------- applying outcomes


@dataclass(frozen=True)
class Outcome:
    """What one piece of feedback did."""

    kind: str                 # hard_bounce, soft_bounce, complaint, unsubscribe, delivered, ignored, duplicate, probe
    contact_id: int | None = None
    suppressed: bool = False
    detail: str = ""


def _add_event(session: Session, event: Event) -> bool:
    """Insert an event unless its dedupe_key is known; False for a duplicate. Uses a savepoint, no commit."""
    if event.dedupe_key and session.scalar(select(Event.id).where(Event.dedupe_key == event.dedupe_key)):
        return False
    try:
        with session.begin_nested():
            session.add(event)
    except IntegrityError:   # the same report, ingested concurrently
        return False
    return True


def apply_bounce(session: Session, contact: Contact, *, hard: bool, send_id: int | None, campaign_id: int | None,
                 source: str, status: str | None = None, code: int | None = None, diagnostic: str = "",
                 dedupe_key: str | None = None, policy: BouncePolicy | None = None,
                 now: dt.datetime | None = None) -> Outcome:
    """Record a bounce and suppress when the rules say so. Does not commit."""
    policy = policy or BouncePolicy()
    now = now or utcnow()
    kind = "hard" if hard else "soft"
    if dedupe_key is None and send_id:
        dedupe_key = f"bounce:{send_id}:{kind}"   # one message counts once, however it is reported
    event = Event(contact_id=contact.id, campaign_id=campaign_id, send_id=send_id, type=EventType.BOUNCE,
                  occurred_at=now, dedupe_key=dedupe_key,
                  data={"kind": kind, "status": status, "code": code, "diagnostic": (diagnostic or "")[:500],
                        "source": source})
    if not _add_event(session, event):
        return Outcome("duplicate", contact.id)
    if send_id and source != "smtp":
        _mark_bounced_later(session, send_id, kind, status, code, diagnostic)
    if not hard:
        since = now - policy.window
        recent = [d for d in session.scalars(select(Event.data).where(
            Event.contact_id == contact.id, Event.type == EventType.BOUNCE, Event.occurred_at >= since))
            if (d or {}).get("kind") == "soft"]
        if len(recent) < policy.soft_limit:
            logger.info("contact %s soft bounce %d of %d (campaign_id=%s)", contact.id, len(recent),
                        policy.soft_limit, campaign_id)
            return Outcome("soft_bounce", contact.id, False, f"{len(recent)} of {policy.soft_limit}")
    if contact.status != ContactStatus.COMPLAINED:
        contact.status = ContactStatus.BOUNCED
    suppress(session, contact.email, SuppressionReason.HARD_BOUNCE if hard else SuppressionReason.SOFT_BOUNCE,
             f"{source} {status or code or ''}".strip())
    logger.info("contact %s suppressed after %s bounce (campaign_id=%s)", contact.id, kind, campaign_id)
    return Outcome(f"{kind}_bounce", contact.id, True)


def _mark_bounced_later(session: Session, send_id: int, kind: str, status: str | None, code: int | None,
                        diagnostic: str) -> None:
    """A report that arrived after the relay accepted the message: the send row shows it instead of "250".

    The status stays what it was (the relay did accept the message; reports count it as sent, then bounced).
    """
    send = session.get(Send, send_id)
    if send is None:
        return
    if code is not None:
        send.smtp_code = code
    detail = " ".join(p for p in (status or "", (diagnostic or "").strip()) if p)
    send.last_error = f"{kind} bounce reported later: {detail}"[:1000] if detail else f"{kind} bounce reported later"


def apply_complaint(session: Session, contact: Contact, *, send_id: int | None, campaign_id: int | None,
                    source: str, feedback_type: str | None = None, dedupe_key: str | None = None,
                    now: dt.datetime | None = None) -> Outcome:
    """A spam complaint: unsubscribe from everything, mark complained, suppress. Does not commit."""
    now = now or utcnow()
    event = Event(contact_id=contact.id, campaign_id=campaign_id, send_id=send_id, type=EventType.COMPLAINT,
                  occurred_at=now, dedupe_key=dedupe_key or (f"complaint:{send_id}" if send_id else None),
                  data={"source": source, "feedback_type": feedback_type or "abuse"})
    if not _add_event(session, event):
        return Outcome("duplicate", contact.id)
    if contact.status in (ContactStatus.SUBSCRIBED, ContactStatus.PENDING):
        session.add(Event(contact_id=contact.id, campaign_id=campaign_id, type=EventType.UNSUBSCRIBE,
                          occurred_at=now, data={"scope": "all", "topics": [], "source": "complaint"}))
    contact.status = ContactStatus.COMPLAINED
    suppress(session, contact.email, SuppressionReason.COMPLAINT, source)
    logger.info("contact %s complained (campaign_id=%s): unsubscribed and suppressed", contact.id, campaign_id)
    return Outcome("complaint", contact.id, True)


def record_smtp_rejection(session: Session, *, send_id: int, contact_id: int, campaign_id: int,
                          code: int | None, message: str, policy: BouncePolicy | None = None) -> None:
    """A relay refused a message at send time: hard -> suppress the contact; soft -> count towards the limit.

    Commits. Called by the send path after it marked the send row failed.
    """
    kind = classify_smtp_reply(code, message or "")
    contact = session.get(Contact, contact_id)
    if contact is None or kind not in (FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE):
        return
    apply_bounce(session, contact, hard=kind == FeedbackKind.HARD_BOUNCE, send_id=send_id,
                 campaign_id=campaign_id, source="smtp", code=code, diagnostic=message, policy=policy)
    session.commit()


# ---------------------------------------------------------------- inbound messages

_MSGID_TOKEN = re.compile(r"<([A-Za-z0-9_-]{24,120})@")


@dataclass(frozen=True)
class _Match:
    contact: Contact
    send_id: int | None
    campaign_id: int | None


def _send_of(session: Session, tokens: TokenCodec, token: str | None) -> Send | None:
    if not token:
        return None
    try:
        (send_id,) = tokens.open(Purpose.MESSAGE, token)
    except InvalidToken:
        return None
    return session.get(Send, send_id) if send_id else None


def _match(session: Session, tokens: TokenCodec, token: str | None, message_id: str | None,
           recipient: str | None) -> _Match | None:
    send = _send_of(session, tokens, token)
    if send is None and message_id:
        m = _MSGID_TOKEN.match(message_id)
        send = _send_of(session, tokens, m.group(1) if m else None)
    if send is not None:
        contact = session.get(Contact, send.contact_id)
        return _Match(contact, send.id, send.campaign_id) if contact is not None else None
    if recipient:
        contact = session.scalar(select(Contact).where(Contact.email == recipient.strip().lower()))
        if contact is not None:
            return _Match(contact, None, None)
    return None


def ingest_message(session: Session, tokens: TokenCodec, raw: bytes, *, envelope_recipient: str | None = None,
                   policy: BouncePolicy | None = None) -> Outcome:
    """Classify one inbound message (DSN, ARF, mailto unsubscribe, auto-reply…) and apply it. Commits."""
    from campaigns.accounts import mail_setup

    nonce = mail_setup.probe_nonce(tokens, raw)
    if nonce:   # `rapport check-mail-setup` testing the route: leave its mark, touch nothing else
        mail_setup.record_probe(session, nonce)
        return Outcome("probe", detail=nonce)
    fb = parse_feedback(raw, envelope_recipient)
    raw_key = "in:" + hashlib.sha256(raw).hexdigest()[:60]
    if fb.kind == FeedbackKind.UNSUBSCRIBE:
        try:
            contact_id, campaign_id = tokens.open(Purpose.UNSUBSCRIBE, fb.token or "")
        except InvalidToken:
            logger.info("mailto unsubscribe with an invalid token ignored")
            return Outcome("ignored", detail="invalid unsubscribe token")
        try:
            scope = feedback.resolve_unsubscribe(session, contact_id, campaign_id)
        except Exception:   # NotFound: a test message or an erased contact
            return Outcome("ignored", detail="unknown contact")
        changed = feedback.unsubscribe(session, scope, everything=True, source="mailto")
        return Outcome("unsubscribe" if changed else "duplicate", contact_id)
    if fb.kind not in (FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE, FeedbackKind.COMPLAINT):
        logger.info("inbound message ignored: %s", fb.kind)
        return Outcome("ignored", detail=str(fb.kind))
    match = _match(session, tokens, fb.token, fb.message_id, fb.recipient)
    if match is None:
        logger.warning("inbound %s matched no send or contact (recipient %s)", fb.kind, fb.recipient)
        return Outcome("ignored", detail="no matching send or contact")
    key = None if match.send_id else raw_key
    if fb.kind == FeedbackKind.COMPLAINT:
        out = apply_complaint(session, match.contact, send_id=match.send_id, campaign_id=match.campaign_id,
                              source="arf", feedback_type=fb.feedback_type, dedupe_key=key)
    else:
        out = apply_bounce(session, match.contact, hard=fb.kind == FeedbackKind.HARD_BOUNCE,
                           send_id=match.send_id, campaign_id=match.campaign_id, source="dsn", status=fb.status,
                           code=fb.smtp_code, diagnostic=fb.diagnostic or "", dedupe_key=key, policy=policy)
    session.commit()
    return out


# ---------------------------------------------------------------- mailboxes

MAILBOX_TIMEOUT = 60


def _imap_messages(url: str, limit: int) -> Iterator[tuple[bytes, Callable[[], None]]]:
    u = urlsplit(url)
    cls = imaplib.IMAP4_SSL if u.scheme == "imaps" else imaplib.IMAP4
    conn = cls(u.hostname or "localhost", u.port or (993 if u.scheme == "imaps" else 143), timeout=MAILBOX_TIMEOUT)
    try:
        if u.scheme == "imap+starttls":
            conn.starttls()
        conn.login(unquote(u.username or ""), unquote(u.password or ""))
        folder = unquote(u.path.strip("/")) or "INBOX"
        typ, _ = conn.select(folder)
        if typ != "OK":
            raise OSError(f"IMAP folder {folder!r} cannot be opened")
        _typ, data = conn.uid("SEARCH", None, "ALL")
        uids = (data[0] or b"").split()[:limit]
        for uid in uids:
            _typ, fetched = conn.uid("FETCH", uid, "(RFC822)")
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
            if raw is None:
                continue

            def ack(uid: bytes = uid) -> None:
                conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")

            yield raw, ack
        conn.expunge()
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def _pop3_messages(url: str, limit: int) -> Iterator[tuple[bytes, Callable[[], None]]]:
    u = urlsplit(url)
    ssl = u.scheme == "pop3s"
    cls = poplib.POP3_SSL if ssl else poplib.POP3
    conn = cls(u.hostname or "localhost", u.port or (995 if ssl else 110), timeout=MAILBOX_TIMEOUT)
    ok = False
    try:
        conn.user(unquote(u.username or ""))
        conn.pass_(unquote(u.password or ""))
        count, _size = conn.stat()
        for i in range(1, min(count, limit) + 1):
            _resp, lines, _octets = conn.retr(i)
            yield b"\r\n".join(lines) + b"\r\n", (lambda i=i: conn.dele(i))
        ok = True
    finally:
        # POP3 deletes only at a clean QUIT; after an error, RSET keeps every message for the next poll.
        try:
            if not ok:
                conn.rset()
            conn.quit()
        except (poplib.error_proto, OSError):
            pass


def poll_mailbox(rt: Runtime, url: str, *, policy: BouncePolicy | None = None, limit: int = 500) -> int:
    """Apply every message in the mailbox at url, deleting each once applied; returns messages applied.

    url: imap://user:pass@host[:port]/Folder, imaps://…, imap+starttls://…, pop3://…, pop3s://….
    A message is deleted only after its outcome is committed; re-reading one (after a crash) changes nothing.
    """
    scheme = urlsplit(url).scheme
    if scheme in ("imap", "imaps", "imap+starttls"):
        messages = _imap_messages(url, limit)
    elif scheme in ("pop3", "pop3s"):
        messages = _pop3_messages(url, limit)
    else:
        raise ValueError(f"mailbox URL must start with imap://, imaps://, pop3:// or pop3s://, not {scheme}://")
    policy = policy or BouncePolicy.from_settings(rt.settings)
    done = 0
    for raw, ack in messages:
        with rt.session_factory() as session:
            outcome = ingest_message(session, rt.tokens, raw, policy=policy)
        logger.info("mailbox message: %s", outcome.kind)
        ack()
        done += 1
    return done


# ---------------------------------------------------------------- relay webhooks

WEBHOOK_TYPES = ("bounce", "complaint", "delivered", "open", "click")


class BadEvent(ValueError):
    """A webhook event that does not follow the normalized format (docs/webhooks.md)."""


def _when(value: object) -> dt.datetime:
    if value in (None, ""):
        return utcnow()
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dt.datetime.fromtimestamp(float(value), dt.UTC)
        if isinstance(value, str) and len(value) <= 40:
            at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise BadEvent("timestamp must be ISO 8601 or unix seconds")


def _text(event: Mapping, name: str, limit: int) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadEvent(f"{name} must be a string of at most {limit} characters")
    return value


def apply_relay_event(session: Session, rt: Runtime, event: object,
                      policy: BouncePolicy | None = None) -> Outcome:
    """Apply one normalized relay event (docs/webhooks.md); raises BadEvent on malformed input. Commits."""
    from campaigns.feedback import hits

    if not isinstance(event, Mapping):
        raise BadEvent("each event must be a JSON object")
    kind = event.get("type")
    if kind not in WEBHOOK_TYPES:
        raise BadEvent(f"type must be one of {', '.join(WEBHOOK_TYPES)}")
    rapport_id = _text(event, "rapport_id", 200)
    message_id = _text(event, "message_id", 998)
    recipient = _text(event, "recipient", 320)
    relay_id = _text(event, "id", 200)
    at = _when(event.get("timestamp"))
    match = _match(session, rt.tokens, rapport_id, message_id, recipient)
    if match is None:
        return Outcome("ignored", detail="no matching send or contact")
    key = "wh:" + hashlib.sha256(relay_id.encode()).hexdigest()[:40] if relay_id else None
    if kind == "bounce":
        bounce_type = event.get("bounce_type", "hard")
        if bounce_type not in ("hard", "soft"):
            raise BadEvent("bounce_type must be hard or soft")
        code = event.get("smtp_code")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599):
            raise BadEvent("smtp_code must be an integer SMTP reply code")
        out = apply_bounce(session, match.contact, hard=bounce_type == "hard", send_id=match.send_id,
                           campaign_id=match.campaign_id, source="webhook", status=_text(event, "status", 11),
                           code=code, diagnostic=_text(event, "diagnostic", 1000) or "",
                           dedupe_key=None if match.send_id else key, policy=policy, now=at)
    elif kind == "complaint":
        out = apply_complaint(session, match.contact, send_id=match.send_id, campaign_id=match.campaign_id,
                              source="webhook", feedback_type=_text(event, "feedback_type", 64),
                              dedupe_key=None if match.send_id else key, now=at)
    elif kind == "delivered":
        added = _add_event(session, Event(
            contact_id=match.contact.id, campaign_id=match.campaign_id, send_id=match.send_id,
            type=EventType.DELIVERED, occurred_at=at, data={"source": "webhook"},
            dedupe_key=f"delivered:{match.send_id}" if match.send_id else key))
        out = Outcome("delivered" if added else "duplicate", match.contact.id)
    else:
        if not match.send_id:
            return Outcome("ignored", detail="opens and clicks need rapport_id or message_id")
        link_id = 0
        if kind == "click":
            from campaigns.models import Link

            url = _text(event, "url", 2000) or ""
            link_id = session.scalar(select(Link.id).where(Link.campaign_id == match.campaign_id,
                                                           Link.url == url)) or 0
            if not link_id:
                return Outcome("ignored", detail="url is not a link of this campaign")
        hits.push(rt, hits.Hit(kind=kind, send_id=match.send_id, link_id=link_id, at=at.timestamp(),
                               user_agent=_text(event, "user_agent", 300) or "", ip=_text(event, "ip", 64) or "",
                               source="relay", key=key or hits.new_key()))
        return Outcome(kind, match.contact.id)
    session.commit()
    return out


def _record_rejection(session: Session, settings: Settings, rejection: rejections.Rejection) -> None:
    """The send path's refused messages as bounces (registered below: sending does not import feedback)."""
    record_smtp_rejection(session, send_id=rejection.send_id, contact_id=rejection.contact_id,
                          campaign_id=rejection.campaign_id, code=rejection.code, message=rejection.message,
                          policy=BouncePolicy.from_settings(settings))


rejections.on_rejection("bounces", _record_rejection)
