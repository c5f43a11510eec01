"""Postal addresses for letters: when an address is complete, how it is written on an envelope, and the no-post choice.

An address is complete with a first line, a postal code, a city and a two-letter country; US, Canadian and
Australian addresses need their state or province as well (their post sorts by it). How the block is written
follows the destination: "12345 Berlin" in most of Europe, "CITY ST 12345" in North America, the country's name
as the last line when the letter crosses a border (the sender's country comes from the print run's layout).
"""

from __future__ import annotations

from sqlalchemy import and_, delete, exists, func, not_, or_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from campaigns.errors import NotFound
from campaigns.models import Contact, PostOptOut

NEEDS_REGION = ("US", "CA", "AU")
# Country names in English capitals, as the Universal Postal Union asks for the destination line.
COUNTRY_NAMES = {
    "AT": "AUSTRIA", "AU": "AUSTRALIA", "BE": "BELGIUM", "CA": "CANADA", "CH": "SWITZERLAND", "CZ": "CZECHIA",
    "DE": "GERMANY", "DK": "DENMARK", "ES": "SPAIN", "FI": "FINLAND", "FR": "FRANCE", "GB": "UNITED KINGDOM",
    "IE": "IRELAND", "IT": "ITALY", "LU": "LUXEMBOURG", "NL": "NETHERLANDS", "NO": "NORWAY", "NZ": "NEW ZEALAND",
    "PL": "POLAND", "PT": "PORTUGAL", "SE": "SWEDEN", "TR": "TURKEY", "US": "UNITED STATES OF AMERICA",
}
# Where the postal code follows the city ("London SW1A 1AA") rather than preceding it ("10115 Berlin").
CODE_AFTER_CITY = ("GB", "IE", "NZ", "AU", "CA", "US")


def _filled(column: ColumnElement) -> ColumnElement:
    return func.length(func.trim(column)) > 0


def complete_address() -> ColumnElement:
    """SQL: the contact's postal address is complete enough to print a letter."""
    return and_(_filled(Contact.address_line1), _filled(Contact.postal_code), _filled(Contact.city),
                func.length(Contact.country) == 2,
                or_(func.upper(Contact.country).not_in(NEEDS_REGION), _filled(Contact.region)))


def wants_post() -> ColumnElement:
    """SQL: the contact did not ask for no post."""
    return not_(exists().where(PostOptOut.contact_id == Contact.id))


def address_lines(contact: Contact, home_country: str) -> list[str]:
    """The address block, line by line, for a letter posted in `home_country`."""
    country = (contact.country or "").strip().upper()
    code, city, region = contact.postal_code.strip(), contact.city.strip(), (contact.region or "").strip()
    if country in ("US", "CA", "AU"):
        place = f"{city.upper()} {region.upper()} {code}" if country == "US" else f"{city} {region}  {code}"
    elif country in CODE_AFTER_CITY:
        place = f"{city.upper()}\n{code.upper()}" if country == "GB" else f"{city} {code}"
    else:
        place = f"{code} {city}"
    lines = [contact.full_name or contact.email, contact.address_line1.strip(), (contact.address_line2 or "").strip(),
             *place.split("\n")]
    if country != home_country.upper():
        lines.append(COUNTRY_NAMES.get(country, country))
    return [line for line in lines if line]


# ------------------------------------------------------------------ the no-post choice

def no_post(session: Session, contact_id: int) -> bool:
    """Whether the contact asked for no post."""
    return session.get(PostOptOut, contact_id) is not None


def set_no_post(session: Session, contact_id: int, wanted: bool, *, source: str) -> bool:
    """Record the contact's choice (True: send no post); returns whether it changed. The caller commits."""
    if session.get(Contact, contact_id) is None:
        raise NotFound(f"contact {contact_id} not found")
    current = session.get(PostOptOut, contact_id)
    if wanted and current is None:
        session.add(PostOptOut(contact_id=contact_id, source=source[:200]))
    elif not wanted and current is not None:
        session.execute(delete(PostOptOut).where(PostOptOut.contact_id == contact_id))
    else:
        return False
    session.flush()
    return True
