"""Every event type reaches a subscribed endpoint exactly once, signed, through the real worker; opens and clicks
by machines only when the endpoint asks for them."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

from sqlalchemy import select

from campaigns import queueing, webhook_events
from campaigns.contacts.records import save_contact
from campaigns.coupons import codes as coupon_codes
from campaigns.coupons import pools, redemption
from campaigns.feedback import bounces, engagement, preferences
from campaigns.feedback.hits import Hit, HitKind
from campaigns.models import Contact, Link, OrderSource, Send, WebhookEndpoint
from campaigns.orders.recording import OrderInput, record_order
from campaigns.sending import lifecycle
from campaigns.surveys import responses
from campaigns.surveys import service as surveys
from campaigns.webhook_events import SUBSCRIBABLE, EventType
from campaigns.webhooks import log
from tests.helpers import fresh

MAIL_APP = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko)"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel)"


def hits_for(db_session, send: Send, agent: str, key: str) -> list[Hit]:
    link_id = db_session.scalar(select(Link.id).where(Link.campaign_id == send.campaign_id).order_by(Link.id))
    at = time.time()
    return [Hit(HitKind.OPEN, send.id, 0, at, agent, "203.0.113.9", key=f"o-{key}"),
            Hit(HitKind.CLICK, send.id, link_id, at + 1, agent, "203.0.113.9", key=f"c-{key}")]


def test_every_event_type_is_delivered_once_with_a_valid_signature(
        runtime, db_session, receiver, subscribe, make_contacts, make_campaign, run_worker, outbox) -> None:
    endpoint_id = subscribe(SUBSCRIBABLE)
    topic, (ana, bob, cem) = make_contacts(3)                                   # 3 × contact.created
    save_contact(db_session, {"email": ana.email, "first_name": "Anna", "last_name": "Tester"}, ana)
    db_session.commit()                                                         # contact.updated
    campaign = make_campaign([topic])
    lifecycle.start(db_session, runtime, campaign)                              # campaign.started
    db_session.commit()
    run_worker()                                                                # … sent, campaign.finished
    assert len(outbox.list()) == 3
    sends = {s.contact_id: s for s in fresh(db_session).scalars(select(Send))}
    for send in sends.values():                  # delivered a while ago: an open now is a person's
        send.sent_at -= dt.timedelta(hours=2)
    db_session.commit()
    engagement.record_hits(db_session, hits_for(db_session, sends[ana.id], MAIL_APP, "ana"))   # opened, clicked
    engagement.record_hits(db_session, hits_for(db_session, sends[bob.id], SCANNER, "bob"))    # machines: not sent
    db_session.commit()
    bob_row = db_session.get(Contact, bob.id)
    scope = preferences.UnsubscribeScope(bob_row, None, [])
    preferences.unsubscribe(db_session, scope, everything=True, source="page")  # contact.unsubscribed
    bounces.apply_bounce(db_session, db_session.get(Contact, cem.id), hard=True, send_id=sends[cem.id].id,
                         campaign_id=campaign.id, source=bounces.FeedbackSource.DSN, status="5.1.1")  # email.bounced
    bounces.apply_complaint(db_session, db_session.get(Contact, ana.id), send_id=sends[ana.id].id,
                            campaign_id=campaign.id, source=bounces.FeedbackSource.ARF)               # email.complained
    db_session.commit()
    pool = pools.save_pool(db_session, {"name": "Autumn", "value_description": "15% off",
                                        "expires_on": dt.date.today() + dt.timedelta(days=30)})
    db_session.commit()
    coupon_codes.import_codes(db_session, pool.id, b"code\nGT-AAA111\n")
    db_session.commit()
    redemption.redeem(db_session, "GT-AAA111", reference="order 77", by="shop")   # coupon.redeemed
    survey = surveys.save_survey(db_session, {"name": "After your order"},
                                 [{"prompt": "How happy are you?", "kind": "rating"}])
    db_session.commit()
    response = responses.SurveyResponse(survey, sends[ana.id].id, db_session.get(Contact, ana.id), campaign.id, {})
    responses.record_answers(db_session, response, {0: "5"}, source="page")        # survey.answered
    record_order(db_session, OrderInput(source=OrderSource.API, email=cem.email, amount="30"))  # order.recorded
    log.send_test(db_session, db_session.get(WebhookEndpoint, endpoint_id))     # webhook.test
    db_session.commit()
    queueing.enqueue(runtime.queue, queueing.Job.ROUTE_WEBHOOKS)                # the periodic job
    db_session.rollback()
    run_worker()

    assert all(r.valid for r in receiver.received)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == len(receiver.received)   # no duplicate
    counts = Counter(receiver.types())
    assert counts == {"contact.created": 3, "contact.updated": 1, "campaign.started": 1, "campaign.finished": 1,
                      "email.opened": 1, "email.clicked": 1, "contact.unsubscribed": 1, "email.bounced": 1,
                      "email.complained": 1, "coupon.redeemed": 1, "survey.answered": 1, "order.recorded": 1,
                      "webhook.test": 1}
    assert set(counts) == {str(t) for t in EventType}
    by_type = {r.type: r.payload for r in receiver.received}
    assert by_type["contact.updated"]["data"]["changed"] == ["first_name"]
    assert by_type["contact.updated"]["data"]["contact"]["first_name"] == "Anna"
    assert by_type["email.opened"]["data"]["contact"]["id"] == ana.id
    assert by_type["email.clicked"]["data"]["url"].startswith("https://shop.test/")
    assert by_type["email.bounced"]["data"]["suppressed"] is True and by_type["email.bounced"]["data"]["kind"] == "hard"
    assert by_type["campaign.finished"]["data"]["sent"] == 3
    assert by_type["coupon.redeemed"]["data"]["reference"] == "order 77"
    assert by_type["survey.answered"]["data"]["answers"] == [
        {"question": 0, "prompt": "How happy are you?", "answer": "5"}]
    assert by_type["order.recorded"]["data"]["order"]["amount"] == "30.00"
    for payload in by_type.values():
        assert set(payload) == {"type", "timestamp", "data"} and payload["timestamp"].endswith("Z")


def test_machine_opens_and_clicks_only_for_endpoints_that_ask(
        runtime, db_session, receiver, subscribe, make_contacts, make_campaign, run_worker) -> None:
    topic, (ana,) = make_contacts(1)
    campaign = make_campaign([topic])
    lifecycle.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    send = fresh(db_session).scalar(select(Send))
    send.sent_at -= dt.timedelta(hours=2)
    db_session.commit()
    endpoint_id = subscribe([EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED])
    engagement.record_hits(db_session, hits_for(db_session, send, SCANNER, "1"))
    db_session.commit()
    run_worker()
    assert receiver.received == []
    with runtime.session_factory() as session:
        session.get(WebhookEndpoint, endpoint_id).include_machine = True
        session.commit()
    webhook_events.invalidate()
    engagement.record_hits(db_session, hits_for(db_session, send, SCANNER, "2"))
    db_session.commit()
    queueing.enqueue(runtime.queue, queueing.Job.ROUTE_WEBHOOKS)
    db_session.rollback()
    run_worker()
    assert sorted(receiver.types()) == ["email.clicked", "email.opened"]
    assert all(r.payload["data"]["machine"] is True for r in receiver.received)


def test_leaving_a_topic_and_leaving_everything_are_both_unsubscribes(
        runtime, db_session, receiver, subscribe, make_contacts, run_worker) -> None:
    subscribe([EventType.CONTACT_UNSUBSCRIBED])
    topic, (ana,) = make_contacts(1)
    contact = db_session.get(Contact, ana.id)
    preferences.unsubscribe(db_session, preferences.UnsubscribeScope(contact, None, [topic]), everything=False,
                            source="page")
    db_session.commit()
    preferences.unsubscribe(db_session, preferences.UnsubscribeScope(contact, None, [topic]), everything=True,
                            source="page")
    db_session.commit()
    queueing.enqueue(runtime.queue, queueing.Job.ROUTE_WEBHOOKS)
    db_session.rollback()
    run_worker()
    in_order = sorted(receiver.received, key=lambda r: int(r.headers["webhook-id"].removeprefix("msg_")))
    first, second = (r.payload["data"] for r in in_order)
    assert (first["scope"], first["topic_ids"], first["topics"]) == ("topics", [topic.id], ["Newsletter"])
    assert second["scope"] == "all" and second["contact"]["status"] == "unsubscribed"
