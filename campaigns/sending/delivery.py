"""Delivery: a campaign's messages composed per recipient (CampaignMailer), batch jobs that claim, send and record
them (send_batch); test sends are campaigns.sending.test_sends. Starting, dispatching and finishing campaigns is
campaigns.sending.lifecycle.

A batch claims rows (queued -> sending, with this process as owner and a short lease, campaigns.sending.claims)
and commits *before* talking SMTP; each message's hand-off is recorded in Redis right before it goes to the relay
(campaigns.sending.handoff), and the outcomes are written after. A worker killed in between leaves its rows
claimed; once their lease runs out the sweeper puts the ones never handed over back in the queue and marks the
others `unknown` (the relay may have them): nothing is sent twice by itself, nothing is silently lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from campaigns import queueing, recipient_urls
from campaigns.accounts.settings_store import RetrySchedule, retry_schedule
from campaigns.composing import contributions
from campaigns.composing import editor as campaign_service
from campaigns.composing.contributions import Contributor, Hold, Recipient
from campaigns.config import PolicySettings
from campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    ContactInterest,
    ContactStatus,
    Send,
    SendStatus,
    Subscription,
    utcnow,
)
from campaigns.runtime import Runtime
from campaigns.sending import claims, release, reputation
from campaigns.sending import policy as policy_service
from campaigns.sending import variants as variants_service
from campaigns.sending.finishing import maybe_finish
from campaigns.sending.handoff import Handoff
from campaigns.sending.lifecycle import UNSENDABLE, pause
from mailer.compose import CompiledCampaign, TemplateError
from mailer.message import Attachment, MessageTemplate, format_address, format_date, serialize
from mailer.tracking import Purpose

logger = logging.getLogger(__name__)

DATABASE_PATIENCE = 300.0   # seconds a batch waits for an unreachable database before giving up (the sweeper
                            # then settles its claims and queues the work again)
_Delivery = Handoff         # the per-claim sender's former name
YIELDED = "yielded"         # a batch stopped between claims because transactional mail waits (taken first)


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
    # What features add to each message (a coupon, a survey, digest items: campaigns.composing.contributions),
    # each contributor with its state for this batch.
    contributions: list[tuple[Contributor, Any]] = field(default_factory=list)
    retry: RetrySchedule | None = None   # 4xx retries (Settings page, else the environment)
    reply_domain: str = ""               # REPLY_ADDRESSES on: Reply-To reply+TOKEN@this (campaigns.replies)
    # An A/B test's variants B-D (campaigns.sending.variants) and, per claim, the variant of each claimed send.
    variants: dict[int, variants_service.VariantMail] = field(default_factory=dict)
    variant_of: dict[int, int] = field(default_factory=dict)

    @classmethod
    def for_campaign(cls, rt: Runtime, session: Session, campaign: Campaign) -> CampaignMailer:
        """Compile (cached) and prepare shared headers."""
        s = rt.settings
        result = campaign_service.compiled(campaign)
        ids = campaign_service.link_ids(session, campaign.id)
        if len(ids) != len(result.links):   # flushed here; whoever opened the session commits them
            ids = campaign_service.ensure_links(session, campaign, result)
        from_name, from_email = campaign_service.from_identity(campaign, s)

        def headers_from(name: str, email: str, reply_to: str) -> MessageTemplate:
            return MessageTemplate.create(
                from_name=name, from_email=email,
                reply_to=reply_to, feedback_id=f"{campaign.id}:{campaign.kind}:rapport",
                list_id=f"{s.sender_name} <{campaign.kind}.{s.dkim_domain}>"
                if campaign.kind != CampaignKind.TRANSACTIONAL else "",
            )

        template = headers_from(from_name, from_email, campaign.reply_to)
        postal = campaign_service.postal_address(session, s)
        sender = campaign_service.sender_context(from_name, from_email, postal)
        owners = {o.id: (headers_from(o.name, o.email, campaign.reply_to or o.reply_to or ""),
                         campaign_service.sender_context(o.name, o.email, postal, o.title or ""))
                  for o in campaign_service.owner_senders(session, campaign)}
        extras = campaign_service.sample_extras(session, contributions.attributes_of(campaign), s.base_url, rt.tokens)
        mails = variants_service.prepare(session, campaign, headers_from,
                                         lambda n, e: campaign_service.sender_context(n, e, postal))
        for compiled_one, sender_one in [(result, sender)] + [(v.compiled, v.sender or sender) for v in mails.values()]:
            # marketing: postal address and unsubscribe link, or no mail (every A/B variant)
            campaign_service.check_compliance(campaign.kind, compiled_one, sender_one, extras)
        return cls(rt=rt, campaign_id=campaign.id, kind=str(campaign.kind), compiled=result, link_ids=ids,
                   template=template, envelope_domain=s.return_domain, sender=sender, owners=owners,
                   topic_ids=frozenset(t.id for t in campaign.topics), all_contacts=campaign.all_contacts,
                   relay=campaign.relay, policy=policy_service.load(session, s.policy),
                   valid_until=campaign.valid_until, contributions=contributions.prepare(rt, session, campaign),
                   retry=retry_schedule(session, s), reply_domain=s.reply_address_domain,
                   variants=mails)

    def content(self, variant: int | None) -> tuple[CompiledCampaign, list[int], variants_service.VariantMail | None]:
        """The compiled content and link ids of an A/B variant (None or 0: the campaign's own), and the variant."""
        chosen = self.variants.get(variant) if variant else None
        return (chosen.compiled, chosen.link_ids, chosen) if chosen else (self.compiled, self.link_ids, None)

    def message(self, send_id: int, contact_id: int, to_name: str, to_email: str,
                contact_vars: dict, *, subject_prefix: str = "", owner_id: int | None = None,
                variant: int | None = None, variables: Mapping[str, Any] | None = None,
                attachments: Sequence[Attachment] = (), message_token: str = "", tx_id: int = 0) -> tuple[str, bytes]:
        """Envelope sender and signed message bytes for one recipient (from their owner, in owner mode), in the
        send's A/B variant (variant_of, or `variant` for a test); variables, message_token (Message-ID and
        return path) and tx_id (its open and click tokens): a transactional message's, which has no send row."""
        envelope_from, headers, body = self.unsigned(
            send_id, contact_id, to_name, to_email, contact_vars, subject_prefix=subject_prefix, owner_id=owner_id,
            variant=variant, variables=variables, attachments=attachments, message_token=message_token, tx_id=tx_id)
        signer = self.rt.signer
        prefix = signer.sign(headers, body) if signer is not None else b""
        return envelope_from, serialize(headers, body, prefix)

    def unsigned(self, send_id: int, contact_id: int, to_name: str, to_email: str,
                 contact_vars: dict, *, subject_prefix: str = "", owner_id: int | None = None,
                 variant: int | None = None, variables: Mapping[str, Any] | None = None,
                 attachments: Sequence[Attachment] = (), message_token: str = "",
                 tx_id: int = 0) -> tuple[str, list[tuple[str, str]], bytes]:
        """As message(), before DKIM: envelope sender, headers and body (the send path signs them in a helper
        process, mailer.dkim_helper, while it renders the next recipient)."""
        template, sender = self.owners.get(owner_id, (self.template, self.sender)) if owner_id else \
            (self.template, self.sender)
        compiled, link_ids, chosen = self.content(self.variant_of.get(send_id) if variant is None else variant)
        if chosen is not None and chosen.template is not None:
            template, sender = chosen.template, chosen.sender or sender
        tokens = self.rt.tokens
        base = self.rt.settings.base_url
        seal = tokens.seal

        def click(i: int) -> str:   # called at most once per link and recipient (see mailer.compose.LinkURLs)
            if tx_id:
                return recipient_urls.sealed(base, tokens, Purpose.TX_CLICK, tx_id, link_ids[i])
            return recipient_urls.sealed(base, tokens, Purpose.CLICK, send_id, link_ids[i])

        # A test (send id 0) personalised as a contact goes to someone else: its links name no contact.
        link_contact = contact_id if send_id else 0
        unsub_token = seal(Purpose.UNSUBSCRIBE, link_contact, self.campaign_id)
        unsubscribe_url = recipient_urls.url(base, Purpose.UNSUBSCRIBE, unsub_token)
        ctx = {
            "contact": contact_vars,
            "sender": sender,
            "unsubscribe_url": unsubscribe_url,
            "preferences_url": recipient_urls.sealed(base, tokens, Purpose.PREFERENCES, link_contact),
        }
        if variables:
            ctx.update(variables)
        if self.contributions:   # most campaigns have none: no per-message copy of the context then
            ctx.update(contributions.variables(self.contributions, Recipient(send_id, contact_id, ctx)))
        subject, text_part, html_part = compiled.render_mime(
            ctx, click, recipient_urls.sealed(base, tokens, Purpose.TX_OPEN, tx_id) if tx_id
            else recipient_urls.sealed(base, tokens, Purpose.OPEN, send_id))
        msg_token = message_token or seal(Purpose.MESSAGE, send_id)
        domain = self.rt.settings.dkim_domain
        headers, body = template.build(
            to_name=to_name, to_email=to_email, subject=subject_prefix + subject,
            message_id=f"<{msg_token}@{domain}>", date=format_date(time.time()), parts=(text_part, html_part),
            list_unsubscribe=(unsubscribe_url, f"mailto:unsubscribe+{unsub_token}@{self.envelope_domain}")
            if self.kind != CampaignKind.TRANSACTIONAL else (),
            extra=(("X-Rapport-ID", msg_token),), attachments=attachments,
            reply_to=format_address(sender["name"], recipient_urls.reply_address(tokens, self.reply_domain, send_id))
            if self.reply_domain and send_id else "",
        )
        return f"bounces+{msg_token}@{self.envelope_domain}", headers, body


# ---------------------------------------------------------------- batch delivery

@dataclass
class BatchResult:
    """What one batch job did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    held: int = 0
    deferred: int = 0
    unknown: int = 0                 # handed to the relay, no reply: the relay may have it (docs/delivery.md)
    held_by_rule: dict[str, int] = field(default_factory=dict)   # policy holds by rule (the metrics count them)
    stopped: str = ""


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
    # No topics (all contacts, or a segment alone): the audience never asked for a topic subscription.
    if mailer.all_contacts or not mailer.topic_ids or not ok or mailer.kind == CampaignKind.TRANSACTIONAL:
        return ok
    subscribed = set(session.scalars(select(Subscription.contact_id).where(
        Subscription.contact_id.in_(ok), Subscription.topic_id.in_(mailer.topic_ids),
        Subscription.subscribed.is_(True))))
    return ok & subscribed


def send_batch(rt: Runtime, campaign_id: int, lo: int, hi: int) -> BatchResult:
    """Deliver the due queued sends of a campaign whose contact ids lie in [lo, hi], claim by claim."""
    result = BatchResult()
    with rt.session_factory() as session:
        campaign = campaign_service.get_campaign(session, campaign_id)
        if campaign.status != CampaignStatus.RUNNING:
            result.stopped = str(campaign.status)
            return result
        try:
            mailer = CampaignMailer.for_campaign(rt, session, campaign)
            session.commit()
        except TemplateError as exc:
            pause(session, campaign, f"template error: {exc}")
            session.commit()
            result.stopped = "template error"
            return result
    sender = Handoff(rt, mailer, rt.relays.pool(mailer.relay or None), result)
    try:
        _deliver_claims(rt, campaign_id, lo, hi, mailer, sender, result)
    finally:
        sender.close()
        # Rows whose outcome could not be written stay claimed until their lease runs out; the sweeper settles
        # them (handed: unknown, the rest: queued again).
        sender.lessee.release(list(sender.holding), forget_handed=False)
    _finish_batch(rt, campaign_id, lo, hi, result, mailer)
    if result.stopped == YIELDED:   # the rest of the range: first in the bulk queue, after the transactional jobs
        queueing.enqueue(rt.queue, queueing.Job.SEND_BATCH, campaign_id, lo, hi, at_front=True)
    logger.debug("campaign %s batch %s-%s: %s", campaign_id, lo, hi, result)   # one per batch: DEBUG
    return result


def _deliver_claims(rt: Runtime, campaign_id: int, lo: int, hi: int, mailer: CampaignMailer,
                    sender: Handoff, result: BatchResult) -> None:
    """Claim, send and record in rounds of claim_size until nothing is due, or the campaign stops.

    A database that goes away is waited for (with backoff, up to DATABASE_PATIENCE): outcomes already obtained
    stay in memory and are written when it is back.
    """
    waited = 0.0
    while not result.stopped:
        try:
            if sender.updates:      # outcomes of a round whose write failed
                sender.record(campaign_id)
            if not _claim_round(rt, campaign_id, lo, hi, mailer, sender, result):
                break
            waited = 0.0
            if sender.yielded or rt.tx_queue.count:   # transactional mail waits: this worker takes it next
                result.stopped = YIELDED
        except OperationalError as exc:
            if waited >= DATABASE_PATIENCE:
                raise
            pause_s = min(2.0 ** max(1, waited // 5), 10.0)
            logger.warning("campaign_id=%s: database unavailable (%s); retrying in %.0fs", campaign_id,
                           str(exc).splitlines()[0], pause_s)
            time.sleep(pause_s)
            waited += pause_s


def _claim_round(rt: Runtime, campaign_id: int, lo: int, hi: int, mailer: CampaignMailer, sender: Handoff,
                 result: BatchResult) -> bool:
    """One claim: check, send, record. False when there was nothing to claim.

    Its own session, committed in steps: the claim, then the checks and the policy's ledger rows (before anything
    is sent), then after the hand-off the outcomes (Handoff.record) and a pause.
    """
    with rt.session_factory() as session:
        status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        if status != CampaignStatus.RUNNING:
            result.stopped = str(status)
            return False
        claimed, created = claims.claim(session, rt, campaign_id, lo, hi, sender.claim_size, sender.owner)
        session.commit()    # the claim first: the rows are this worker's before anything else is decided
        if not claimed:
            return False
        sender.lessee.hold(created)
        if mailer.variants:
            mailer.variant_of = variants_service.variants_of_sends(session, [sid for sid, _c, _a in claimed])
        sender.holding.update(created)
        sender.created = created
        try:
            ids = [c for _, c, _ in claimed]
            checked_at = time.time()
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
            # contact across workers (see campaigns.sending.policy).
            held = policy_service.decide(session, mailer.kind, mailer.policy,
                                         {c: s for s, c, _a in claimed if c in eligible}, contacts, now)
            # Features' holds before rendering (a coupon pool run dry): those sends go back and the campaign pauses.
            recipients = [(sid, cid) for sid, cid, _a in claimed if cid in eligible and cid not in held]
            for contributor, state in mailer.contributions:
                hold = contributor.hold(session, state, recipients)
                if hold is None:
                    continue
                _hold_back(session, campaign_id, hold)
                dropped = set(hold.send_ids)
                claimed = [row for row in claimed if row[0] not in dropped]
                recipients = [(sid, cid) for sid, cid in recipients if sid not in dropped]
                sender.lessee.release(hold.send_ids, forget_handed=False)
                sender.holding.difference_update(dropped)
            session.commit()    # hold no transaction (or SQLite lock) while talking to the relay
        except OperationalError:
            session.rollback()
            # Nothing of this claim was sent: it goes back to the queue when the database is back.
            for sid, _cid, att in claimed:
                sender.attempts = att - 1
                sender._add(sid, SendStatus.QUEUED, "")
            raise
        sender.run(claimed, contacts, interests, eligible, held, expired=expired, checked_at=checked_at)
        sender.record(campaign_id)
        if not sender.pause_reason and mailer.kind != CampaignKind.TRANSACTIONAL:
            sender.pause_reason = reputation.pause_reason(rt, session, campaign_id)
            session.commit()
        if sender.pause_reason:
            session.execute(update(Campaign).where(Campaign.id == campaign_id,
                                                   Campaign.status == CampaignStatus.RUNNING)
                            .values(status=CampaignStatus.PAUSED, status_reason=sender.pause_reason))
            session.commit()
            logger.warning("campaign %s paused: %s", campaign_id, sender.pause_reason)
            result.stopped = "paused"
        return True


def _hold_back(session: Session, campaign_id: int, hold: Hold) -> None:
    """Put claimed sends a feature held back in the queue again (they were not sent) and pause the running
    campaign with the feature's reason; the claim's transaction commits it."""
    if hold.send_ids:
        session.execute(update(Send).where(Send.id.in_(list(hold.send_ids)), Send.status == SendStatus.SENDING)
                        .values(status=SendStatus.QUEUED, claimed_at=None, attempts=Send.attempts - 1,
                                last_error=hold.reason[:1000]))
        policy_service.unreserve(session, hold.send_ids)
    session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.RUNNING)
                    .values(status=CampaignStatus.PAUSED, status_reason=hold.reason))
    logger.warning("campaign %s paused: %s", campaign_id, hold.reason)


def _finish_batch(rt: Runtime, campaign_id: int, lo: int, hi: int, result: BatchResult,
                  mailer: CampaignMailer) -> None:
    """Finish the campaign when nothing is left (deferred sends are picked up by the sweeper at their time).

    Held sends expire here once the campaign's validity has ended; after nurture mail went out, held sends of
    other campaigns to these contacts are re-checked at once (the ratio may allow them now).
    """
    with rt.session_factory() as session:
        if mailer.valid_until is not None and mailer.valid_until <= utcnow():
            release.expire_held(session, campaign_id,
                                f"expired: the campaign was valid until {mailer.valid_until:%Y-%m-%d %H:%M} UTC")
            session.commit()
        maybe_finish(session, campaign_id)
        session.commit()
    if mailer.kind == CampaignKind.NURTURE and result.sent and mailer.policy.enabled:
        release.release_held(rt, contact_range=(lo, hi))
