"""A contact keeps their own details current in the preference center: postal address, phone, birthday (day and
month, the year only if they want), time zone, interests and "no post, please".

Everything is checked before anything is saved, and every problem is reported against its field, so the page can
show each next to its input and keep what was typed. Each changed detail is a DETAILS event (the consent history
the contact and the marketer see); the columns are the ones segments, birthday automations, the time-zone send
and print runs read, so a change counts from the moment it is committed.

A birthday without a year is stored in NO_YEAR (campaigns.contacts.birthdays).
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from phonenumbers import geocoder
from sqlalchemy.orm import Session

from campaigns.contacts.birthdays import NO_YEAR
from campaigns.errors import ValidationError
from campaigns.models import Contact, ContactInterest, Event, EventType, utcnow
from campaigns.post import addresses as post_addresses

MONTHS = list(calendar.month_name)[1:]
MAX_INTERESTS = 20
SOURCE = "preference center"
# Field: (label in words, column length).
TEXT_FIELDS = {"address_line1": ("address", 200), "address_line2": ("address (line 2)", 200),
               "city": ("town or city", 100), "region": ("state, province or region", 100),
               "postal_code": ("postal code", 20)}
LABELS = {**{k: v[0] for k, v in TEXT_FIELDS.items()}, "country": "country", "phone": "phone number",
          "birthday": "birthday", "timezone": "time zone", "interests": "interests", "no_post": "post"}


class DetailsInvalid(ValidationError):
    """One or more fields were refused: errors maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()), field=next(iter(errors)))
        self.errors = errors


@functools.cache
def countries() -> list[tuple[str, str]]:
    """(ISO 3166 code, English name) of every country with a telephone numbering plan, by name."""
    out = []
    for code in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(code)
        name = geocoder.country_name_for_number(example, "en") if example is not None else ""
        out.append((code, name or code))
    return sorted(out, key=lambda item: item[1])


@functools.cache
def time_zones() -> list[str]:
    """Every IANA time zone name a contact may choose (the "Area/City" ones, and UTC)."""
    return ["UTC", *sorted(z for z in zoneinfo.available_timezones() if "/" in z and not z.startswith(("Etc/",
                                                                                                      "SystemV/")))]


@dataclass
class Details:
    """The details form's values as they will be stored."""

    text: dict[str, str] = field(default_factory=dict)
    country: str = ""
    phone: str = ""
    birthday: dt.date | None = None
    timezone: str = "UTC"
    interests: list[str] = field(default_factory=list)
    no_post: bool = False


def form_values(contact: Contact, interests: list[str], no_post: bool) -> dict[str, Any]:
    """What the form shows for a contact's current details."""
    values: dict[str, Any] = {name: getattr(contact, name) or "" for name in TEXT_FIELDS}
    bday = contact.birthday
    values.update(country=contact.country or "", phone=contact.phone or "", timezone=contact.timezone or "UTC",
                  birth_day=str(bday.day) if bday else "", birth_month=str(bday.month) if bday else "",
                  birth_year=str(bday.year) if bday and bday.year != NO_YEAR else "",
                  interests=", ".join(interests), no_post=no_post)
    return values


def _text(raw: Any, limit: int, name: str, errors: dict[str, str]) -> str:
    value = " ".join(str(raw or "").split())
    if "\x00" in value or any(ord(ch) < 32 for ch in value):
        errors[name] = f"The {LABELS[name]} contains characters that cannot be printed."
    elif len(value) > limit:
        errors[name] = f"The {LABELS[name]} is at most {limit} characters ({len(value)} now)."
    return value[:limit]


def _birthday(form: Mapping[str, Any], errors: dict[str, str], today: dt.date) -> dt.date | None:
    raw = [str(form.get(k, "") or "").strip() for k in ("birth_day", "birth_month", "birth_year")]
    day, month, year = raw
    if not day and not month and not year:
        return None
    if not day.isdigit() or not month.isdigit() or len(day) > 2 or len(month) > 2 \
            or (year and (not year.isdigit() or len(year) != 4)):
        errors["birthday"] = "Give the day and the month of your birthday (the year only if you like)."
        return None
    d, m = int(day), int(month)
    y = int(year) if year else NO_YEAR
    if year and not today.year - 120 <= y <= today.year:
        errors["birthday"] = f"The year of birth is between {today.year - 120} and {today.year}."
        return None
    if not 1 <= m <= 12 or not 1 <= d <= calendar.monthrange(y, m)[1]:
        where = f" in {y}" if year and m == 2 else ""     # only February's length depends on the year
        errors["birthday"] = f"{calendar.month_name[m] if 1 <= m <= 12 else 'That month'} has no day {d}{where}."
        return None
    when = dt.date(y, m, d)
    if year and when > today:
        errors["birthday"] = "The birthday is in the future."
        return None
    return when


def _phone(raw: Any, country: str, errors: dict[str, str]) -> str:
    text = str(raw or "").strip()
    if not text:
        return ""
    if len(text) > 50:
        errors["phone"] = "The phone number is at most 50 characters."
        return ""
    try:
        number = phonenumbers.parse(text, country or None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        hint = "" if country else " Start with + and the country code, such as +49 30 1234567."
        errors["phone"] = f"That is not a phone number we can call.{hint}"
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _interests(raw: Any, errors: dict[str, str]) -> list[str]:
    items = raw if isinstance(raw, list | tuple) else str(raw or "").split(",")
    wanted: list[str] = []
    for item in items:
        tag = " ".join(str(item).split()).lower()
        if not tag:
            continue
        if len(tag) > 100 or any(ord(ch) < 32 for ch in tag):
            errors["interests"] = "Each interest is at most 100 characters of printable text."
            return []
        if tag not in wanted:
            wanted.append(tag)
    if len(wanted) > MAX_INTERESTS:
        errors["interests"] = f"Choose at most {MAX_INTERESTS} interests."
        return []
    return sorted(wanted)


def parse(form: Mapping[str, Any], today: dt.date | None = None, *, current: Contact | None = None) -> Details:
    """The submitted form as Details; raises DetailsInvalid naming every field that is wrong. A phone number or
    time zone or country sent back as the contact already has it is kept as it is (one entered before these checks,
    by an import or the API)."""
    errors: dict[str, str] = {}
    details = Details()
    for name, (_label, limit) in TEXT_FIELDS.items():
        details.text[name] = _text(form.get(name), limit, name, errors)
    country = str(form.get("country", "") or "").strip().upper()
    if country and country not in phonenumbers.SUPPORTED_REGIONS and not (current is not None
                                                                           and country == current.country):
        errors["country"] = "Choose your country from the list."
        country = ""
    details.country = country
    if country in post_addresses.NEEDS_REGION and details.text.get("address_line1") and not details.text["region"]:
        errors["region"] = "Letters to this country need the state or province."
    phone = str(form.get("phone", "") or "").strip()
    details.phone = phone if current is not None and phone and phone == current.phone else \
        _phone(phone, country, errors)
    details.birthday = _birthday(form, errors, today or dt.date.today())
    tz = str(form.get("timezone", "") or "").strip() or "UTC"
    if tz not in time_zones() and not (current is not None and tz == current.timezone):
        errors["timezone"] = "Choose your time zone from the list, such as Europe/Berlin."
    details.timezone = tz if "timezone" not in errors else "UTC"
    details.interests = _interests(form.get("interests", ""), errors)
    details.no_post = str(form.get("no_post", "")) in ("1", "on", "yes")
    if errors:
        raise DetailsInvalid(errors)
    return details


def update_details(session: Session, contact: Contact, details: Details, *,
                   now: dt.datetime | None = None) -> list[str]:
    """Store the details and record one DETAILS event per changed field; returns what changed, in words.
    Flushes; the caller commits."""
    now = now or utcnow()
    changed: list[str] = []
    new = {**details.text, "country": details.country, "phone": details.phone, "timezone": details.timezone}
    for name, value in new.items():
        if (getattr(contact, name) or "") != value:
            setattr(contact, name, value)
            changed.append(name)
    if contact.birthday != details.birthday:
        contact.birthday = details.birthday
        changed.append("birthday")
    current = sorted(i.interest for i in contact.interests)
    if current != details.interests:
        contact.interests = [ContactInterest(interest=i) for i in details.interests]
        changed.append("interests")
    if post_addresses.set_no_post(session, contact.id, details.no_post, source=SOURCE):
        changed.append("no_post")
    address = [n for n in changed if n in TEXT_FIELDS or n == "country"]
    others = [n for n in changed if n not in address]
    said: list[str] = []
    if address:
        session.add(Event(contact_id=contact.id, type=EventType.DETAILS, occurred_at=now,
                          data={"field": "postal address", "fields": address, "source": SOURCE}))
        said.append("Your postal address is saved.")
    for name in others:
        session.add(Event(contact_id=contact.id, type=EventType.DETAILS, occurred_at=now,
                          data={"field": LABELS[name], "fields": [name], "source": SOURCE}))
        if name == "no_post":
            said.append("You will get no letters or cards by post." if details.no_post
                        else "Letters and cards by post are welcome again.")
        else:
            said.append(f"Your {LABELS[name]} is saved." if name != "interests" else "Your interests are saved.")
    session.flush()
    return said or ["Nothing changed."]
