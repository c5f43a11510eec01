"""CSV import, the mapping: which column fills which contact field, and turning one row into contact values."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from campaigns.contacts import birthdays
from campaigns.contacts.records import normalize_email
from campaigns.errors import ValidationError

# Profile fields an import column can fill, with their column widths (longer values fail the row, not the import).
FIELD_LIMITS = {"email": 320, "first_name": 200, "last_name": 200, "phone": 50, "address_line1": 200,
                "address_line2": 200, "city": 100, "region": 100, "postal_code": 20, "country": 2,
                "timezone": 64, "locale": 16}
TARGETS = (*FIELD_LIMITS, "birthday", "interests", "topics", "attribute", "ignore")

# Header names (lower-cased, without spaces, dashes and underscores) mapped to a target.
_GUESSES = {
    "email": "email", "e-mail": "email", "mail": "email", "emailaddress": "email", "emailadresse": "email",
    "firstname": "first_name", "givenname": "first_name", "vorname": "first_name", "prenom": "first_name",
    "prénom": "first_name", "forename": "first_name",
    "lastname": "last_name", "surname": "last_name", "familyname": "last_name", "nachname": "last_name",
    "nom": "last_name",
    "phone": "phone", "telephone": "phone", "tel": "phone", "telefon": "phone", "mobile": "phone",
    "address": "address_line1", "address1": "address_line1", "addressline1": "address_line1",
    "street": "address_line1", "strasse": "address_line1", "straße": "address_line1",
    "address2": "address_line2", "addressline2": "address_line2",
    "city": "city", "town": "city", "ort": "city", "stadt": "city", "ville": "city",
    "region": "region", "state": "region", "province": "region", "bundesland": "region",
    "postalcode": "postal_code", "postcode": "postal_code", "zip": "postal_code", "zipcode": "postal_code",
    "plz": "postal_code", "postleitzahl": "postal_code",
    "country": "country", "countrycode": "country", "land": "country",
    "birthday": "birthday", "birthdate": "birthday", "dateofbirth": "birthday", "dob": "birthday",
    "geburtstag": "birthday", "geburtsdatum": "birthday",
    "timezone": "timezone", "tz": "timezone", "locale": "locale", "language": "locale", "sprache": "locale",
    "interests": "interests", "interest": "interests", "tags": "interests", "interessen": "interests",
    "topics": "topics", "topic": "topics", "lists": "topics", "newsletters": "topics",
}
_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d")
_LIST_SPLIT = re.compile(r"[;,|]")




class RowRejected(ValidationError):
    """One CSV row cannot be imported as it is; the message goes into the error report next to the row."""


class Mode(StrEnum):
    """What happens to a row whose address is already a contact."""

    UPDATE = "update"
    SKIP = "skip"


@dataclass(frozen=True)
class Column:
    """How one CSV column is imported: target is one of TARGETS; key names the custom attribute."""

    target: str
    key: str = ""


@dataclass
class Row:
    """One valid CSV row as contact values."""

    values: dict[str, Any]
    attributes: dict[str, str]
    interests: list[str]
    topics: list[str]


def guess(header: str) -> Column:
    """A sensible default target for a column name (Email, E-Mail, First name, Vorname…)."""
    name = re.sub(r"[\s_\-.]", "", header.strip().lower())
    if header.strip().lower() in ("e-mail", "e mail"):
        return Column("email")
    target = _GUESSES.get(name)
    if target:
        return Column(target)
    if not name:
        return Column("ignore")
    return Column("attribute", re.sub(r"\W+", "_", header.strip().lower()).strip("_")[:64] or "ignore")


def parse_mapping(form: Mapping[str, str], columns: int) -> list[Column]:
    """Read col-<i> / key-<i> form fields into a mapping; raises ValidationError with what is wrong."""
    mapping = []
    for i in range(columns):
        target = form.get(f"col-{i}", "ignore")
        if target not in TARGETS:
            raise ValidationError(f"Column {i + 1}: unknown field {target!r}.", field=f"col-{i}")
        key = form.get(f"key-{i}", "").strip()[:64]
        if target == "attribute" and not key:
            raise ValidationError(f"Column {i + 1}: give the custom attribute a name.", field=f"key-{i}")
        mapping.append(Column(target, key))
    emails = [c for c in mapping if c.target == "email"]
    if len(emails) != 1:
        raise ValidationError("Map exactly one column to Email: contacts are matched by their address.",
                              field="col-0")
    for name in FIELD_LIMITS | {"birthday": 0}:
        if name != "email" and sum(c.target == name for c in mapping) > 1:
            raise ValidationError(f"Only one column can be mapped to {name}.", field="col-0")
    return mapping


def _date(value: str) -> dt.date:
    if len(value) == 10 and value[4] == "-":
        try:
            return dt.date.fromisoformat(value)      # the common case, far cheaper than strptime
        except ValueError:
            pass
    if value.startswith(("--", "'--")):
        # A birthday without a year, as Rapport's export writes it (behind the apostrophe that keeps a
        # spreadsheet from reading it as a formula).
        try:
            return birthdays.parse(value.lstrip("'"))
        except ValueError:
            pass
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise RowRejected(f"birthday {value[:40]!r} is not a date like 1990-04-23 (or --04-23 without the year)")


# Plain addresses skip email_validator's full parse (it costs more than the rest of a row); anything unusual gets
# the full check. Local parts may be ASCII or letters and digits of any script (RFC 6531), already in NFC.
_SIMPLE_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
                            r"(?:com|net|org|de|at|ch|fr|it|es|nl|be|uk|us|eu|io|info|biz|pl|se|dk|no|fi|pt|ie)")
_ASCII_LOCAL = re.compile(r"[a-z0-9](?:[a-z0-9._+\-]{0,62}[a-z0-9])?")
_UNICODE_LOCAL = re.compile(r"[^\W_](?:[\w.+\-]{0,62}[^\W_])?")


@lru_cache(maxsize=4096)
def _simple_domain(domain: str) -> bool:
    """Whether a domain is plain enough for the fast path (most rows share a few domains, hence the cache)."""
    return _SIMPLE_DOMAIN.fullmatch(domain) is not None


def _email(raw: str) -> str:
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    if at and ".." not in local and _simple_domain(domain):
        if _ASCII_LOCAL.fullmatch(local):
            return value
        if (_UNICODE_LOCAL.fullmatch(local) and len(local.encode()) <= 64
                and unicodedata.is_normalized("NFC", local)):
            return value
    return normalize_email(raw)


# How convert() treats a column, decided once per import rather than per cell.
_EMAIL, _TEXT, _COUNTRY, _BIRTHDAY, _ATTRIBUTE, _INTERESTS, _TOPICS = range(7)
_KINDS = {"email": _EMAIL, "country": _COUNTRY, "birthday": _BIRTHDAY, "attribute": _ATTRIBUTE,
          "interests": _INTERESTS, "topics": _TOPICS}


def convert(row: list[str], mapping: list[Column], topic_ids: dict[str, int]) -> Row:
    """One CSV row as contact values; raises RowRejected with the reason the row is refused."""
    return RowConverter(mapping, topic_ids)(row)


class RowConverter:
    """Turns CSV rows into contact values for one mapping; raises RowRejected with the reason a row is refused."""

    def __init__(self, mapping: list[Column], topic_ids: dict[str, int]) -> None:
        self.width = len(mapping)
        self.topic_ids = topic_ids
        self.plan = [(i, _KINDS.get(col.target, _TEXT), col.target, col.key, FIELD_LIMITS.get(col.target, 0))
                     for i, col in enumerate(mapping) if col.target != "ignore"]

    def __call__(self, row: list[str]) -> Row:
        width = self.width
        if len(row) > width and "".join(row[width:]).strip():
            raise RowRejected(f"the row has {len(row)} cells but the header has {width}")
        size = len(row)
        values: dict[str, Any] = {}
        attributes: dict[str, str] = {}
        interests: list[str] = []
        topics: list[str] = []
        for i, kind, target, key, limit in self.plan:
            if i >= size:
                break
            cell = row[i].strip()
            if kind == _TEXT:
                if len(cell) > limit:
                    raise RowRejected(f"{target} is longer than {limit} characters")
                values[target] = cell
            elif kind == _EMAIL:
                if not cell:
                    raise RowRejected("the email address is empty")
                if len(cell) > 320:
                    raise RowRejected("the email address is too long")
                try:
                    values["email"] = _email(cell)
                except ValidationError as exc:
                    raise RowRejected(str(exc)) from None
            elif kind == _ATTRIBUTE:
                if len(cell) > 10_000:
                    raise RowRejected(f"attribute {key} is longer than 10,000 characters")
                attributes[key] = cell
            elif kind == _BIRTHDAY:
                values["birthday"] = _date(cell) if cell else None
            elif kind == _COUNTRY:
                code = cell.upper()
                if code and (len(code) != 2 or not code.isalpha() or not code.isascii()):
                    raise RowRejected(f"country {cell[:40]!r} is not a two-letter code such as DE or US")
                values["country"] = code
            elif kind == _INTERESTS:
                if cell:
                    for item in _LIST_SPLIT.split(cell):
                        item = item.strip().lower()
                        if item:
                            if len(item) > 100:
                                raise RowRejected("an interest is longer than 100 characters")
                            interests.append(item)
            elif cell:      # topics
                for name in _LIST_SPLIT.split(cell):
                    name = name.strip()
                    if name:
                        if name.lower() not in self.topic_ids:
                            raise RowRejected(f"there is no topic called {name[:60]!r}")
                        topics.append(name.lower())
        if "email" not in values:
            raise RowRejected("the row has no email address")
        return Row(values, attributes, interests, topics)
