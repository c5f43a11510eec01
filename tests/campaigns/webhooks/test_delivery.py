"""Delivery of outgoing webhooks with a real worker and a real HTTP receiver: signatures, retries with backoff, a
worker killed after the commit, leases of dead workers, auto-disable, replay, the SSRF guard, the outbox's cost."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from sqlalchemy import func, select

from campaigns import queueing, webhook_events
from campaigns.errors import ValidationError
from campaigns.models import (
    AuditEntry,
    DeliveryStatus,
    Order,
    OrderSource,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from campaigns.orders.recording import OrderInput, record_order
from campaigns.webhook_events import EventType
from campaigns.webhooks import delivery, endpoints, log, signing, transport
from tests.helpers import fresh


def order(runtime, email: str = "ana@example.com", amount: str = "12.50") -> int:
    """Record an order in the app's way: its own session, committed (which wakes the routing job)."""
    with runtime.session_factory() as session:
        recorded = record_order(session, OrderInput(source=OrderSource.API, email=email, amount=amount,
                                                    external_id=f"ext-{email}-{amount}"))
        session.commit()
        return recorded.order.id


def deliveries(db_session) -> list[WebhookDelivery]:
    return list(fresh(db_session).scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_standard_webhooks_test_vector() -> None:
    # The example of the Standard Webhooks specification (and its reference libraries).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signing.new_secret().startswith("whsec_") and len(signing.key_of(signing.new_secret())) == 32


def test_a_committed_change_is_posted_signed_by_the_worker(runtime, db_session, receiver, subscribe,
                                                            run_worker) -> None:
    subscribe([EventType.ORDER_RECORDED])
    order_id = order(runtime)
    run_worker()                       # the commit enqueued routing; routing enqueued the endpoint's delivery job
    (got,) = receiver.received
    assert got.valid and got.type == "order.recorded"
    assert got.payload["data"]["order"]["id"] == order_id and got.payload["data"]["order"]["amount"] == "12.50"
    assert got.headers["webhook-id"].startswith("msg_") and got.headers["content-type"] == "application/json"
    (d,) = deliveries(db_session)
    assert (d.status, d.attempts, d.last_status, d.last_response) == (DeliveryStatus.DELIVERED, 1, 200, "ok")


def test_the_secret_is_stored_sealed_and_a_secret_stored_in_clear_is_sealed_on_first_use(
        runtime, db_session, receiver, subscribe, run_worker) -> None:
    """A copy of the database alone (a leaked backup) must not let anyone sign webhooks the receiver trusts: the
    secret is stored encrypted under a key derived from SECRET_KEY. One stored before (in clear) still signs, and
    the delivery job seals it the first time it uses it."""
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    stored = fresh(db_session).get(WebhookEndpoint, endpoint_id).secret
    assert receiver.secret.startswith("whsec_") and receiver.secret not in stored and stored.startswith("whenc1:")
    assert len(stored) <= 100 and signing.unseal(runtime.settings.secret_key, stored) == receiver.secret
    with pytest.raises(signing.SecretUnreadable):
        signing.unseal("another key", stored)
    # An endpoint from before sealing: its secret in clear.
    with runtime.session_factory() as session:
        session.get(WebhookEndpoint, endpoint_id).secret = receiver.secret
        session.commit()
    order(runtime)
    run_worker()
    (got,) = receiver.received
    assert got.valid
    stored = fresh(db_session).get(WebhookEndpoint, endpoint_id).secret
    assert signing.sealed(stored) and signing.unseal(runtime.settings.secret_key, stored) == receiver.secret


def test_a_secret_the_server_cannot_open_disables_the_endpoint_with_the_reason(
        runtime, db_session, receiver, subscribe, run_worker) -> None:
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    with runtime.session_factory() as session:     # sealed under another SECRET_KEY (the operator changed it)
        session.get(WebhookEndpoint, endpoint_id).secret = signing.seal("the key before", receiver.secret)
        session.commit()
    order(runtime)
    run_worker()
    assert receiver.received == []
    endpoint = fresh(db_session).get(WebhookEndpoint, endpoint_id)
    assert not endpoint.enabled and "rotate the secret" in endpoint.disabled_reason
    (waiting,) = deliveries(db_session)
    assert (waiting.status, waiting.attempts) == (DeliveryStatus.PENDING, 0)     # nothing was posted unsigned
    # The admin rotates the secret, gives it to the receiver and switches the endpoint on: the event goes out.
    with runtime.session_factory() as session:
        one = session.get(WebhookEndpoint, endpoint_id)
        receiver.secret = endpoints.rotate_secret(session, runtime.settings, one)
        endpoints.set_enabled(session, one, True)
        session.commit()
    delivery.enqueue_due(runtime)      # the periodic task's look for waiting deliveries
    run_worker()
    (got,) = receiver.received
    assert got.valid


def test_receiver_down_is_retried_with_backoff_then_succeeds(runtime, db_session, receiver, subscribe,
                                                             run_worker) -> None:
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    receiver.answers = [503]
    order(runtime)
    run_worker()
    (d,) = deliveries(db_session)
    assert (d.status, d.attempts, d.last_status) == (DeliveryStatus.PENDING, 1, 503)
    assert d.last_response == "receiver failed on purpose" and d.last_error == "HTTP 503"
    assert dt.timedelta(seconds=55) < d.next_attempt_at - d.last_attempt_at <= dt.timedelta(seconds=60)
    # Not due yet: the periodic job posts nothing.
    assert delivery.deliver(runtime, endpoint_id).delivered == 0
    assert len(receiver.received) == 1
    # Then nobody listens at all (connection refused): the second retry waits 300 s.
    later = d.next_attempt_at + dt.timedelta(seconds=1)
    with runtime.session_factory() as session:
        session.get(WebhookEndpoint, endpoint_id).url = "http://127.0.0.1:9/nobody-listens"
        session.commit()
    assert delivery.deliver(runtime, endpoint_id, now=later).failed_attempts == 1
    (d,) = deliveries(db_session)
    assert d.attempts == 2 and d.last_status is None and d.last_error.startswith("no answer")
    assert d.next_attempt_at - d.last_attempt_at == dt.timedelta(seconds=300)
    with runtime.session_factory() as session:
        session.get(WebhookEndpoint, endpoint_id).url = receiver.url
        session.commit()
    assert delivery.deliver(runtime, endpoint_id, now=later + dt.timedelta(seconds=301)).delivered == 1
    first, second = receiver.received
    assert first.valid and second.valid and first.headers["webhook-id"] == second.headers["webhook-id"]
    (d,) = deliveries(db_session)
    assert (d.status, d.attempts, d.last_status, d.last_error) == (DeliveryStatus.DELIVERED, 3, 200, "")
    endpoint = fresh(db_session).get(WebhookEndpoint, endpoint_id)
    assert endpoint.consecutive_failures == 0 and endpoint.failing_since is None


def test_retries_stop_after_the_window_and_the_delivery_fails(runtime, db_session, receiver, subscribe,
                                                              run_worker) -> None:
    subscribe([EventType.ORDER_RECORDED])
    receiver.answers = [500]
    order(runtime)
    run_worker()
    delivery.route(runtime, now=utcnow() + dt.timedelta(hours=24, minutes=1))
    (d,) = deliveries(db_session)
    assert d.status == DeliveryStatus.FAILED and d.last_error.startswith("gave up")
    assert len(receiver.received) == 1


KILLED_AFTER_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from campaigns.config import Settings
    from campaigns.models import OrderSource
    from campaigns.orders.recording import OrderInput, record_order
    from campaigns.runtime import Runtime

    rt = Runtime(Settings(database_url=sys.argv[1], redis_url=sys.argv[2], queue_name=sys.argv[3],
                          secret_key="x" * 40))
    # Die the moment the commit returns, before anything else can happen (no job enqueued, nothing posted).
    def die(session):
        if not session.in_nested_transaction():
            os.kill(os.getpid(), signal.SIGKILL)
    event.listen(Session, "after_commit", die, insert=True)
    with rt.session_factory() as session:
        record_order(session, OrderInput(source=OrderSource.API, email="killed@example.com", amount="9.99"))
        session.commit()
    print("survived")
""")


def test_a_worker_killed_right_after_the_commit_still_delivers(runtime, db_session, receiver, subscribe,
                                                               run_worker) -> None:
    subscribe([EventType.ORDER_RECORDED])
    webhook_events.invalidate()
    s = runtime.settings
    proc = subprocess.run([sys.executable, "-c", KILLED_AFTER_COMMIT, s.database_url, s.redis_url, s.queue_name],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and "survived" not in proc.stdout, proc.stderr
    assert fresh(db_session).scalar(select(func.count()).select_from(Order)) == 1
    assert runtime.queue.count == 0              # nothing was enqueued: the process died first
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookEvent)) == 1
    # The periodic job (every minute, from any worker) finds the event in the outbox.
    queueing.enqueue(runtime.queue, queueing.Job.ROUTE_WEBHOOKS)
    run_worker()
    (got,) = receiver.received
    assert got.valid and got.payload["data"]["contact"]["email"] == "killed@example.com"


def test_a_claim_of_a_dead_worker_expires_and_the_delivery_is_posted(runtime, db_session, receiver, subscribe,
                                                                    run_worker) -> None:
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    order(runtime)
    delivery.route(runtime)
    runtime.queue.empty()
    now = utcnow()
    _target, claimed = delivery._claim(runtime, endpoint_id, "dead-worker", now)   # then the worker dies
    assert len(claimed) == 1
    assert delivery.deliver(runtime, endpoint_id, now=now).delivered == 0
    assert delivery.deliver(runtime, endpoint_id, now=now + delivery.LEASE + dt.timedelta(seconds=1)).delivered == 1
    assert len(receiver.received) == 1 and receiver.received[0].valid


def test_sustained_failure_disables_the_endpoint_with_a_notice(runtime, db_session, receiver, subscribe,
                                                               run_worker) -> None:
    runtime.settings = runtime.settings.with_overrides({"webhook_disable_failures": 3, "webhook_disable_after": 600})
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    receiver.answers = [500] * 10
    order(runtime, amount="1")
    order(runtime, amount="2")
    run_worker()                                   # one failed attempt ends the round
    assert len(receiver.received) == 1
    start = utcnow()
    # Failing for 10 minutes is required too: three quick failures do not disable.
    delivery.deliver(runtime, endpoint_id, now=start + dt.timedelta(seconds=61))
    delivery.deliver(runtime, endpoint_id, now=start + dt.timedelta(seconds=122))
    endpoint = fresh(db_session).get(WebhookEndpoint, endpoint_id)
    assert endpoint.enabled and endpoint.consecutive_failures == 3
    result = delivery.deliver(runtime, endpoint_id, now=start + dt.timedelta(seconds=700))
    assert result.disabled
    endpoint = fresh(db_session).get(WebhookEndpoint, endpoint_id)
    assert not endpoint.enabled and "4 failed attempts" in endpoint.disabled_reason
    assert [e.id for e in endpoints.auto_disabled(fresh(db_session))] == [endpoint_id]
    entry = fresh(db_session).scalar(select(AuditEntry).where(AuditEntry.action == "webhook.auto_disable"))
    assert entry.actor == "rapport" and receiver.url in entry.detail
    # Disabled: nothing more is posted, and new changes write no outbox rows.
    posted = len(receiver.received)
    assert delivery.deliver(runtime, endpoint_id, now=start + dt.timedelta(hours=2)).failed_attempts == 0
    before = fresh(db_session).scalar(select(func.count()).select_from(WebhookEvent))
    order(runtime, amount="3")
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookEvent)) == before
    assert len(receiver.received) == posted


def test_replay_one_delivery_and_all_failed_since(runtime, db_session, receiver, subscribe, run_worker) -> None:
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    order(runtime, amount="1")
    run_worker()
    (first,) = receiver.received
    (d,) = deliveries(db_session)
    with runtime.session_factory() as session:
        log.replay(session, runtime.settings, log.get_delivery(session, endpoint_id, d.id))
        session.commit()
    delivery.route(runtime)
    run_worker()
    again = receiver.received[1]
    assert again.valid and again.headers["webhook-id"] == first.headers["webhook-id"] and again.body == first.body
    # Failed ones (the receiver was down for a day) come back with "replay all failed since".
    receiver.answers = [500]
    order(runtime, amount="2")
    run_worker()
    delivery.route(runtime, now=utcnow() + dt.timedelta(days=1, minutes=1))
    assert [x.status for x in deliveries(db_session)] == [DeliveryStatus.DELIVERED, DeliveryStatus.FAILED]
    with runtime.session_factory() as session:
        assert log.replay_failed_since(session, runtime.settings, endpoint_id, utcnow() - dt.timedelta(hours=1)) == 1
        session.commit()
    delivery.route(runtime)
    run_worker()
    assert [x.status for x in deliveries(db_session)] == [DeliveryStatus.DELIVERED, DeliveryStatus.DELIVERED]
    assert [r.payload["data"]["order"]["amount"] for r in receiver.received] == ["1.00", "1.00", "2.00", "2.00"]


def test_private_addresses_are_refused_unless_the_operator_allows_them(runtime, db_session) -> None:
    strict = runtime.settings.with_overrides({"webhooks_allow_private": False})
    for url in ("http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/hook", "http://localhost/hook"):
        with pytest.raises(ValidationError, match="private network"):
            endpoints.create(db_session, strict, url=url, description="", event_types=["order.recorded"],
                             include_machine=False, created_by="t")
    with pytest.raises(transport.Refused, match="private network"):
        transport.post("http://127.0.0.1:9/x", b"{}", {}, timeout=1, allow_private=False)
    for url, message in (("ftp://example.com/x", "http"), ("https://user:pw@example.com/x", "password"),
                         ("https://example.com:99999/x", "port")):
        with pytest.raises(ValidationError, match=message):
            endpoints.create(db_session, runtime.settings, url=url, description="", event_types=["order.recorded"],
                             include_machine=False, created_by="t")
    with pytest.raises(ValidationError, match="at least one event"):
        endpoints.create(db_session, runtime.settings, url="http://127.0.0.1/x", description="", event_types=[],
                         include_machine=False, created_by="t")
    with pytest.raises(ValidationError, match="Unknown event types"):
        endpoints.create(db_session, runtime.settings, url="http://127.0.0.1/x", description="",
                         event_types=["contact.exploded"], include_machine=False, created_by="t")


def test_no_outbox_rows_unless_an_endpoint_wants_the_type(runtime, db_session, make_contacts, subscribe) -> None:
    make_contacts(3)
    order(runtime)
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookEvent)) == 0
    subscribe([EventType.COUPON_REDEEMED])
    db_session.rollback()
    make_contacts(2, prefix="later")
    order(runtime, email="bob@example.com")
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookEvent)) == 0
    # A disabled endpoint wants nothing either.
    subscribe([EventType.ORDER_RECORDED])
    with runtime.session_factory() as session:
        for endpoint in session.scalars(select(WebhookEndpoint)):
            endpoints.set_enabled(session, endpoint, False)
        session.commit()
    order(runtime, email="cem@example.com")
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookEvent)) == 0


def test_the_subscriber_cache_is_shared_by_other_processes_within_seconds(runtime, db_session,
                                                                         monkeypatch) -> None:
    with runtime.session_factory() as session:
        assert webhook_events.subscribed(session) == {}
    # Another process adds an endpoint: this one's cache does not know…
    db_session.add(WebhookEndpoint(url="http://127.0.0.1/x", event_types=["order.recorded"], secret="whsec_AA==",
                                   enabled=True, consecutive_failures=0, disabled_reason=""))
    db_session.commit()
    with runtime.session_factory() as session:
        assert webhook_events.subscribed(session) == {}
        # …until CACHE_SECONDS have passed.
        monkeypatch.setattr(webhook_events, "CACHE_SECONDS", 0.0)
        assert webhook_events.subscribed(session) == {"order.recorded": False}


def test_workers_delivering_one_endpoint_at_once_post_each_event_once(runtime, db_session, receiver, subscribe,
                                                                      run_worker) -> None:
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    for i in range(45):
        order(runtime, email=f"buyer{i}@example.com")
    delivery.route(runtime)
    runtime.queue.empty()
    results: list[delivery.Result] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(delivery.deliver(runtime, endpoint_id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and sum(r.delivered for r in results) == 45
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 45 and len(set(ids)) == 45 and all(r.valid for r in receiver.received)
    assert {d.status for d in deliveries(db_session)} == {DeliveryStatus.DELIVERED}


def test_a_down_endpoint_rests_instead_of_being_tried_for_every_new_event(runtime, db_session, receiver, subscribe,
                                                                          run_worker) -> None:
    endpoint_id = subscribe([EventType.ORDER_RECORDED])
    receiver.answers = [503] * 5
    order(runtime, amount="1")
    run_worker()
    assert len(receiver.received) == 1
    # A busy shop: more orders arrive, each commit wakes the router — but the endpoint rests for a minute.
    for amount in ("2", "3", "4"):
        order(runtime, amount=amount)
        run_worker()
    assert len(receiver.received) == 1
    assert delivery.enqueue_due(runtime, utcnow() + delivery.PAUSE + dt.timedelta(seconds=1)) == [endpoint_id]
    assert fresh(db_session).get(WebhookEndpoint, endpoint_id).paused_until is not None
