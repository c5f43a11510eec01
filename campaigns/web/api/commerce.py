"""API: orders (recorded once per shop order id), the Shopify and WooCommerce order webhooks, and coupons
(issue a code to a contact, redeem a code at checkout, look a code up)."""

from __future__ import annotations

import datetime as dt
import logging

from flask import json, request
from pydantic import BaseModel, Field
from sqlalchemy import select

from campaigns.contacts import records
from campaigns.coupons import assignment, pools, redemption
from campaigns.models import ApiScope, Contact, Order, OrderSource
from campaigns.orders import recording, shops
from campaigns.web.api.blueprint import bp
from campaigns.web.api.contacts import totals
from campaigns.web.api.guard import caller
from campaigns.web.api.problems import ApiProblem
from campaigns.web.api.schemas import (
    BigId,
    Id,
    Input,
    OrderCreated,
    OrderIn,
    OrderList,
    OrderOut,
    PageQuery,
    decode_cursor,
    encode_cursor,
)
from campaigns.web.api.spec import API_PREFIX, operation
from campaigns.web.context import db, rt

logger = logging.getLogger(__name__)
MAX_WEBHOOK_BYTES = 2 * 1024 * 1024


def order_out(o: Order, tags: list[str] | None = None) -> OrderOut:
    return OrderOut(id=o.id, contact_id=o.contact_id, ordered_at=o.ordered_at, amount=o.amount, currency=o.currency,
                    reference=o.reference, source=o.source, external_id=o.external_id, tags=tags or [])


def _recorded(result: recording.Recorded) -> OrderCreated:
    values = totals(db(), [result.order.contact_id])[result.order.contact_id]
    tags = recording.order_tags(db(), [result.order.id])[result.order.id]
    return OrderCreated(order=order_out(result.order, tags), created=result.created,
                        contact_created=result.contact_created, order_count=sum(v.orders for v in values),
                        lifetime_value=values,
                        tier=db().scalar(select(Contact.tier).where(Contact.id == result.order.contact_id)) or "")


@operation(bp, "POST", f"{API_PREFIX}/orders", tag="Orders", summary="Record an order",
           scope=ApiScope.ORDERS_WRITE, body=OrderIn, response=OrderCreated, status=201,
           extra_responses={200: ("Already recorded under this external_id: the first order, unchanged",
                                  OrderCreated)})
def order_create(body: OrderIn):
    """Adds the order to the contact with this email, creating the contact as a customer without marketing
    consent unless accepts_marketing is true (docs/api.md, consent rule). With external_id, recording the same
    order again returns the first one (200) and changes nothing."""
    session = db()
    result = recording.record_order(session, recording.OrderInput(
        source=OrderSource.API, email=body.email, amount=body.amount, currency=body.currency,
        external_id=body.external_id, ordered_at=body.ordered_at, reference=body.reference,
        accepts_marketing=body.accepts_marketing, first_name=body.first_name, last_name=body.last_name,
        tags=tuple(body.tags)))
    session.commit()
    return _recorded(result), 201 if result.created else 200


@operation(bp, "GET", f"{API_PREFIX}/contacts/<int:contact_id>/orders", tag="Orders",
           summary="A contact's orders and lifetime value", scope=ApiScope.CONTACTS_READ, query=PageQuery,
           response=OrderList)
def order_list(contact_id: int, query: PageQuery):
    """Most recently recorded first; order_count and lifetime_value cover all of the contact's orders, not only
    this page."""
    session = db()
    records.get_contact(session, contact_id)
    rows = recording.contact_orders(session, contact_id, after=decode_cursor(query.cursor), limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    values = totals(session, [contact_id])[contact_id]
    tags = recording.order_tags(session, [o.id for o in rows])
    return OrderList(data=[order_out(o, tags[o.id]) for o in rows],
                     next_cursor=encode_cursor(rows[-1].id) if more else None,
                     order_count=sum(v.orders for v in values), lifetime_value=values)


# ------------------------------------------------------------------ shop webhooks

class WebhookResult(BaseModel):
    ok: bool
    order_id: int | None = Field(default=None, description="The recorded order (null for a ping)")
    created: bool = False


SHOP_SECURITY: list[dict[str, list[str]]] = []      # signed by the shop (HMAC), not by an API key
SHOP_ORDER = {"type": "object", "description": "The shop's order payload, exactly as the shop sends it"}


def _shop_webhook(source: OrderSource, secret: str, signature_header: str) -> BaseModel | tuple:
    if not secret:
        raise ApiProblem(404, f"the {source.value} receiver is off: set its webhook secret to turn it on")
    if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
        raise ApiProblem(413, "the webhook body is too large")
    body = request.get_data(cache=True)
    if not shops.verify(secret, body, request.headers.get(signature_header)):
        raise ApiProblem(401, f"the {signature_header} signature does not match this body")
    if source == OrderSource.WOOCOMMERCE and body.startswith(b"webhook_id="):
        return WebhookResult(ok=True)     # WooCommerce's ping when the webhook is saved
    try:
        payload = json.loads(body)
    except ValueError:
        raise ApiProblem(400, "the webhook body is not JSON") from None
    item = shops.shopify_order(payload) if source == OrderSource.SHOPIFY else shops.woocommerce_order(payload)
    session = db()
    result = recording.record_order(session, item)
    session.commit()
    return WebhookResult(ok=True, order_id=result.order.id, created=result.created)


@operation(bp, "POST", f"{API_PREFIX}/webhooks/shopify/orders", tag="Shop webhooks", scope=None,
           summary="Shopify orders/create receiver", response=WebhookResult, security=SHOP_SECURITY,
           raw_body=SHOP_ORDER, errors=(400, 401, 404, 413, 415, 422))
def shopify_orders():
    """Point a Shopify `orders/create` webhook (JSON) here. Verified with X-Shopify-Hmac-Sha256 against
    SHOPIFY_WEBHOOK_SECRET; recorded once per Shopify order id. Off (404) without the secret."""
    return _shop_webhook(OrderSource.SHOPIFY, rt().settings.shopify_webhook_secret, "X-Shopify-Hmac-Sha256")


@operation(bp, "POST", f"{API_PREFIX}/webhooks/woocommerce/orders", tag="Shop webhooks", scope=None,
           summary="WooCommerce order.created receiver", response=WebhookResult, security=SHOP_SECURITY,
           raw_body=SHOP_ORDER, errors=(400, 401, 404, 413, 415, 422))
def woocommerce_orders():
    """Point a WooCommerce `Order created` webhook here with WOOCOMMERCE_WEBHOOK_SECRET as its secret; verified
    with X-WC-Webhook-Signature, recorded once per WooCommerce order id. Off (404) without the secret."""
    return _shop_webhook(OrderSource.WOOCOMMERCE, rt().settings.woocommerce_webhook_secret,
                         "X-WC-Webhook-Signature")


# ------------------------------------------------------------------ coupons

class IssueIn(Input):
    pool_id: Id
    contact_id: BigId
    note: str = Field(default="", max_length=200, description="Why, e.g. \"sorry for the late parcel\"")


class IssuedCode(BaseModel):
    code: str
    value: str
    expires_on: dt.date
    pool_id: int
    contact_id: int


class RedeemIn(Input):
    code: str = Field(min_length=1, max_length=64)
    reference: str = Field(default="", max_length=200, description="The shop's order number")


class CodeStatus(BaseModel):
    code: str
    status: str = Field(description="free, issued, redeemed or expired")
    pool: str
    value: str
    expires_on: dt.date
    issued: bool
    campaign_id: int | None
    redeemed_at: dt.datetime | None
    reference: str | None


@operation(bp, "POST", f"{API_PREFIX}/coupons/issue", tag="Coupons", summary="Give a contact a code",
           scope=ApiScope.COUPONS_ISSUE, body=IssueIn, response=IssuedCode, status=201, errors=(404, 409))
def coupon_issue(body: IssueIn):
    """Takes one free code of the pool for the contact (outside any campaign). 409 when the pool is empty."""
    session = db()
    records.get_contact(session, body.contact_id)
    pool = pools.get_pool(session, body.pool_id)
    issued = assignment.issue_code(session, pool.id, body.contact_id, body.note or f"api: {caller().name}")
    session.commit()
    return IssuedCode(code=issued["code"], value=pool.value_description, expires_on=pool.expires_on,
                      pool_id=pool.id, contact_id=body.contact_id), 201


@operation(bp, "POST", f"{API_PREFIX}/coupons/redeem", tag="Coupons", summary="Redeem a code",
           scope=ApiScope.COUPONS_REDEEM, body=RedeemIn, response=CodeStatus, errors=(404, 409, 410))
def coupon_redeem(body: RedeemIn):
    """Marks the code used, once: 409 if it was redeemed before (code_status says when and for which order),
    410 if it expired, 404 if unknown. Replaces the deprecated POST /admin/api/coupons/redeem."""
    session = db()
    status = redemption.redeem(session, body.code, reference=body.reference, by=f"api: {caller().name}")
    session.commit()
    return CodeStatus(**status)


@operation(bp, "GET", f"{API_PREFIX}/coupons/<string:code>", tag="Coupons", summary="Look a code up",
           scope=ApiScope.COUPONS_REDEEM, response=CodeStatus, errors=(400,))
def coupon_status(code: str):
    found, pool = redemption.find_code(db(), code)
    return CodeStatus(**redemption.describe(found, pool))
