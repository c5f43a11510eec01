"""Demo data for `make demo`: realistic contacts, topics, a named sender, two MJML campaigns, one admin."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from campaigns.config import Settings
from campaigns.db import make_engine, make_session_factory, session_scope
from campaigns.models import (
    AdminRole,
    AdminUser,
    Campaign,
    CampaignKind,
    Contact,
    ContactInterest,
    ContactStatus,
    Order,
    Sender,
    Subscription,
    Topic,
    utcnow,
)

DEMO_EMAIL = "demo@rapport.test"
DEMO_PASSWORD = "rapport-demo"
STARTERS = Path(__file__).resolve().parent / "starters"

FIRST = ["Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannah", "Ilias", "Jana", "Karim", "Lena",
         "Mateo", "Nora", "Oskar", "Paula", "Quentin", "Rosa", "Samuel", "Tara", "Umut", "Vera", "Wiebke", "Yusuf",
         "Zoë", "Amélie", "Björn", "Chiara", "Dmitri", "Eva", "Finn", "Giulia", "Hugo", "Ines", "Jonas", "Kaja",
         "Luis", "Mira", "Niklas", "Olivia", "Priya", "Rafael", "Sofia", "Theo", "Ursula", "Valentin", "Wen", "Ximena"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Braun", "Zimmermann", "Krüger",
        "Hartmann", "Lange", "Werner", "Krause", "Lehmann", "Köhler", "Yılmaz", "Kowalski", "Rossi", "García",
        "Dubois", "Nguyen", "O'Brien", "Jensen", "Novak", "Papadopoulos"]
PLACES = [("Berlin", "BE", "10115", "DE", "Europe/Berlin"), ("Hamburg", "HH", "20095", "DE", "Europe/Berlin"),
          ("München", "BY", "80331", "DE", "Europe/Berlin"), ("Köln", "NW", "50667", "DE", "Europe/Berlin"),
          ("Leipzig", "SN", "04109", "DE", "Europe/Berlin"), ("Wien", "W", "1010", "AT", "Europe/Vienna"),
          ("Zürich", "ZH", "8001", "CH", "Europe/Zurich"), ("Amsterdam", "NH", "1012", "NL", "Europe/Amsterdam"),
          ("Lyon", "ARA", "69001", "FR", "Europe/Paris"), ("København", "84", "1050", "DK", "Europe/Copenhagen")]
STREETS = ["Lindenstraße", "Gartenweg", "Am Markt", "Bahnhofstraße", "Rosenallee", "Kastanienweg", "Hauptstraße",
           "Mühlenweg", "Schillerstraße", "Birkenhof"]
INTERESTS = ["vegetables", "roses", "fruit trees", "houseplants", "composting", "balcony gardens", "herbs",
             "bees", "tools", "seeds"]
DOMAINS = ["example.com", "example.net", "example.org"]


def _contact(rng: random.Random, i: int) -> Contact:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, region, postal, country, tz = rng.choice(PLACES)
    local = f"{first}.{last}".lower().replace("'", "")
    local = local.encode("ascii", "ignore").decode() or "contact"
    created = utcnow() - dt.timedelta(days=rng.randint(5, 900))
    return Contact(
        email=f"{local}{i}@{rng.choice(DOMAINS)}", first_name=first, last_name=last,
        phone=f"+49 {rng.randint(150, 179)} {rng.randint(1000000, 9999999)}",
        address_line1=f"{rng.choice(STREETS)} {rng.randint(1, 120)}", city=city, region=region,
        postal_code=postal, country=country, timezone=tz, locale=rng.choice(["de", "en", "en", "fr"]),
        birthday=dt.date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28)),
        attributes={"customer_tier": rng.choice(["seedling", "sprout", "evergreen"]),
                    "favourite_store": city},
        status=ContactStatus.SUBSCRIBED if rng.random() > 0.06 else ContactStatus.UNSUBSCRIBED,
        consent_source=rng.choice(["checkout", "signup form", "in-store"]), consent_at=created, created_at=created,
    )


def seed(settings: Settings, contacts: int = 300) -> bool:
    """Fill an empty database with demo data; returns False (and changes nothing) when it already has data."""
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            if session.scalar(select(func.count()).select_from(AdminUser)):
                return False
            _seed(session, settings, contacts)
        return True
    finally:
        engine.dispose()


def _seed(session, settings: Settings, n: int) -> None:  # noqa: ANN001
    from werkzeug.security import generate_password_hash

    rng = random.Random(20261123)
    session.add(AdminUser(email=DEMO_EMAIL, name="Demo Marketer", role=AdminRole.ADMIN,
                          password_hash=generate_password_hash(DEMO_PASSWORD)))
    owner = Sender(name="Anna Becker", email=f"anna@{settings.dkim_domain}", title="Customer care")
    session.add(owner)
    topics = [Topic(name="Newsletter", description="Monthly notes: what to sow, events, guides"),
              Topic(name="Tips & guides", description="Short how-tos, now and then"),
              Topic(name="Offers", description="Coupons and sales, rarely")]
    session.add_all(topics)
    session.flush()
    for i in range(1, n + 1):
        contact = _contact(rng, i)
        contact.owner = owner if rng.random() < 0.3 else None
        chosen = [t for t in topics if rng.random() < (0.9 if t.name == "Newsletter" else 0.5)] or [topics[0]]
        contact.subscriptions = [Subscription(topic_id=t.id, subscribed=True) for t in chosen]
        contact.interests = [ContactInterest(interest=x) for x in sorted(set(rng.sample(INTERESTS, 2)))]
        contact.orders = [
            Order(ordered_at=contact.created_at + dt.timedelta(days=rng.randint(0, 300)),
                  amount=Decimal(rng.randint(900, 25000)) / 100, reference=f"GT-{rng.randint(10000, 99999)}")
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5]))]
        session.add(contact)
    newsletter = Campaign(name="March newsletter", kind=CampaignKind.NURTURE,
                          subject="{{ contact.first_name|default('Hello', true) }}, what to sow this month",
                          preheader="Sowing calendar, a ten-minute soil test and a pruning workshop",
                          from_name=owner.name, from_email=settings.sender_email,
                          mjml=(STARTERS / "newsletter.mjml").read_text())
    newsletter.topics = [topics[0]]
    coupon = Campaign(name="Autumn thank-you coupon", kind=CampaignKind.MARKETING,
                      subject="A thank-you: 15% off your next order", preheader="Code inside, valid this month",
                      from_name=settings.sender_name, from_email=settings.sender_email,
                      mjml=(STARTERS / "coupon.mjml").read_text())
    coupon.topics = [topics[2]]
    session.add_all([newsletter, coupon])
