"""Handing one claim's messages to the relay and writing their outcomes back in bulk (used by delivery.send_batch).

Each message is checked and recorded in Redis right before SMTP (claims.Lessee.handoff): a contact who stopped
since the claim's database check is skipped, and a worker killed from then on leaves the row `unknown`, never
lost and never sent twice. Outcomes are written only to rows this process still holds.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from campaigns import stops
from campaigns.accounts.settings_store import default_retry_schedule
from campaigns.contacts.records import personalization
from campaigns.models import Campaign, CampaignKind, CampaignStatus, Contact, Send, SendReason, SendStatus, utcnow
from campaigns.runtime import Runtime
from campaigns.sending import claims, records, rejections
from campaigns.sending import policy as policy_service
from campaigns.sending.lifecycle import skip_reason
from mailer.compose import TemplateError
from mailer.message import serialize
from mailer.transport import DeliveryError, PermanentFailure

if TYPE_CHECKING:
    from campaigns.sending.delivery import BatchResult, CampaignMailer

logger = logging.getLogger(__name__)

# A message handed back because Redis was away (before any SMTP) waits this long before it is claimed again.
HAND_BACK_DELAY = dt.timedelta(seconds=5)


class Handoff:
    """Sends claimed rows and collects their outcomes for one bulk write per claim.

    Messages are rendered and signed in this thread while sender threads talk SMTP: the relay's replies (and a
    full socket buffer) no longer stall the CPU work. At most IN_FLIGHT messages wait for the relay, and outcomes
    are settled in order, so pausing and at-most-once behave as with one thread.

    In a worker, DKIM signing runs in a helper process (Runtime.signing, mailer.dkim_helper): each rendered message
    goes to it at once and is collected SIGN_AHEAD messages later, so this thread renders while the helper signs.
    Measured and rejected: signing in a thread of its own, or in the sender threads. OpenSSL releases the GIL for
    the RSA signature, but the threads' Python work then convoys on the GIL and one worker got slower, not faster.
    """

    IN_FLIGHT = 8
    SIGN_AHEAD = 2        # messages rendered and handed to the signing helper before the oldest is collected
    URGENT_CHECK = 0.05   # seconds between looks at the transactional queue (one LLEN) while a claim is sent
    STATUS_CHECK = 0.5    # seconds between looks at the campaign's status (one SELECT) while a claim is sent

    def __init__(self, rt: Runtime, mailer: CampaignMailer, pool, result: BatchResult) -> None:
        self.rt = rt
        self.mailer = mailer
        self.pool = pool
        self.result = result
        self.lessee = claims.lessee(rt)
        self.owner = self.lessee.owner
        self.updates: list[dict] = []
        self.sent_contacts: list[int] = []
        self.rejections: list[tuple[int, int, int | None, str]] = []
        self.consecutive_failures = 0
        self.template_failures = 0
        self.pause_reason = ""
        self.revoked = False
        self.yielded = False          # transactional mail was waiting: the claim's rest went back to the queue
        self.halted = ""              # the campaign stopped running (a person paused or cancelled it) mid-claim
        self._next_look = time.monotonic() + self.URGENT_CHECK
        self._next_status = time.monotonic() + self.STATUS_CHECK
        self.attempts = 0
        self.since = 0.0
        self.created: dict[int, dt.datetime] = {}   # send id -> when queued (the retry schedule's max age)
        self.holding: set[int] = set()   # rows claimed by this job whose outcome is not written yet
        self._local = threading.local()   # per sender thread: its records.Line
        self._lines: list[records.Line] = []
        self._lines_lock = threading.Lock()
        self.claim_size = claims.size(rt.settings.claim_size, pool.relay)
        self.members = stops.stopped_members(mailer.kind, mailer.topic_ids, mailer.all_contacts)
        # Two connections, so one message's round trips to the relay overlap the next one's.
        self.sender = ThreadPoolExecutor(max_workers=min(2, pool.relay.max_connections),
                                         thread_name_prefix="smtp-sender")

    def close(self) -> None:
        """Stop the sender threads (after the messages they hold) and give their Redis connections back."""
        self.sender.shutdown(wait=True)
        for line in self._lines:
            line.close()
        self._lines = []

    def _line(self) -> records.Line:
        """This sender thread's Redis connection for its hand-off records (opened on first use)."""
        line = getattr(self._local, "line", None)
        if line is None:
            line = self._local.line = records.Line(self.lessee)
            with self._lines_lock:
                self._lines.append(line)
        return line

    def _send(self, send_id: int, contact_id: int, envelope_from: str, to: list[str], data: bytes) -> None:
        """In a sender thread: talk SMTP, recording the hand-off (and checking for a stop) right before MAIL FROM,
        after any wait for the relay's rate limit or a free connection, and the relay's 250 right after it is read
        (a worker killed from then on leaves the row `sent`: only a message whose reply was not read is `unknown`).
        """
        owner = self.owner
        line = self._line()
        gate = records.HandOff(line, owner, send_id, [m.format(c=contact_id) for m in self.members], self.since)
        self.pool.send(envelope_from, to, data, gate=gate)
        line.accepted(owner, send_id)

    def run(self, claimed: Sequence[tuple[int, int, int]], contacts: dict[int, Contact],
            interests: dict[int, list[str]], eligible: set[int], held: dict[int, str], *,
            expired: bool = False, checked_at: float | None = None) -> None:
        """Send the claim's messages and collect their outcomes (eligibility was checked at checked_at)."""
        # Stops recorded from a little before the database check count (clocks of web and worker may differ).
        self.since = (checked_at or time.time()) - 30
        in_flight: deque[tuple[int, int, int, Future]] = deque()
        signing = self.rt.signing()
        signing_queue: deque[tuple[tuple, int]] = deque()
        for index, (send_id, contact_id, attempts) in enumerate(claimed):
            if self.pause_reason or self.revoked or self._urgent() or self._stopped_running():
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
                code, why = skip_reason(contact)
                self._done(send_id, SendStatus.SKIPPED, why, code)
                continue
            if contact_id in held:
                reason = held[contact_id]
                self._done(send_id, SendStatus.HELD, policy_service.explain(reason, contact, self.mailer.policy),
                           reason)
                continue
            try:
                envelope_from, headers, body = self.mailer.unsigned(
                    send_id, contact_id, contact.full_name, contact.email,
                    personalization(contact, interests.get(contact_id, ())), owner_id=contact.owner_id)
            except TemplateError as exc:
                self._template_failed(send_id, exc)
                continue
            self.template_failures = 0
            message = (send_id, contact_id, attempts, envelope_from, contact.email, headers, body)
            if signing is None:
                signer = self.rt.signer
                try:
                    prefix = signer.sign(headers, body) if signer is not None else b""
                except ValueError as exc:
                    self._unsignable(send_id, exc)
                    continue
                self._hand(in_flight, message, prefix)
                continue
            # Signed in the helper process while the next recipients are rendered; collected SIGN_AHEAD later.
            signing_queue.append((message, signing.submit(headers, body)))
            if len(signing_queue) > self.SIGN_AHEAD:
                self._collect(signing, signing_queue.popleft(), in_flight)
        while signing_queue:      # rendered before a stop: on their way like the ones in flight
            self._collect(signing, signing_queue.popleft(), in_flight)
        while in_flight:
            self._settle(*in_flight.popleft())

    def _collect(self, signing, signed: tuple[tuple, int], in_flight: deque) -> None:
        message, ticket = signed
        try:
            prefix = signing.result(ticket)
        except ValueError as exc:
            self._unsignable(message[0], exc)
            return
        self._hand(in_flight, message, prefix)

    def _unsignable(self, send_id: int, exc: ValueError) -> None:
        """DKIM refused the message (a header or body it cannot sign): that send fails with the reason, counted
        like a template failure, so a systematic fault pauses the campaign instead of failing every batch."""
        self._template_failed(send_id, TemplateError(f"the message could not be DKIM-signed: {exc}"), "message")

    def _hand(self, in_flight: deque, message: tuple, prefix: bytes) -> None:
        """Give one signed message to a sender thread; settle the oldest while IN_FLIGHT wait for the relay."""
        send_id, contact_id, attempts, envelope_from, to, headers, body = message
        in_flight.append((send_id, contact_id, attempts,
                          self.sender.submit(self._send, send_id, contact_id, envelope_from, [to],
                                             serialize(headers, body, prefix))))
        while len(in_flight) >= self.IN_FLIGHT:
            self._settle(*in_flight.popleft())

    def _urgent(self) -> bool:
        """Whether transactional mail waits on its queue (looked at every URGENT_CHECK seconds): the batch then
        stops after the messages in flight, so a worker takes the transactional job within moments, not after the
        whole claim (campaigns.sending.delivery re-queues the rest of the batch behind it)."""
        now = time.monotonic()
        if not self.yielded and now >= self._next_look:
            self._next_look = now + self.URGENT_CHECK
            try:
                self.yielded = bool(self.rt.tx_queue.count)
            except RedisError:
                self.yielded = False      # Redis away: the claim's own hand-off checks will say so
        return self.yielded

    def _stopped_running(self) -> bool:
        """Whether the campaign left `running` (paused or cancelled by a person), looked at every STATUS_CHECK
        seconds: the claim then stops after the messages in flight, as for transactional mail, so a pause takes
        effect within moments whatever the claim's size or the relay's rate limit."""
        now = time.monotonic()
        if not self.halted and now >= self._next_status:
            self._next_status = now + self.STATUS_CHECK
            try:
                with self.rt.session_factory() as session:
                    status = session.scalar(select(Campaign.status).where(Campaign.id == self.mailer.campaign_id))
            except OperationalError:
                return False        # the database is away: the claim's own write will wait for it
            if status != CampaignStatus.RUNNING:
                self.halted = str(status)
        return bool(self.halted)

    def _template_failed(self, send_id: int, exc: TemplateError, what: str = "template") -> None:
        self._done(send_id, SendStatus.FAILED, f"{what}: {exc}"[:1000])
        self.template_failures += 1
        limit = self.rt.settings.max_template_failures
        if self.template_failures >= limit and not self.pause_reason:
            # A template that fails for many recipients is broken: stop before it burns through the audience.
            self.pause_reason = (f"paused: the template failed for {limit} recipients in a row; last: {exc}. "
                                 "Fix the template and press Send to resume.")

    def _settle(self, send_id: int, contact_id: int, attempts: int, outcome: Future) -> None:
        self.attempts = attempts
        try:
            outcome.result()
        except records.Stopped:
            self._done(send_id, SendStatus.SKIPPED, "contact unsubscribed while the campaign was sending",
                       SendReason.UNSUBSCRIBED)
            return
        except records.NotHanded as exc:
            self.revoked = self.revoked or isinstance(exc.__cause__, claims.ClaimRevoked)
            self.attempts = attempts - 1   # no attempt was made
            self._add(send_id, SendStatus.QUEUED, f"not sent yet: {exc}", next_attempt_at=utcnow() + HAND_BACK_DELAY)
            return
        except DeliveryError as exc:
            self._failed(send_id, contact_id, attempts, exc)
            return
        except Exception as exc:
            logger.warning("campaign_id=%s send %s handed back: %s", self.mailer.campaign_id, send_id, exc)
            self.attempts = attempts - 1
            self._add(send_id, SendStatus.QUEUED, f"not sent yet: {exc}"[:1000],
                      next_attempt_at=utcnow() + HAND_BACK_DELAY)
            return
        self.consecutive_failures = 0
        self._add(send_id, SendStatus.SENT, "", smtp_code=250)   # sent_at: when recorded (see record())
        self.sent_contacts.append(contact_id)

    def _add(self, send_id: int, status: SendStatus, error: str, **extra: object) -> None:
        row = {"id": send_id, "status": status, "last_error": error[:1000], "attempts": self.attempts,
               "sent_at": None, "smtp_code": None, "next_attempt_at": None, "reason": ""}
        row.update(extra)
        self.updates.append(row)

    def _done(self, send_id: int, status: SendStatus, reason: str, code: str = "") -> None:
        if status == SendStatus.HELD:
            # Not an attempt: the send goes back to waiting, and is claimed again when released.
            self._add(send_id, status, reason, reason=code, attempts=self.attempts - 1)
            return
        self._add(send_id, status, reason, reason=code)

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
        elif exc.maybe_delivered:
            # The whole message was written and no reply came: the relay may have it. Not resent by itself.
            self._add(send_id, SendStatus.UNKNOWN, f"outcome unknown: {exc}", smtp_code=code)
        else:
            self._defer(send_id, attempts, exc, code)
        if self.consecutive_failures >= s.max_consecutive_failures and not self.pause_reason:
            self.pause_reason = f"paused after {s.max_consecutive_failures} failed deliveries in a row; last: {exc}"

    def _defer(self, send_id: int, attempts: int, exc: DeliveryError, code: int | None) -> None:
        """A temporary failure: retry at the next time of the schedule, or fail with the relay's last reply."""
        schedule = self.mailer.retry or default_retry_schedule(self.rt.settings)
        delays = schedule.delays
        retry_at = utcnow() + dt.timedelta(seconds=delays[min(attempts - 1, len(delays) - 1)])
        created = self.created.get(send_id)
        too_old = created is not None and retry_at - created > dt.timedelta(seconds=schedule.max_age)
        if attempts >= schedule.max_attempts or too_old:
            why = f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}" + (
                f" (retries end {schedule.max_age / 3600:g} h after queueing)" if too_old else "")
            self._add(send_id, SendStatus.FAILED, f"{why}; last reply: {exc}", smtp_code=code)
            return
        self._add(send_id, SendStatus.QUEUED, f"temporary failure, retrying: {exc}", smtp_code=code,
                  next_attempt_at=retry_at)
        self.result.deferred += 1

    def record(self, campaign_id: int) -> None:
        """Write this claim's outcomes in bulk (kept in memory until the write commits): send rows, contacts'
        last_sent_at, counters, rejections; then release the claim. In a session of its own, committed here: the
        outcomes are durable before the claim is let go."""
        if not self.updates:
            return
        with self.rt.session_factory() as session:
            counts, written = self._write(session, campaign_id)
            session.commit()
        self._written(counts, written)

    def _write(self, session: Session, campaign_id: int) -> tuple[dict[SendStatus, int], set[int]]:
        """The outcomes' statements; returns rows written per status and the ids written."""
        # Rows with the same outcome get one UPDATE … WHERE id IN (…): a claim is mostly "sent", so this is one
        # statement instead of one per row. Sent rows carry the time of this write (within a claim of sending).
        # Only rows this process still holds are written: a claim the sweeper took back is its business now
        # (a row it marked unknown may still learn its real outcome here).
        now = utcnow()
        groups: dict[tuple, list[int]] = {}
        for row in self.updates:
            row = dict(row, sent_at=now) if row["status"] == SendStatus.SENT else row
            groups.setdefault(tuple((k, v) for k, v in row.items() if k != "id"), []).append(row["id"])
        counts = {status: 0 for status in SendStatus}
        written: set[int] = set()
        for values, ids in groups.items():
            values = dict(values)
            if values["status"] == SendStatus.QUEUED:
                values.update(claimed_by=None, lease_until=None)
            rows = session.execute(
                update(Send).where(Send.id.in_(ids), Send.claimed_by == self.owner,
                                   Send.status.in_([SendStatus.SENDING, SendStatus.UNKNOWN]))
                .values(values).returning(Send.id).execution_options(synchronize_session=False)).all()
            counts[values["status"]] += len(rows)
            written.update(r[0] for r in rows)
        if self.sent_contacts:
            session.execute(update(Contact).where(Contact.id.in_(self.sent_contacts)).values(last_sent_at=now))
        if self.mailer.kind != CampaignKind.TRANSACTIONAL:
            # Sends that passed the policy but did not go out (failed, deferred, handed back) no longer count.
            policy_service.unreserve(session, [row["id"] for row in self.updates if row["id"] in written
                                               and row["status"] in (SendStatus.FAILED, SendStatus.QUEUED,
                                                                     SendStatus.SKIPPED)])
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
            sent=Campaign.sent + counts[SendStatus.SENT], failed=Campaign.failed + counts[SendStatus.FAILED],
            skipped=Campaign.skipped + counts[SendStatus.SKIPPED], held=Campaign.held + counts[SendStatus.HELD]))
        for send_id, contact_id, code, message in self.rejections:
            if send_id in written:   # a bounce, recorded by whoever registered for it (campaigns.feedback)
                rejections.record(session, self.rt.settings,
                                  rejections.Rejection(send_id, contact_id, campaign_id, code, message))
        return counts, written

    def _written(self, counts: dict[SendStatus, int], written: set[int]) -> None:
        """After the commit: release the claim's rows, count the outcomes, start afresh."""
        ids = [row["id"] for row in self.updates]
        self.lessee.release(ids, owner=self.owner)
        self.holding.difference_update(ids)
        for status in (SendStatus.SENT, SendStatus.FAILED, SendStatus.SKIPPED, SendStatus.HELD, SendStatus.UNKNOWN):
            setattr(self.result, str(status), getattr(self.result, str(status)) + counts[status])
        for row in self.updates:
            if row["status"] == SendStatus.HELD and row["id"] in written:
                rule = row["reason"] or "other"
                self.result.held_by_rule[rule] = self.result.held_by_rule.get(rule, 0) + 1
        self.updates, self.sent_contacts, self.rejections = [], [], []
        if self.revoked:
            # This owner's remaining claims belong to the sweeper now; later claims use a fresh owner id.
            self.lessee.renew_owner()
            self.owner = self.lessee.owner
            self.revoked = False

