"""Post-purchase automations through the real API, worker and capture SMTP server: an order placed by POST
/api/v1/orders or a shop webhook leads to a transactional thank-you and, after the step's delay (a controlled clock),
nurture follow-ups that go through the contact policy; never twice for one order; filters on amount, product tag
and first order."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import func, select

from campaigns.automations import purchases, starter
from campaigns.automations import runs as auto
from campaigns.composing.editor import save_campaign
from campaigns.contacts import suppression
from campaigns.errors import ValidationError
from campaigns.models import (
    Automation,
    AutomationOrderOccurrence,
    Contact,
    ContactStatus,
    Send,
    SuppressionReason,
    utcnow,
)
from campaigns.orders import recording, shops
from campaigns.sending import lifecycle
from tests.campaigns.api.conftest import auth
from tests.campaigns.sending import test_policy
from tests.helpers import fresh

THANKS = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Thank you for your order, {{ contact.first_name }}!</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
FOLLOW = """<mjml><mj-body><mj-section><mj-column>
<mj-text>How did it go, {{ contact.first_name }}?</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
SHOPIFY_SECRET = "shpss_post_purchase"


def mail(db_session, name: str, kind: str, subject: str, mjml: str):
    c = save_campaign(db_session, {"name": name, "kind": kind, "subject": subject, "mjml": mjml,
                                   "from_name": "Anna Becker", "all_contacts": "1"})
    db_session.commit()
    return c


@pytest.fixture()
def post_purchase(db_session):
    """An active order automation: a transactional thank-you at once, a nurture follow-up after 3 days."""

    def make(name: str = "After the order", **filters: str) -> Automation:
        thanks = mail(db_session, f"{name} thanks", "transactional", "Thanks for your order", THANKS)
        follow = mail(db_session, f"{name} follow-up", "nurture", "How did it go?", FOLLOW)
        a = auto.save_automation(db_session, {"name": name, "trigger": "order", **filters},
                                 [("0", str(thanks.id)), ("3d", str(follow.id))])
        auto.set_active(db_session, a, True)
        db_session.commit()
        return a

    return make


def order(client, key: str, email: str, external_id: str, amount: str = "40.00", *, opted_in: bool = True,
          tags: list[str] | None = None) -> dict:
    r = client.post("/api/v1/orders", headers=auth(key), json={
        "email": email, "amount": amount, "external_id": external_id, "accepts_marketing": opted_in,
        "first_name": email.split("@")[0].title(), "tags": tags or []})
    assert r.status_code in (200, 201), r.get_json()
    return r.get_json()


def arrived(outbox) -> list[tuple[str, str]]:
    return sorted((m.recipients[0], m.subject) for m in outbox.list(limit=500))


def tick(runtime, work, at: dt.datetime) -> int:
    queued = auto.run_due(runtime, at)["queued"]
    work()
    return queued


def test_thank_you_at_once_follow_up_after_three_days_never_twice(
        client, db_session, api_key, runtime, work, outbox, post_purchase) -> None:
    key = api_key
    a = post_purchase()
    placed = order(client, key, "ada@example.com", "A-1")
    assert placed["order"]["tags"] == []
    now = utcnow()
    assert tick(runtime, work, now) == 1
    assert arrived(outbox) == [("ada@example.com", "Thanks for your order")]
    # The shop retries its call (same order id): recorded once, so nothing more goes out.
    again = order(client, key, "ada@example.com", "A-1")
    assert again["created"] is False and again["order"]["id"] == placed["order"]["id"]
    assert tick(runtime, work, now + dt.timedelta(minutes=1)) == 0
    assert tick(runtime, work, now + dt.timedelta(days=2, hours=23)) == 0       # the follow-up is not due yet
    assert tick(runtime, work, now + dt.timedelta(days=3, minutes=1)) == 1
    assert arrived(outbox) == [("ada@example.com", "How did it go?"), ("ada@example.com", "Thanks for your order")]
    assert tick(runtime, work, now + dt.timedelta(days=3, minutes=2)) == 0
    assert outbox.count() == 2
    occurrences = fresh(db_session).scalar(select(func.count()).select_from(AutomationOrderOccurrence)
                                           .where(AutomationOrderOccurrence.automation_id == a.id))
    assert occurrences == 2
    rows = purchases.order_runs(db_session, db_session.get(Automation, a.id))
    assert [(r.email, [(s.label, s.state) for s in r.steps]) for r in rows] == [
        ("ada@example.com", [("at once", "sent"), ("after 3 days", "sent")])]


def test_a_second_order_gets_its_own_thank_you_and_a_retried_webhook_none(
        runtime, db_session, work, outbox, post_purchase) -> None:
    from campaigns.web.app import create_app

    settings = runtime.settings.with_overrides({"shopify_webhook_secret": SHOPIFY_SECRET})
    application = create_app({"SETTINGS": settings, "TESTING": True})
    runtime.settings = settings
    application.extensions["rapport"] = runtime
    shop = application.test_client()
    post_purchase(product_tag="Plants")

    def webhook(order_id: int, when: dt.datetime, tags: str) -> int:
        body = json.dumps({"id": order_id, "email": "bo@example.com", "total_price": "25.00", "currency": "EUR",
                           "name": f"#{order_id}", "created_at": when.isoformat(), "tags": tags,
                           "customer": {"email": "bo@example.com", "first_name": "Bo",
                                        "email_marketing_consent": {"state": "subscribed"}}}).encode()
        return shop.post("/api/v1/webhooks/shopify/orders", data=body, content_type="application/json",
                         headers={"X-Shopify-Hmac-Sha256": shops.signature(SHOPIFY_SECRET, body),
                                  "X-Shopify-Topic": "orders/create"}).status_code

    first = utcnow()
    assert webhook(1001, first, "plants, gifts") == 200
    assert tick(runtime, work, utcnow()) == 1
    assert webhook(1001, first, "plants, gifts") == 200          # Shopify retries: the same order
    assert webhook(1002, utcnow(), "tools") == 200               # another order, but no plants: not this automation
    assert tick(runtime, work, utcnow()) == 0
    assert arrived(outbox) == [("bo@example.com", "Thanks for your order")]


def test_filters_amount_tag_and_first_order(client, db_session, api_key, runtime, work, outbox,
                                            post_purchase) -> None:
    key = api_key
    post_purchase("Big first orders", min_amount="50", max_amount="500", first_order_only="1")
    post_purchase("Seeds", product_tag="seeds")
    order(client, key, "small@example.com", "F-1", "49.99")                      # below the minimum
    order(client, key, "big@example.com", "F-2", "50.00")                        # on the bound: in
    order(client, key, "huge@example.com", "F-3", "500.01")                      # above the maximum
    order(client, key, "again@example.com", "F-4", "10.00", tags=["seeds"])       # first order: small, seeds
    order(client, key, "again@example.com", "F-5", "80.00", tags=["Tools", "SEEDS "])   # second order
    tick(runtime, work, utcnow())
    received = {}
    for m in outbox.list(limit=50):
        received[m.recipients[0]] = received.get(m.recipients[0], 0) + 1
    # big: first order in range; again: both orders carry "seeds" but arrive within one run: one thank-you a day.
    assert received == {"big@example.com": 1, "again@example.com": 1}
    seeds = db_session.scalar(select(Automation).where(Automation.name == "Seeds"))
    big = db_session.scalar(select(Automation).where(Automation.name == "Big first orders"))
    assert [r.order.external_id for r in purchases.order_runs(db_session, seeds)] == ["F-5", "F-4"]
    assert [r.order.external_id for r in purchases.order_runs(db_session, big)] == ["F-2"]
    again = db_session.scalar(select(Contact.id).where(Contact.email == "again@example.com"))
    tags = client.get(f"/api/v1/contacts/{again}/orders", headers=auth(key)).get_json()["data"][0]["tags"]
    assert tags == ["seeds", "tools"]


def test_unsubscribed_meanwhile_and_buyers_without_consent_get_only_the_thank_you(
        client, db_session, api_key, runtime, work, outbox, post_purchase) -> None:
    key = api_key
    a = post_purchase()
    order(client, key, "leaves@example.com", "U-1")
    order(client, key, "noconsent@example.com", "U-2", opted_in=False)
    now = utcnow()
    tick(runtime, work, now)
    assert arrived(outbox) == [("leaves@example.com", "Thanks for your order"),
                               ("noconsent@example.com", "Thanks for your order")]
    leaver = fresh(db_session).scalar(select(Contact).where(Contact.email == "leaves@example.com"))
    leaver.status = ContactStatus.UNSUBSCRIBED
    db_session.commit()
    tick(runtime, work, now + dt.timedelta(days=3, minutes=1))
    assert outbox.count() == 2
    rows = {r.email: r.steps[1] for r in purchases.order_runs(fresh(db_session), db_session.get(Automation, a.id))}
    assert rows["leaves@example.com"].state == "skipped" and "unsubscribed" in rows["leaves@example.com"].detail
    assert rows["noconsent@example.com"].state == "skipped"


def test_policy_caps_hold_the_follow_up_not_the_thank_you_and_suppressed_get_nothing(
        client, db_session, api_key, runtime, work, outbox, post_purchase) -> None:
    key = api_key
    a = post_purchase()
    order(client, key, "busy@example.com", "P-1")
    suppression.suppress(db_session, "bounced@example.com", SuppressionReason.HARD_BOUNCE, "test")
    db_session.commit()
    order(client, key, "bounced@example.com", "P-2")
    busy = fresh(db_session).scalar(select(Contact).where(Contact.email == "busy@example.com"))
    test_policy.history(db_session, busy, "marketing", dt.timedelta(hours=1))     # mailed an hour ago
    test_policy.set_policy(db_session, messages_per_day=1)
    now = utcnow()
    tick(runtime, work, now)
    assert arrived(outbox) == [("busy@example.com", "Thanks for your order")]     # transactional: exempt from caps
    tick(runtime, work, now + dt.timedelta(days=3, minutes=1))
    assert outbox.count() == 1                                                     # the nurture follow-up is held
    rows = {r.email: r.steps for r in purchases.order_runs(fresh(db_session), db_session.get(Automation, a.id))}
    assert rows["busy@example.com"][1].state == "held" and rows["busy@example.com"][1].detail
    assert rows["bounced@example.com"][0].state == "skipped"


@pytest.mark.parametrize(("data", "steps", "field"), [
    ({"min_amount": "abc"}, [("0", "T")], "min_amount"),
    ({"min_amount": "100", "max_amount": "10"}, [("0", "T")], "min_amount"),
    ({"max_amount": "1.001"}, [("0", "T")], "max_amount"),
    ({"product_tag": "x" * 101}, [("0", "T")], "product_tag"),
    ({}, [("3 weeks", "T")], "delay_0"),
    ({}, [("366d", "T")], "delay_0"),
    ({}, [("72h", "T"), ("3d", "T")], "template_0"),
])
def test_order_automation_form_is_validated(db_session, data, steps, field) -> None:
    t = mail(db_session, "Thanks", "transactional", "Thanks", THANKS)
    with pytest.raises(ValidationError) as err:
        auto.save_automation(db_session, {"name": "Bad", "trigger": "order", **data},
                             [(d, str(t.id) if x == "T" else x) for d, x in steps])
    assert err.value.field == field


def test_steps_in_hours_and_days_are_kept_and_described(db_session) -> None:
    t1 = mail(db_session, "A", "transactional", "A", THANKS)
    t2 = mail(db_session, "B", "nurture", "B", FOLLOW)
    t3 = mail(db_session, "C", "nurture", "C", FOLLOW)
    a = auto.save_automation(db_session, {"name": "Hours", "trigger": "order", "min_amount": "20",
                                          "product_tag": " Garden  Tools ", "first_order_only": "on"},
                             [("14d", str(t3.id)), ("4h", str(t2.id)), ("0", str(t1.id))])
    db_session.commit()
    assert [(s.delay_days, s.delay_hours, s.template_id) for s in a.steps] == [(0, 0, t1.id), (0, 4, t2.id),
                                                                               (14, 0, t3.id)]
    assert [purchases.delay_text(s) for s in a.steps] == ["0", "4h", "14d"]
    assert auto.describe(a) == ("after an order (of at least 20.00, with product tag “garden tools”, first orders "
                                "only): at once, after 4 hours, after 14 days")
    assert auto.next_run(a) == "paused"


def test_concurrent_ticks_and_a_lost_send_row_send_each_order_once(
        client, db_session, api_key, runtime, work, outbox, post_purchase) -> None:
    post_purchase()
    for i in range(6):
        order(client, api_key, f"c{i}@example.com", f"C-{i}")
    db_session.rollback()
    now = utcnow()
    errors: list[BaseException] = []

    def tick_once() -> None:
        try:
            auto.run_due(runtime, now)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=tick_once) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fresh(db_session).scalar(select(func.count()).select_from(AutomationOrderOccurrence)) == 6
    # A crash between the occurrences' commit and their send rows: the next tick adds the rows, once.
    db_session.query(Send).delete()
    db_session.commit()
    assert auto.run_due(runtime, now + dt.timedelta(minutes=1))["queued"] == 6
    assert auto.run_due(runtime, now + dt.timedelta(minutes=2))["queued"] == 0
    work()
    recipients = [m.recipients[0] for m in outbox.list()]
    assert len(recipients) == 6 and len(set(recipients)) == 6


def test_shops_product_tags_and_their_cleaning() -> None:
    shopify = shops.shopify_order({"id": 5, "email": "a@example.com", "total_price": "9.00", "tags": "Gifts, plants,,",
                                   "line_items": [{"sku": "SEED-1"}, {"sku": ""}, "junk"]})
    assert shopify.tags == ("Gifts", " plants", "SEED-1")
    woo = shops.woocommerce_order({"id": 7, "total": "3", "billing": {"email": "b@example.com"},
                                   "line_items": [{"sku": "TOOL-9"}, {"name": "no sku"}]})
    assert woo.tags == ("TOOL-9",)
    assert recording.clean_tags(["Gifts", " plants", "GIFTS", "", "Seed  Mix"]) == ["gifts", "plants", "seed mix"]
    for bad in ("plants", [1], ["x" * 101], [f"t{i}" for i in range(51)]):
        with pytest.raises(ValidationError):
            recording.clean_tags(bad)


def test_the_thank_you_names_the_order_and_other_mail_renders_no_order(
        client, db_session, api_key, runtime, work, outbox) -> None:
    a = starter.create_post_purchase(db_session, "https://shop.example/reviews", "Shop")
    auto.set_active(db_session, a, True)
    other = mail(db_session, "News", "transactional", "News", THANKS.replace(
        "Thank you for your order", "Order [{{ order.reference }}]"))
    db_session.commit()
    order(client, api_key, "ref@example.com", "R-1", "49.9")
    tick(runtime, work, utcnow())
    thanks = outbox.get(outbox.list()[0].key)
    assert "We have your order R-1 (49.90 EUR) and are getting it ready" in " ".join(thanks.text.split())
    # A campaign that is no order run: `order` is empty, the mail still goes.
    contact = fresh(db_session).scalar(select(Contact).where(Contact.email == "ref@example.com"))
    assert lifecycle.dispatch_to(runtime, other.id, [contact.id]) == 1
    work()
    news = [m for m in outbox.list() if m.subject == "News"]
    assert len(news) == 1 and "Order []" in outbox.get(news[0].key).text
