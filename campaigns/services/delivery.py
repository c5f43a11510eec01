"""Delivery: a campaign's messages composed per recipient (CampaignMailer), batch jobs that claim, send and record
them (send_batch), and test sends. Starting, dispatching and finishing campaigns is campaigns.services.sending.

Delivery is at-most-once: a batch claims rows (queued -> sending) and commits *before* talking SMTP, and writes the
outcome after. A worker killed in between leaves rows in `sending`; they are never retried automatically (the relay
may already have accepted them) but marked failed as "interrupted" once their claim is older than sending.CLAIM_LEASE.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from campaigns.config import PolicySettings
from campaigns.errors import ValidationError
from campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    ContactInterest,
    ContactStatus,
    Send,
    SendReason,
    SendStatus,
    Subscription,
    utcnow,
)
from campaigns.runtime import Runtime
from campaigns.services import campaigns as campaign_service
from campaigns.services import policy as policy_service
from campaigns.services.contacts import normalize_email, personalization
from campaigns.services.coupons import BatchCoupons
from campaigns.services.digest import DigestItems
from campaigns.services.ingest import BouncePolicy, record_smtp_rejection
from campaigns.services.sending import BATCH_JOB_TIMEOUT, UNSENDABLE, maybe_finish, pause
from campaigns.services.surveys import SurveyLinks
from mailer.compose import CompiledCampaign, TemplateError
from mailer.message import MessageTemplate, format_date, serialize
from mailer.tracking import Purpose
from mailer.transport import DeliveryError, PermanentFailure

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- per-message composition

@dataclass
class CampaignMailer:
    """Everything a campaign's messages share, built once per batch job; message() does only per-recipient work."""

    rt: Runtime
    campaign_id: int
    kind: str
    compiled: CompiledCampaign
    link_ids: list[int]
    template: MessageTemplate
    envelope_domain: str
    sender: dict[str, str]
    topic_ids: frozenset[int] = field(default_factory=frozenset)
    all_contacts: bool = False
    relay: str = ""
    policy: PolicySettings = field(default_factory=PolicySettings)
    valid_until: dt.datetime | None = None
    # "From the contact's account owner": From/Reply-To headers and {{ sender }} per owner (Sender.id).
    owners: dict[int, tuple[MessageTemplate, dict[str, str]]] = field(default_factory=dict)
    # A coupon pool and a survey (campaigns.services.coupons / surveys): per-recipient template values.
    coupons: BatchCoupons | None = None
    coupon_of: dict[int, dict[str, str]] = field(default_factory=dict)   # contact id -> coupon, set per claim
    survey: SurveyLinks | None = None
    digest: DigestItems | None = None   # a digest campaign's per-recipient items (campaigns.services.digest)

    @classmethod
    def for_campaign(cls, rt: Runtime, session: Session, campaign: Campaign) -> CampaignMailer:
        """Compile (cached) and prepare shared headers."""
        s = rt.settings
        result = campaign_service.compiled(campaign)
        ids = campaign_service.link_ids(session, campaign.id)
        if len(ids) != len(result.links):
            ids = campaign_service.ensure_links(session, campaign, result)
            session.commit()
        from_name, from_email = campaign_service.from_identity(campaign, s)

        def headers_from(name: str, email: str, reply_to: str) -> MessageTemplate:
            return MessageTemplate.create(
                from_name=name, from_email=email,
                reply_to=reply_to, feedback_id=f"{campaign.id}:{campaign.kind}:rapport",
                list_id=f"{s.sender_name} <{campaign.kind}.{s.dkim_domain}>" if campaign.kind != "transactional"
                else "",
            )

        template = headers_from(from_name, from_email, campaign.reply_to)
        postal = campaign_service.postal_address(session, s)
        sender = campaign_service.sender_context(from_name, from_email, postal)
        owners = {o.id: (headers_from(o.name, o.email, campaign.reply_to or o.reply_to or ""),
                         campaign_service.sender_context(o.name, o.email, postal, o.title or ""))
                  for o in campaign_service.owner_senders(session, campaign)}
        campaign_service.check_compliance(   # marketing: postal address and unsubscribe link, or no mail
            campaign.kind, result, sender, campaign_service.sample_extras(
                session, campaign.coupon_pool_id, campaign.survey_id, s.base_url, rt.tokens))
        return cls(rt=rt, campaign_id=campaign.id, kind=str(campaign.kind), compiled=result, link_ids=ids,
                   template=template, envelope_domain=s.return_domain, sender=sender, owners=owners,
                   topic_ids=frozenset(t.id for t in campaign.topics), all_contacts=campaign.all_contacts,
                   relay=campaign.relay, policy=policy_service.load(session, s.policy),
                   valid_until=campaign.valid_until, coupons=BatchCoupons.for_campaign(session, campaign),
                   survey=SurveyLinks.for_campaign(session, campaign, base_url=s.base_url, tokens=rt.tokens),
                   digest=DigestItems.for_campaign(rt, session, campaign))

    def message(self, send_id: int, contact_id: int, to_name: str, to_email: str,
                contact_vars: dict, *, subject_prefix: str = "", owner_id: int | None = None) -> tuple[str, bytes]:
        """Envelope sender and signed message bytes for one recipient (from their owner, in owner mode)."""
        template, sender = self.owners.get(owner_id, (self.template, self.sender)) if owner_id else \
            (self.template, self.sender)
        tokens = self.rt.tokens
        base = self.rt.settings.base_url
        seal = tokens.seal
        link_ids = self.link_ids

        def click(i: int) -> str:   # called at most once per link and recipient (see mailer.compose.LinkURLs)
            return f"{base}/c/{seal(Purpose.CLICK, send_id, link_ids[i])}"

        unsub_token = seal(Purpose.UNSUBSCRIBE, contact_id, self.campaign_id)
        unsubscribe_url = f"{base}/u/{unsub_token}"
        ctx = {
            "contact": contact_vars,
            "sender": sender,
            "unsubscribe_url": unsubscribe_url,
            "preferences_url": f"{base}/p/{seal(Purpose.PREFERENCES, contact_id)}",
        }
        if self.coupons is not None:
            ctx["coupon"] = self.coupons.vars_for(self.coupon_of, send_id, contact_id)
        if self.survey is not None:
            ctx.update(self.survey.context(send_id))
        if self.digest is not None:
            ctx["digest_items"] = self.digest.items_for(contact_id, ctx)
        subject, text_part, html_part = self.compiled.render_mime(
            ctx, click, f"{base}/o/{seal(Purpose.OPEN, send_id)}")
        msg_token = seal(Purpose.MESSAGE, send_id)
        domain = self.rt.settings.dkim_domain
        headers, body = template.build(
            to_name=to_name, to_email=to_email, subject=subject_prefix + subject,
            message_id=f"<{msg_token}@{domain}>", date=format_date(time.time()), parts=(text_part, html_part),
            list_unsubscribe=(unsubscribe_url, f"mailto:unsubscribe+{unsub_token}@{self.envelope_domain}")
            if self.kind != "transactional" else (),
            extra=(("X-Rapport-ID", msg_token),),
        )
        signer = self.rt.signer
        prefix = signer.sign(headers, body) if signer is not None else b""
        return f"bounces+{msg_token}@{self.envelope_domain}", serialize(headers, body, prefix)


# ---------------------------------------------------------------- batch delivery

@dataclass
class BatchResult:
    """What one batch job did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    held: int = 0
    deferred: int = 0
    stopped: str = ""
    retry_at: dt.datetime | None = None


def _claim(session: Session, campaign_id: int, lo: int, hi: int, n: int) -> list[tuple[int, int]]:
    now = utcnow()
    pick = (select(Send.id).where(Send.campaign_id == campaign_id, Send.status == SendStatus.QUEUED,
                                  Send.contact_id.between(lo, hi),
                                  or_(Send.next_attempt_at.is_(None), Send.next_attempt_at <= now))
            .order_by(Send.contact_id).limit(n))
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = session.execute(
        update(Send).where(Send.id.in_(pick.scalar_subquery()))
        .values(status=SendStatus.SENDING, claimed_at=now, attempts=Send.attempts + 1)
        .returning(Send.id, Send.contact_id, Send.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return sorted((r[0], r[1], r[2]) for r in rows)


def _eligible(session: Session, mailer: CampaignMailer, contacts: dict[int, Contact]) -> set[int]:
    """Contacts who may still get this campaign at all (status and topic choice re-checked at send time).

    Whether they may get it *now* (pause, frequency, ratio and caps) is policy.decide's part: those are held.
    """
    ok = set()
    for cid, contact in contacts.items():
        if mailer.kind == CampaignKind.TRANSACTIONAL:
            if contact.status not in (*UNSENDABLE, ContactStatus.PENDING):
                ok.add(cid)
        elif contact.status == ContactStatus.SUBSCRIBED:
            ok.add(cid)
    if mailer.all_contacts or not ok or mailer.kind == CampaignKind.TRANSACTIONAL:
        return ok
    subscribed = set(session.scalars(select(Subscription.contact_id).where(
        Subscription.contact_id.in_(ok), Subscription.topic_id.in_(mailer.topic_ids),
        Subscription.subscribed.is_(True))))
    return ok & subscribed


def _skip_reason(contact: Contact | None) -> tuple[SendReason, str]:
    if contact is None:
        return SendReason.DELETED, "contact deleted"
    if contact.status in UNSENDABLE:
        return SendReason.SUPPRESSED, f"contact is {contact.status}"
    if contact.status != ContactStatus.SUBSCRIBED:
        return SendReason.UNSUBSCRIBED, f"contact is {contact.status}"
    return SendReason.TOPIC, "unsubscribed from this topic"


def send_batch(rt: Runtime, campaign_id: int, lo: int, hi: int) -> BatchResult:
    """Deliver the queued sends of a campaign whose contact ids lie in [lo, hi]."""
    result = BatchResult()
    with rt.session_factory() as session:
        campaign = campaign_service.get_campaign(session, campaign_id)
        if campaign.status != CampaignStatus.RUNNING:
            result.stopped = str(campaign.status)
            return result
        try:
            mailer = CampaignMailer.for_campaign(rt, session, campaign)
        except TemplateError as exc:
            pause(session, campaign, f"template error: {exc}")
            result.stopped = "template error"
            return result
    delivery = _Delivery(rt, mailer, rt.relays.pool(mailer.relay or None), result)
    try:
        _deliver_claims(rt, campaign_id, lo, hi, mailer, delivery, result)
    finally:
        delivery.close()
    _finish_batch(rt, campaign_id, lo, hi, result, mailer)
    logger.debug("campaign %s batch %s-%s: %s", campaign_id, lo, hi, result)   # one per batch: DEBUG
    return result


def _deliver_claims(rt: Runtime, campaign_id: int, lo: int, hi: int, mailer: CampaignMailer,
                    delivery: _Delivery, result: BatchResult) -> None:
    """Claim, send and record in rounds of claim_size until nothing is left, or the campaign stops."""
    while not result.stopped:
        with rt.session_factory() as session:
            status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
            if status != CampaignStatus.RUNNING:
                result.stopped = str(status)
                break
            claimed = _claim(session, campaign_id, lo, hi, rt.settings.claim_size)
            if not claimed:
                break
            ids = [c for _, c, _ in claimed]
            contacts = {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(ids)))}
            interests: dict[int, list[str]] = {}
            for cid, interest in session.execute(
                    select(ContactInterest.contact_id, ContactInterest.interest)
                    .where(ContactInterest.contact_id.in_(ids))):
                interests.setdefault(cid, []).append(interest)
            now = utcnow()
            expired = mailer.valid_until is not None and mailer.valid_until <= now
            eligible = set() if expired else _eligible(session, mailer, contacts)
            # The policy decision and its ledger rows commit together with nothing else in between: atomic per
            # contact across workers (see campaigns.services.policy).
            held = policy_service.decide(session, mailer.kind, mailer.policy,
                                         {c: s for s, c, _a in claimed if c in eligible}, contacts, now)
            if mailer.coupons is not None:   # codes before rendering; pauses the campaign when the pool runs dry
                mailer.coupon_of, claimed = mailer.coupons.assign_claim(session, claimed, eligible, held)
            session.commit()    # hold no transaction (or SQLite lock) while talking to the relay
            delivery.run(claimed, contacts, interests, eligible, held, expired=expired)
            delivery.record(session, campaign_id)
            if delivery.pause_reason:
                session.execute(update(Campaign).where(Campaign.id == campaign_id,
                                                       Campaign.status == CampaignStatus.RUNNING)
                                .values(status=CampaignStatus.PAUSED, status_reason=delivery.pause_reason))
                session.commit()
                logger.warning("campaign %s paused: %s", campaign_id, delivery.pause_reason)
                result.stopped = "paused"


def _finish_batch(rt: Runtime, campaign_id: int, lo: int, hi: int, result: BatchResult,
                  mailer: CampaignMailer) -> None:
    """Schedule the retry of deferred sends, and finish the campaign when nothing is left.

    Held sends expire here once the campaign's validity has ended; after nurture mail went out, held sends of
    other campaigns to these contacts are re-checked at once (the ratio may allow them now).
    """
    with rt.session_factory() as session:
        if result.deferred and not result.stopped:
            result.retry_at = session.scalar(select(func.min(Send.next_attempt_at)).where(
                Send.campaign_id == campaign_id, Send.status == SendStatus.QUEUED,
                Send.contact_id.between(lo, hi)))
        if mailer.valid_until is not None and mailer.valid_until <= utcnow():
            policy_service.expire_held(session, campaign_id,
                                       f"expired: the campaign was valid until {mailer.valid_until:%Y-%m-%d %H:%M} UTC")
            session.commit()
        maybe_finish(session, campaign_id)
    if mailer.kind == CampaignKind.NURTURE and result.sent and mailer.policy.enabled:
        policy_service.release_held(rt, contact_range=(lo, hi))
    if result.retry_at is not None:
        delay = max(result.retry_at - utcnow(), dt.timedelta(seconds=1))
        rt.queue.enqueue_in(delay, "campaigns.jobs.send_batch", campaign_id, lo, hi, job_timeout=BATCH_JOB_TIMEOUT)


class _Delivery:
    """Sends claimed rows and collects their outcomes for one bulk write per claim.

    Messages are rendered and signed in this thread while one sender thread talks SMTP: the relay's replies
    (and a full socket buffer) no longer stall the CPU work. At most IN_FLIGHT messages wait for the relay, and
    outcomes are settled in order, so pausing and at-most-once behave as with one thread.

    Measured and rejected: signing in a thread of its own. OpenSSL releases the GIL for the RSA signature, but
    the three threads' Python work then convoys on the GIL and one worker got ~15 % slower, not faster.
    """

    IN_FLIGHT = 8

    def __init__(self, rt: Runtime, mailer: CampaignMailer, pool, result: BatchResult) -> None:  # noqa: ANN001
        self.rt = rt
        self.mailer = mailer
        self.pool = pool
        self.result = result
        self.updates: list[dict] = []
        self.sent_contacts: list[int] = []
        self.rejections: list[tuple[int, int, int | None, str]] = []
        self.consecutive_failures = 0
        self.pause_reason = ""
        self.attempts = 0
        # Two connections, so one message's round trips to the relay overlap the next one's.
        self.sender = ThreadPoolExecutor(max_workers=min(2, pool.relay.max_connections),
                                         thread_name_prefix="smtp-sender")

    def close(self) -> None:
        """Stop the sender thread (after the messages it holds)."""
        self.sender.shutdown(wait=True)

    def run(self, claimed: Sequence[tuple[int, int, int]], contacts: dict[int, Contact],
            interests: dict[int, list[str]], eligible: set[int], held: dict[int, str], *,
            expired: bool = False) -> None:
        in_flight: deque[tuple[int, int, int, Future]] = deque()
        for index, (send_id, contact_id, attempts) in enumerate(claimed):
            if self.pause_reason:
                # Stop at once; the rest of the claim goes back to the queue untouched.
                for sid, _cid, att in claimed[index:]:
                    self.attempts = att - 1
                    self._add(sid, SendStatus.QUEUED, "")
                break
            self.attempts = attempts
            contact = contacts.get(contact_id)
            if expired:
                self._done(send_id, SendStatus.SKIPPED, "expired: the campaign's validity ended before sending",
                           SendReason.EXPIRED)
                continue
            if contact is None or contact_id not in eligible:
                code, why = _skip_reason(contact)
                self._done(send_id, SendStatus.SKIPPED, why, code)
                continue
            if contact_id in held:
                reason = held[contact_id]
                self._done(send_id, SendStatus.HELD, policy_service.explain(reason, contact, self.mailer.policy),
                           reason)
                continue
            try:
                envelope_from, data = self.mailer.message(
                    send_id, contact_id, contact.full_name, contact.email,
                    personalization(contact, interests.get(contact_id, ())), owner_id=contact.owner_id)
            except TemplateError as exc:
                self._done(send_id, SendStatus.FAILED, f"template: {exc}"[:1000])
                continue
            in_flight.append((send_id, contact_id, attempts,
                              self.sender.submit(self.pool.send, envelope_from, [contact.email], data)))
            while len(in_flight) >= self.IN_FLIGHT:
                self._settle(*in_flight.popleft())
        while in_flight:
            self._settle(*in_flight.popleft())

    def _settle(self, send_id: int, contact_id: int, attempts: int, outcome: Future) -> None:
        self.attempts = attempts
        try:
            outcome.result()
        except DeliveryError as exc:
            self._failed(send_id, contact_id, attempts, exc)
            return
        self.consecutive_failures = 0
        self._add(send_id, SendStatus.SENT, "", smtp_code=250)   # sent_at: when recorded (see record())
        self.sent_contacts.append(contact_id)
        self.result.sent += 1

    def _add(self, send_id: int, status: SendStatus, error: str, **extra: object) -> None:
        row = {"id": send_id, "status": status, "last_error": error[:1000], "attempts": self.attempts,
               "sent_at": None, "smtp_code": None, "next_attempt_at": None, "reason": ""}
        row.update(extra)
        self.updates.append(row)

    def _done(self, send_id: int, status: SendStatus, reason: str, code: str = "") -> None:
        if status == SendStatus.HELD:
            # Not an attempt: the send goes back to waiting, and is claimed again when released.
            self._add(send_id, status, reason, reason=code, attempts=self.attempts - 1)
            self.result.held += 1
            return
        self._add(send_id, status, reason, reason=code)
        if status == SendStatus.SKIPPED:
            self.result.skipped += 1
        else:
            self.result.failed += 1

    def _failed(self, send_id: int, contact_id: int, attempts: int, exc: DeliveryError) -> None:
        s = self.rt.settings
        code = exc.smtp_code
        self.consecutive_failures += 1
        if exc.relay_problem and isinstance(exc, PermanentFailure):
            # The relay refused us (bad password, TLS required, sender rejected): no recipient is at fault.
            self._add(send_id, SendStatus.QUEUED, f"relay refused: {exc}", attempts=attempts - 1, smtp_code=code)
            self.pause_reason = f"the mail relay refused to send: {exc}"
            return
        if isinstance(exc, PermanentFailure):
            self._add(send_id, SendStatus.FAILED, f"rejected: {exc}", smtp_code=code)
            self.rejections.append((send_id, contact_id, code, exc.smtp_message))
            self.result.failed += 1
        elif exc.maybe_delivered:
            # At-most-once: the relay may already have it, so it is not sent again.
            self._add(send_id, SendStatus.FAILED, f"outcome unknown, not resent: {exc}", smtp_code=code)
            self.result.failed += 1
        elif attempts >= s.max_attempts:
            self._add(send_id, SendStatus.FAILED, f"gave up after {attempts} attempts: {exc}", smtp_code=code)
            self.result.failed += 1
        else:
            delay = s.retry_delays[min(attempts - 1, len(s.retry_delays) - 1)]
            self._add(send_id, SendStatus.QUEUED, f"temporary failure, retrying: {exc}", smtp_code=code,
                      next_attempt_at=utcnow() + dt.timedelta(seconds=delay))
            self.result.deferred += 1
        if self.consecutive_failures >= s.max_consecutive_failures and not self.pause_reason:
            self.pause_reason = f"paused after {s.max_consecutive_failures} failed deliveries in a row; last: {exc}"

    def record(self, session: Session, campaign_id: int) -> None:
        """Write this claim's outcomes in bulk: send rows, contacts' last_sent_at, counters, rejections."""
        updates, self.updates = self.updates, []
        sent_contacts, self.sent_contacts = self.sent_contacts, []
        rejections, self.rejections = self.rejections, []
        if not updates:
            return
        # Rows with the same outcome get one UPDATE … WHERE id IN (…): a claim is mostly "sent", so this is one
        # statement instead of one per row. Sent rows carry the time of this write (within a claim of sending).
        now = utcnow()
        groups: dict[tuple, list[int]] = {}
        for row in updates:
            if row["status"] == SendStatus.SENT:
                row["sent_at"] = now
            groups.setdefault(tuple((k, v) for k, v in row.items() if k != "id"), []).append(row["id"])
        for values, ids in groups.items():
            session.execute(update(Send).where(Send.id.in_(ids)).values(dict(values))
                            .execution_options(synchronize_session=False))
        if sent_contacts:
            session.execute(update(Contact).where(Contact.id.in_(sent_contacts)).values(last_sent_at=now))
        if self.mailer.kind != CampaignKind.TRANSACTIONAL:
            # Sends that passed the policy but did not go out (failed, deferred, handed back) no longer count.
            policy_service.unreserve(session, [row["id"] for row in updates
                                               if row["status"] in (SendStatus.FAILED, SendStatus.QUEUED)])
        counts = {status: 0 for status in SendStatus}
        for row in updates:
            counts[row["status"]] += 1
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
            sent=Campaign.sent + counts[SendStatus.SENT], failed=Campaign.failed + counts[SendStatus.FAILED],
            skipped=Campaign.skipped + counts[SendStatus.SKIPPED], held=Campaign.held + counts[SendStatus.HELD]))
        policy = BouncePolicy.from_settings(self.rt.settings)
        for send_id, contact_id, code, message in rejections:
            record_smtp_rejection(session, send_id=send_id, contact_id=contact_id, campaign_id=campaign_id,
                                  code=code, message=message, policy=policy)
        session.commit()


# ---------------------------------------------------------------- test sends

def send_test(rt: Runtime, session: Session, campaign: Campaign, addresses: Sequence[str],
              as_contact: Contact | None = None) -> list[str]:
    """Send the campaign now to up to 10 addresses, personalized as as_contact (or a sample); returns addresses."""
    emails = [normalize_email(a) for a in addresses if a.strip()]
    if not emails:
        raise ValidationError("enter at least one address", field="addresses")
    if len(emails) > 10:
        raise ValidationError("a test goes to at most 10 addresses", field="addresses")
    result = campaign_service.validate(campaign)
    campaign_service.ensure_links(session, campaign, result)
    session.commit()
    mailer = CampaignMailer.for_campaign(rt, session, campaign)
    variables_of = personalization(as_contact, [i.interest for i in as_contact.interests]) if as_contact else None
    session.commit()    # no transaction held while talking to the relay
    pool = rt.relays.pool(mailer.relay or None)
    for email in emails:
        if as_contact is not None:
            name, cid = as_contact.full_name, as_contact.id
            variables = variables_of
        else:
            name, cid = "", 0
            variables = {"email": email, "first_name": "", "last_name": "", "full_name": ""}
        # send id 0: tracking links of a test message work but record nothing.
        envelope_from, data = mailer.message(0, cid, name, email, variables, subject_prefix="[Test] ",
                                             owner_id=as_contact.owner_id if as_contact is not None else None)
        try:
            pool.send(envelope_from, [email], data)
        except DeliveryError as exc:
            raise ValidationError(f"the mail server refused the test to {email}: {exc}") from None
    return emails
