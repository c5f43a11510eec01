"""Routing outbox events to deliveries, and posting them: claims, signed attempts, backoff, auto-disable.

`route` (the periodic `webhooks` task, and enqueued right after a commit that wrote events) turns unrouted events
into one delivery per endpoint that wants them, fails deliveries whose 24 hours have passed, forgets old ones, and
enqueues one `deliver_webhooks` job per endpoint with deliveries due. `deliver` claims an endpoint's due deliveries
in small rounds — a lease (`claim`, `claimed_until`) taken with SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL
(SQLite has one writer) — and posts them oldest first. A failed attempt ends the round (the endpoint is probably
down: its other deliveries wait for the next run rather than each waiting for a timeout), schedules the retry by
Settings.webhook_retry_delays, and counts towards disabling the endpoint. A worker that dies mid-round leaves a
lease that simply expires: the next run posts those deliveries again (receivers drop duplicates by webhook-id).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.orm import Session

from campaigns import queueing, webhook_events
from campaigns.accounts import audit
from campaigns.config import Settings
from campaigns.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from campaigns.runtime import Runtime
from campaigns.webhooks import signing, transport

logger = logging.getLogger(__name__)

ROUTE_PAGE = 500
CLAIM_SIZE = 20
LEASE = dt.timedelta(minutes=5)      # > CLAIM_SIZE attempts at the longest timeout
PAUSE = dt.timedelta(minutes=1)      # an endpoint rests this long after a failed attempt (not per new event)


def _deliver_key(rt: Runtime, endpoint_id: int) -> str:
    return f"rapport:{rt.settings.queue_name}:webhooks:deliver:{endpoint_id}"


# -- routing -------------------------------------------------------------------------------------------------------

def route(rt: Runtime, now: dt.datetime | None = None) -> int:
    """Route every unrouted event, expire and forget old deliveries, enqueue delivery jobs; returns events routed."""
    webhook_events.route_started(rt.redis, rt.settings.queue_name)
    routed = 0
    while True:
        with rt.session_factory() as session:
            count = _route_page(rt, session, now or utcnow())
            session.commit()
        routed += count
        if count < ROUTE_PAGE:
            break
    with rt.session_factory() as session:
        expire(rt, session, now or utcnow())
        session.commit()
    enqueue_due(rt, now)
    return routed


def _route_page(rt: Runtime, session: Session, now: dt.datetime) -> int:
    query = select(WebhookEvent).where(~WebhookEvent.routed).order_by(WebhookEvent.id).limit(ROUTE_PAGE)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    events = session.scalars(query).all()
    if not events:
        return 0
    endpoints = session.scalars(select(WebhookEndpoint)).all()
    until = now + dt.timedelta(seconds=rt.settings.webhook_give_up_after)
    rows = []
    for ev in events:
        for ep in endpoints:
            if ev.endpoint_id is not None:
                if ev.endpoint_id != ep.id:
                    continue
            elif not ep.enabled or ev.type not in (ep.event_types or ()) or (ev.machine and not ep.include_machine):
                continue
            rows.append({"endpoint_id": ep.id, "event_id": ev.id, "status": DeliveryStatus.PENDING.value,
                         "attempts": 0, "next_attempt_at": now, "retry_until": until, "claim": "",
                         "last_response": "", "last_error": "", "created_at": now})
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    session.execute(update(WebhookEvent).where(WebhookEvent.id.in_([e.id for e in events])).values(routed=True))
    return len(events)


def expire(rt: Runtime, session: Session, now: dt.datetime) -> None:
    """Fail pending deliveries past their 24 hours; delete finished deliveries and events older than keep_days."""
    session.execute(update(WebhookDelivery)
                    .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.retry_until < now)
                    .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None, claim="", claimed_until=None,
                            last_error="gave up: no successful attempt within the retry window"))
    old = now - dt.timedelta(days=rt.settings.webhook_keep_days)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.status != DeliveryStatus.PENDING,
                                                  WebhookDelivery.created_at < old))
    session.execute(delete(WebhookEvent).where(
        WebhookEvent.routed, WebhookEvent.created_at < old,
        ~exists().where(WebhookDelivery.event_id == WebhookEvent.id)))


def enqueue_due(rt: Runtime, now: dt.datetime | None = None) -> list[int]:
    """One deliver_webhooks job per enabled endpoint with due deliveries (unless one is already queued/running)."""
    now = now or utcnow()
    with rt.session_factory() as session:
        ids = session.scalars(
            select(WebhookDelivery.endpoint_id).distinct()
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookEndpoint.enabled,
                   WebhookEndpoint.paused_until.is_(None) | (WebhookEndpoint.paused_until <= now),
                   WebhookDelivery.status == DeliveryStatus.PENDING,
                   WebhookDelivery.next_attempt_at <= now,
                   (WebhookDelivery.claimed_until.is_(None)) | (WebhookDelivery.claimed_until < now))).all()
    out = []
    for endpoint_id in ids:
        if rt.redis.set(_deliver_key(rt, endpoint_id), "1", nx=True, ex=int(LEASE.total_seconds())):
            queueing.enqueue(rt.queue, queueing.Job.DELIVER_WEBHOOKS, endpoint_id)
            out.append(endpoint_id)
    return out


# -- delivering ----------------------------------------------------------------------------------------------------

@dataclass
class Result:
    delivered: int = 0
    failed_attempts: int = 0
    disabled: bool = False


@dataclass(frozen=True)
class _Target:
    url: str
    secret: str


def deliver(rt: Runtime, endpoint_id: int, now: dt.datetime | None = None) -> Result:
    """Post the endpoint's due deliveries, oldest first, until none is due or an attempt fails."""
    token = uuid.uuid4().hex
    result = Result()
    try:
        last_try = False
        while True:
            target, claimed = _claim(rt, endpoint_id, token, now or utcnow())
            if not claimed:
                if target is None or last_try:
                    break
                # Let the next route enqueue a job again, then look once more (closes the gap in between).
                rt.redis.delete(_deliver_key(rt, endpoint_id))
                last_try = True
                continue
            for i, (delivery_id, event_id, body) in enumerate(claimed):
                ok, disabled = _attempt(rt, endpoint_id, token, target, delivery_id, event_id, body, now or utcnow())
                if ok:
                    result.delivered += 1
                    continue
                result.failed_attempts += 1
                result.disabled = disabled
                _release(rt, token, [d for d, _e, _b in claimed[i + 1:]])
                return result
    finally:
        rt.redis.delete(_deliver_key(rt, endpoint_id))
    return result


def _claim(rt: Runtime, endpoint_id: int, token: str,
           now: dt.datetime) -> tuple[_Target | None, list[tuple[int, int, str]]]:
    with rt.session_factory() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return None, []
        target = _target(rt, session, endpoint, now)
        if target is None:     # disabled: its secret cannot be read
            session.commit()
            webhook_events.invalidate()
            return None, []
        query = (select(WebhookDelivery.id)
                 .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == DeliveryStatus.PENDING,
                        WebhookDelivery.next_attempt_at <= now,
                        (WebhookDelivery.claimed_until.is_(None)) | (WebhookDelivery.claimed_until < now))
                 .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(CLAIM_SIZE))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = session.scalars(query).all()
        if not ids:
            session.commit()
            return target, []
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                        .values(claim=token, claimed_until=now + LEASE))
        rows = session.execute(select(WebhookDelivery.id, WebhookDelivery.event_id, WebhookEvent.body)
                               .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                               .where(WebhookDelivery.id.in_(ids))
                               .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)).all()
        session.commit()
    return target, [tuple(r) for r in rows]


def _target(rt: Runtime, session: Session, endpoint: WebhookEndpoint, now: dt.datetime) -> _Target | None:
    """Where and with which secret to post; a secret stored before sealing is sealed now (the caller commits it
    with the claim). A secret this server cannot open disables the endpoint with the reason (None: nothing is
    posted; the caller commits)."""
    key = rt.settings.secret_key
    try:
        secret = signing.unseal(key, endpoint.secret)
    except signing.SecretUnreadable as exc:
        endpoint.enabled = False
        endpoint.disabled_at = now
        endpoint.disabled_reason = f"Disabled by Rapport: {exc}."
        audit.record(session, "rapport", audit.Action.WEBHOOK_AUTO_DISABLE, f"webhook {endpoint.id}",
                     f"{endpoint.url}: {endpoint.disabled_reason}")
        logger.warning("webhook endpoint %s (%s) disabled: %s", endpoint.id, endpoint.url, exc)
        return None
    if not signing.sealed(endpoint.secret):
        endpoint.secret = signing.seal(key, secret)
    return _Target(endpoint.url, secret)


def _release(rt: Runtime, token: str, ids: list[int]) -> None:
    if not ids:
        return
    with rt.session_factory() as session:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids), WebhookDelivery.claim == token)
                        .values(claim="", claimed_until=None))
        session.commit()


def _attempt(rt: Runtime, endpoint_id: int, token: str, target: _Target, delivery_id: int, event_id: int, body: str,
             at: dt.datetime) -> tuple[bool, bool]:
    """Post one delivery and record the outcome; returns (delivered, endpoint disabled now)."""
    settings = rt.settings
    # Signed with the wall clock (receivers reject old timestamps); `at` only schedules.
    headers = signing.headers(target.secret, event_id, int(time.time()), body)
    status, answer, error = None, "", ""
    try:
        reply = transport.post(target.url, body.encode(), headers, timeout=settings.webhook_timeout,
                               allow_private=settings.webhooks_allow_private)
        status, answer = reply.status, reply.body
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except transport.Refused as exc:
        error = str(exc)
    except OSError as exc:
        error = f"no answer: {type(exc).__name__}: {exc}"
    ok = not error
    with rt.session_factory() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if delivery is None or endpoint is None or delivery.claim != token:
            session.commit()
            return ok, False            # deleted meanwhile, or the lease ran out and another worker took it
        delivery.attempts += 1
        delivery.last_attempt_at, delivery.last_status = at, status
        delivery.last_response, delivery.last_error = answer[:transport.MAX_BODY], error[:500]
        delivery.claim, delivery.claimed_until = "", None
        disabled = False
        if ok:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, at, None
            endpoint.consecutive_failures, endpoint.failing_since, endpoint.paused_until = 0, None, None
        else:
            delays = settings.webhook_retry_delays
            following = at + dt.timedelta(seconds=delays[min(delivery.attempts, len(delays)) - 1])
            if following > delivery.retry_until:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            else:
                delivery.next_attempt_at = following
            disabled = _count_failure(session, settings, endpoint, at)
        session.commit()
    if disabled:
        webhook_events.invalidate()
    logger.info("webhook delivery %s to endpoint %s: %s", delivery_id, endpoint_id, "ok" if ok else error)
    return ok, disabled


def _count_failure(session: Session, settings: Settings, endpoint: WebhookEndpoint, at: dt.datetime) -> bool:
    """One more failed attempt: the endpoint rests for PAUSE (however many events arrive meanwhile); disabled after
    sustained failure (an admin notice and audit entry)."""
    endpoint.consecutive_failures += 1
    endpoint.paused_until = at + PAUSE
    endpoint.failing_since = endpoint.failing_since or at
    failing_for = (at - endpoint.failing_since).total_seconds()
    if not (endpoint.enabled and endpoint.consecutive_failures >= settings.webhook_disable_failures
            and failing_for >= settings.webhook_disable_after):
        return False
    endpoint.enabled = False
    endpoint.disabled_at = at
    hours = failing_for / 3600
    endpoint.disabled_reason = (f"Disabled by Rapport after {endpoint.consecutive_failures} failed attempts in a row "
                                f"over {hours:.1f} hours without a success.")
    audit.record(session, "rapport", audit.Action.WEBHOOK_AUTO_DISABLE, f"webhook {endpoint.id}",
                 f"{endpoint.url}: {endpoint.disabled_reason}")
    logger.warning("webhook endpoint %s (%s) disabled after sustained failure", endpoint.id, endpoint.url)
    return True
