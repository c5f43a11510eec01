"""The API's pydantic models shared by several resources: pages, cursors, contacts, topics, orders.

Request models forbid unknown fields (a typo is an error, not a silent no-op); response models describe exactly
what the views serialize, and are what the OpenAPI document shows.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

from campaigns.contacts import birthdays
from campaigns.web.api.problems import ApiProblem

MAX_PAGE = 200
Email = Annotated[str, StringConstraints(min_length=3, max_length=320), Field(json_schema_extra={"format": "email"})]
Short = Annotated[str, StringConstraints(max_length=200)]
# Ids of contacts (and orders, events, answers) are 64-bit; topics, segments, campaigns, pools and surveys 32-bit.
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
BigId = Annotated[int, Field(ge=1, le=2**63 - 1)]


def _birthday(value: Any) -> Any:
    """"--MM-DD" (a birthday without a year) as the stored date; anything else as pydantic reads a date."""
    if isinstance(value, str) and value.strip().startswith("--"):
        try:
            return birthdays.parse(value)
        except ValueError as exc:
            raise ValueError(f"{exc}; a birthday is a date like 1990-04-23, or --04-23 without the year") from None
    return value


_BIRTHDAY_SCHEMA = {"type": "string", "pattern": r"^(\d{4}|-)-\d{2}-\d{2}$", "examples": ["1990-04-23", "--04-23"],
                    "description": "A date, or --MM-DD for a birthday without the year"}
BirthdayIn = Annotated[dt.date, BeforeValidator(_birthday), WithJsonSchema(_BIRTHDAY_SCHEMA)]
BirthdayOut = Annotated[str, WithJsonSchema(_BIRTHDAY_SCHEMA)]


class Input(BaseModel):
    """A request body or query: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


def encode_cursor(last_id: int | None) -> str | None:
    """An opaque cursor for the page after the row with this id."""
    return None if last_id is None else base64.urlsafe_b64encode(f"a:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id a cursor names; 422 for one this API did not make."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, value = text.partition(":")
    if kind != "a" or not value.isdigit() or len(value) > 18:
        raise ApiProblem(422, "the cursor is not one this API returned", errors=[{"field": "cursor",
                                                                                   "message": "invalid cursor"}])
    return int(value)


class PageQuery(Input):
    cursor: str | None = Field(default=None, max_length=64, description="next_cursor of the previous page")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)


# ------------------------------------------------------------------ contacts

ContactStatusIn = Literal["subscribed", "unsubscribed"]


class ContactFields(Input):
    """The writable fields of a contact; absent fields are left as they are."""

    first_name: Short | None = None
    last_name: Short | None = None
    phone: Annotated[str, StringConstraints(max_length=50)] | None = None
    address_line1: Short | None = None
    address_line2: Short | None = None
    city: Annotated[str, StringConstraints(max_length=100)] | None = None
    region: Annotated[str, StringConstraints(max_length=100)] | None = None
    postal_code: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Annotated[str, StringConstraints(max_length=2)] | None = Field(default=None,
                                                                            description="ISO 3166 code, e.g. DE")
    birthday: BirthdayIn | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = Field(default=None,
                                                                              description="e.g. Europe/Berlin")
    locale: Annotated[str, StringConstraints(max_length=16)] | None = None
    attributes: dict[str, Any] | None = Field(default=None, description="Custom fields (replaces all of them)")
    interests: list[Annotated[str, StringConstraints(max_length=100)]] | None = Field(default=None, max_length=100)
    topic_ids: list[Id] | None = Field(default=None, max_length=500,
                                       description="Subscribe to exactly these topics (others are switched off)")
    status: ContactStatusIn | None = Field(
        default=None, description="subscribed or unsubscribed; a contact who unsubscribed, bounced or complained "
                                  "cannot be set back to subscribed through the API")


class ContactUpsert(ContactFields):
    email: Email


class ContactPatch(ContactFields):
    email: Email | None = None


class BulkUpsert(Input):
    contacts: list[ContactUpsert] = Field(min_length=1, max_length=10_000)


class LifetimeValue(BaseModel):
    currency: str
    total: Decimal = Field(description="Sum of the contact's orders in this currency, exact to the cent")
    orders: int


class ContactOut(BaseModel):
    id: int
    email: str
    status: str
    first_name: str
    last_name: str
    phone: str
    address_line1: str
    address_line2: str
    city: str
    region: str
    postal_code: str
    country: str
    birthday: BirthdayOut | None
    timezone: str
    locale: str
    attributes: dict[str, Any]
    interests: list[str]
    topic_ids: list[int] = Field(description="Topics the contact is subscribed to")
    consent_source: str
    consent_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    order_count: int
    lifetime_value: list[LifetimeValue]
    tier: str = Field(description="Loyalty tier, kept from the contact's orders (read-only); empty: none")


class ContactPage(BaseModel):
    data: list[ContactOut]
    next_cursor: str | None


class BulkError(BaseModel):
    index: int
    email: str
    field: str | None
    message: str


class BulkResult(BaseModel):
    created: int
    updated: int
    failed: int
    errors: list[BulkError]


class ContactQuery(PageQuery):
    status: Literal["subscribed", "unsubscribed", "bounced", "complained", "pending"] | None = None
    q: str | None = Field(default=None, max_length=200, description="Search: email, first or last name prefix")
    segment_id: Id | None = None


# ------------------------------------------------------------------ topics and subscriptions

class TopicOut(BaseModel):
    id: int
    name: str
    description: str
    public: bool


class TopicList(BaseModel):
    data: list[TopicOut]


class SubscriptionOut(BaseModel):
    topic_id: int
    topic: str
    subscribed: bool
    updated_at: dt.datetime | None


class SubscriptionList(BaseModel):
    data: list[SubscriptionOut]


class SubscriptionsIn(Input):
    topic_ids: list[Id] = Field(max_length=500, description="Exactly the topics the contact is subscribed to")


# ------------------------------------------------------------------ orders

class OrderIn(Input):
    email: Email
    amount: Decimal = Field(ge=0, le=Decimal("9999999999.99"), decimal_places=2,
                            description="Order total, at most two decimals, e.g. 19.99 or \"19.99\"")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None, description="The shop's order id: recording the same id again returns the first order")
    ordered_at: dt.datetime | None = Field(default=None, description="With a time zone; default: now")
    reference: Annotated[str, StringConstraints(max_length=100)] = Field(default="", description="e.g. #1001")
    accepts_marketing: bool = Field(default=False, description="The buyer opted in to marketing at checkout")
    first_name: Short = ""
    last_name: Short = ""
    tags: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=list, max_length=50,
        description="Product tags (tags, categories or SKUs of what was bought), matched by post-purchase "
                    "automations' product filter; stored in lower case")


class OrderOut(BaseModel):
    id: int
    contact_id: int
    ordered_at: dt.datetime
    amount: Decimal
    currency: str
    reference: str
    source: str
    external_id: str | None
    tags: list[str] = Field(default_factory=list)


class OrderCreated(BaseModel):
    order: OrderOut
    created: bool = Field(description="False when this external id was recorded before")
    contact_created: bool
    order_count: int
    lifetime_value: list[LifetimeValue]
    tier: str = Field(description="The buyer's loyalty tier with this order counted; empty: none")


class OrderList(BaseModel):
    data: list[OrderOut]
    next_cursor: str | None
    order_count: int
    lifetime_value: list[LifetimeValue]
