"""Orders from the shop: POST /api/v1/orders and the Shopify and WooCommerce webhooks — signatures, the consent
rule, idempotency by the shop's order id, and exact lifetime value and order count."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from campaigns.contacts.records import order_totals
from campaigns.models import Contact, ContactStatus, Order
from campaigns.orders import shops
from tests.campaigns.api.conftest import auth
from tests.helpers import fresh

SHOPIFY_SECRET = "shpss_test_secret"
WOO_SECRET = "woo test secret"


@pytest.fixture()
def shop_app(runtime):
    """The app with both shop receivers on."""
    from campaigns.web.app import create_app

    settings = runtime.settings.with_overrides({"shopify_webhook_secret": SHOPIFY_SECRET,
                                                "woocommerce_webhook_secret": WOO_SECRET})
    application = create_app({"SETTINGS": settings, "TESTING": True})
    runtime.settings = settings
    application.extensions["rapport"] = runtime
    return application.test_client()


def shopify_payload(order_id: int = 820982911946154508, email: str = "jon@example.com", total: str = "199.65",
                    consent: str | None = "not_subscribed") -> dict:
    customer = {"email": email, "first_name": "Jon", "last_name": "Snow"}
    if consent is not None:
        customer["email_marketing_consent"] = {"state": consent}
    return {"id": order_id, "email": email, "total_price": total, "currency": "EUR", "name": "#1001",
            "created_at": "2026-03-01T10:00:00-05:00", "customer": customer}


def post_shopify(client, payload: dict, secret: str = SHOPIFY_SECRET):
    body = json.dumps(payload).encode()
    return client.post("/api/v1/webhooks/shopify/orders", data=body, content_type="application/json",
                       headers={"X-Shopify-Hmac-Sha256": shops.signature(secret, body),
                                "X-Shopify-Topic": "orders/create"})


def post_woo(client, payload: dict | bytes, secret: str = WOO_SECRET):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post("/api/v1/webhooks/woocommerce/orders", data=body, content_type="application/json",
                       headers={"X-WC-Webhook-Signature": shops.signature(secret, body),
                                "X-WC-Webhook-Topic": "order.created"})


def test_shopify_signature_is_checked(shop_app, db_session) -> None:
    r = post_shopify(shop_app, shopify_payload(), secret="wrong")
    assert r.status_code == 401 and r.mimetype == "application/problem+json"
    body = json.dumps(shopify_payload()).encode()
    r = shop_app.post("/api/v1/webhooks/shopify/orders", data=body, content_type="application/json")
    assert r.status_code == 401
    tampered = shop_app.post("/api/v1/webhooks/shopify/orders", data=body.replace(b"199.65", b"1.00"),
                             content_type="application/json",
                             headers={"X-Shopify-Hmac-Sha256": shops.signature(SHOPIFY_SECRET, body)})
    assert tampered.status_code == 401
    assert fresh(db_session).scalar(select(func.count()).select_from(Order)) == 0
    r = post_shopify(shop_app, shopify_payload())
    assert r.status_code == 200 and r.get_json()["created"] is True


def test_receivers_are_off_without_a_secret(client) -> None:
    assert post_shopify(client, shopify_payload()).status_code == 404
    assert post_woo(client, {"id": 1}).status_code == 404


def test_shopify_order_is_recorded_once_and_totals_stay_exact(shop_app, db_session) -> None:
    for _ in range(3):                                      # Shopify retries until it sees a 2xx
        assert post_shopify(shop_app, shopify_payload()).status_code == 200
    assert post_shopify(shop_app, shopify_payload(order_id=2, total="0.35")).status_code == 200
    contact = fresh(db_session).scalar(select(Contact).where(Contact.email == "jon@example.com"))
    totals = order_totals(db_session, contact.id)
    assert [(t.currency, t.total, t.orders) for t in totals] == [("EUR", Decimal("200.00"), 2)]
    order = db_session.scalar(select(Order).where(Order.external_id == "820982911946154508"))
    assert order.source == "shopify" and order.reference == "#1001" and order.amount == Decimal("199.65")
    assert order.ordered_at.isoformat() == "2026-03-01T15:00:00+00:00"


def test_consent_rule_for_shop_buyers(shop_app, db_session) -> None:
    post_shopify(shop_app, shopify_payload(order_id=10, email="no@example.com", consent="not_subscribed"))
    post_shopify(shop_app, shopify_payload(order_id=11, email="yes@example.com", consent="subscribed"))
    fresh(db_session)
    no = db_session.scalar(select(Contact).where(Contact.email == "no@example.com"))
    yes = db_session.scalar(select(Contact).where(Contact.email == "yes@example.com"))
    assert no.status == ContactStatus.UNSUBSCRIBED and no.consent_at is None and not no.subscriptions
    assert yes.status == ContactStatus.SUBSCRIBED and yes.consent_source == "shopify checkout opt-in"
    # A later order with an opt-in lifts the buyer an order added without consent …
    post_shopify(shop_app, shopify_payload(order_id=12, email="no@example.com", consent="subscribed"))
    assert fresh(db_session).scalar(select(Contact.status).where(Contact.email == "no@example.com")) == "subscribed"
    # … but never someone who unsubscribed themselves.
    db_session.add(Contact(email="left@example.com", status=ContactStatus.UNSUBSCRIBED, consent_source="signup"))
    db_session.commit()
    post_shopify(shop_app, shopify_payload(order_id=13, email="left@example.com", consent="subscribed"))
    assert fresh(db_session).scalar(select(Contact.status).where(Contact.email == "left@example.com")) == \
        "unsubscribed"


def test_woocommerce_signature_ping_and_idempotency(shop_app, db_session) -> None:
    payload = {"id": 727, "number": "727", "total": "29.90", "currency": "EUR",
               "date_created_gmt": "2026-02-02T09:30:00",
               "billing": {"email": "eva@example.com", "first_name": "Eva", "last_name": "Roth"}}
    assert post_woo(shop_app, payload, secret="nope").status_code == 401
    assert post_woo(shop_app, b"webhook_id=15").status_code == 200            # the ping when the hook is saved
    assert post_woo(shop_app, payload).get_json()["created"] is True
    assert post_woo(shop_app, payload).get_json()["created"] is False
    contact = fresh(db_session).scalar(select(Contact).where(Contact.email == "eva@example.com"))
    assert contact.status == ContactStatus.UNSUBSCRIBED and contact.first_name == "Eva"
    assert [(t.total, t.orders) for t in order_totals(db_session, contact.id)] == [(Decimal("29.90"), 1)]
    assert post_woo(shop_app, {"id": 728, "total": "1", "billing": {}}).status_code == 422


def test_api_orders_idempotent_by_external_id_and_exact(client, db_session, make_key) -> None:
    h = auth(make_key())
    amounts = ["0.10", "0.20", 19.99, "1000000.01"]
    for i, amount in enumerate(amounts):
        r = client.post("/api/v1/orders", json={"email": "buyer@example.com", "amount": amount,
                                                "external_id": f"A-{i}", "currency": "EUR"}, headers=h)
        assert r.status_code == 201, r.get_json()
    r = client.post("/api/v1/orders", json={"email": "buyer@example.com", "amount": "0.10", "external_id": "A-0"},
                    headers=h)
    assert r.status_code == 200 and r.get_json()["created"] is False
    body = r.get_json()
    assert body["order_count"] == 4 and body["lifetime_value"] == [
        {"currency": "EUR", "total": "1000020.30", "orders": 4}]
    cid = body["order"]["contact_id"]
    listed = client.get(f"/api/v1/contacts/{cid}/orders", query_string={"limit": 2}, headers=h).get_json()
    assert len(listed["data"]) == 2 and listed["next_cursor"] and listed["order_count"] == 4
    for bad in ({"amount": "1.001"}, {"amount": "-1"}, {"currency": "euro"}, {"amount": "NaN"}):
        r = client.post("/api/v1/orders", json={"email": "buyer@example.com", "amount": "1", **bad}, headers=h)
        assert r.status_code == 422, bad
    assert fresh(db_session).scalar(select(func.count()).select_from(Order)) == 4
    contact = client.get(f"/api/v1/contacts/{cid}", headers=h).get_json()
    assert contact["status"] == "unsubscribed" and contact["order_count"] == 4


def test_a_concurrent_delivery_of_the_same_order_finds_the_first(db_session, monkeypatch) -> None:
    """Two deliveries of one order racing: the loser's insert hits the unique (source, external_id) and it answers
    with the winner's order instead of failing."""
    from campaigns.models import OrderSource
    from campaigns.orders import recording

    item = recording.OrderInput(source=OrderSource.SHOPIFY, email="race@example.com", amount="10.00",
                                external_id="77")
    first = recording.record_order(db_session, item)
    db_session.commit()
    real = recording._existing
    calls = []

    def blind_once(session, source, external):
        calls.append(external)
        return None if len(calls) == 1 else real(session, source, external)

    monkeypatch.setattr(recording, "_existing", blind_once)
    second = recording.record_order(db_session, item)
    db_session.commit()
    assert second.created is False and second.order.id == first.order.id and len(calls) == 2
    assert db_session.scalar(select(func.count()).select_from(Order)) == 1


def test_amounts_are_exact_and_legacy_shopify_consent_is_read() -> None:
    from campaigns.errors import ValidationError
    from campaigns.orders.recording import parse_amount

    assert parse_amount(19.99) == Decimal("19.99") and parse_amount("7") == Decimal("7.00")
    for bad in ("1.005", "-0.01", "inf", True, "1e20", "abc"):
        with pytest.raises(ValidationError):
            parse_amount(bad)
    legacy = shopify_payload(consent=None)
    legacy["buyer_accepts_marketing"] = True
    assert shops.shopify_order(legacy).accepts_marketing is True
    assert shops.shopify_order(shopify_payload(consent=None)).accepts_marketing is False
    with pytest.raises(ValidationError):
        shops.shopify_order({**shopify_payload(), "created_at": "2026-03-01T10:00:00"})   # no zone
