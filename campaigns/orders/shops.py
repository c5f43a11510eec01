"""Native order webhooks of Shopify (orders/create) and WooCommerce (order.created): signatures and payloads.

Both sign the raw body with HMAC-SHA256 under a secret shared with the shop, base64-encoded, in a header
(X-Shopify-Hmac-Sha256, X-WC-Webhook-Signature). The check runs on the bytes as received, before any parsing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from campaigns.errors import ValidationError
from campaigns.models import OrderSource
from campaigns.orders.recording import OrderInput


def signature(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)): what both shops send."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(secret: str, body: bytes, presented: str | None) -> bool:
    """Whether presented is the body's signature under secret (constant time); False without a secret."""
    if not secret or not presented:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), presented.strip().encode())


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any, limit: int = 200) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _time(value: Any, *, assume_utc: bool = False) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"the order date {value[:40]!r} is not an ISO 8601 time", field="created_at") from None
    if when.tzinfo is None:
        if not assume_utc:
            raise ValidationError("the order date has no time zone", field="created_at")
        when = when.replace(tzinfo=dt.UTC)
    return when


def _order_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise ValidationError("the order has no id", field="id")
    return str(value).strip()[:100]


def _line_skus(payload: Mapping[str, Any]) -> list[str]:
    items = payload.get("line_items")
    return [_text(_dict(i).get("sku"), 100) for i in items if _text(_dict(i).get("sku"), 100)] \
        if isinstance(items, list) else []


def shopify_order(payload: Any) -> OrderInput:
    """An orders/create payload as an OrderInput. Marketing consent is the customer's email_marketing_consent
    state "subscribed" (or the older buyer_accepts_marketing flag): anything else is no consent. Product tags: the
    order's tags (a comma-separated text) and its line items' SKUs."""
    if not isinstance(payload, Mapping):
        raise ValidationError("the webhook body is not a JSON object")
    customer = _dict(payload.get("customer"))
    email = _text(payload.get("email"), 320) or _text(payload.get("contact_email"), 320) or _text(
        customer.get("email"), 320)
    if not email:
        raise ValidationError("the order has no customer email", field="email")
    consent = _dict(customer.get("email_marketing_consent")).get("state")
    opted_in = consent == "subscribed" if consent is not None else payload.get("buyer_accepts_marketing") is True
    return OrderInput(source=OrderSource.SHOPIFY, email=email, amount=payload.get("total_price", ""),
                      currency=_text(payload.get("currency"), 3) or "EUR", external_id=_order_id(payload.get("id")),
                      ordered_at=_time(payload.get("created_at")), reference=_text(payload.get("name"), 100),
                      accepts_marketing=opted_in, first_name=_text(customer.get("first_name")),
                      last_name=_text(customer.get("last_name")),
                      tags=tuple(t for t in _text(payload.get("tags"), 5000).split(",") if t.strip())[:40]
                      + tuple(_line_skus(payload))[:10])


def woocommerce_order(payload: Any) -> OrderInput:
    """An order.created payload as an OrderInput. WooCommerce has no standard marketing opt-in, so its orders
    never count as consent. Product tags: its line items' SKUs."""
    if not isinstance(payload, Mapping):
        raise ValidationError("the webhook body is not a JSON object")
    billing = _dict(payload.get("billing"))
    email = _text(billing.get("email"), 320)
    if not email:
        raise ValidationError("the order has no billing email", field="email")
    when = _time(payload.get("date_created_gmt"), assume_utc=True) or _time(payload.get("date_created"),
                                                                             assume_utc=True)
    number = _text(payload.get("number"), 90) if isinstance(payload.get("number"), str) else ""
    return OrderInput(source=OrderSource.WOOCOMMERCE, email=email, amount=payload.get("total", ""),
                      currency=_text(payload.get("currency"), 3) or "EUR", external_id=_order_id(payload.get("id")),
                      ordered_at=when, reference=f"#{number}" if number else "", accepts_marketing=False,
                      first_name=_text(billing.get("first_name")), last_name=_text(billing.get("last_name")),
                      tags=tuple(_line_skus(payload))[:50])
