"""Generated people for the benchmarks: plausible, varied (accents, several countries), reproducible by seed."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

FIRST = ["Anna", "Ben", "Jürgen", "Zoë", "Çağla", "Émile", "Li", "Maria", "Oğuz", "Sven", "Ingrid", "Paul"]
LAST = ["Becker", "Otto", "Müller", "Schmidt", "Dubois", "Rossi", "Nowak", "Jensen", "García", "Smith"]
CITIES = [("Berlin", "10115", "DE"), ("Wien", "1010", "AT"), ("Zürich", "8001", "CH"), ("Paris", "75001", "FR"),
          ("München", "80331", "DE"), ("Hamburg", "20095", "DE"), ("Lyon", "69001", "FR"), ("Graz", "8010", "AT")]
INTERESTS = ["gardening", "running", "cooking", "roses", "tools", "books", "travel", "wine"]
DOMAINS = ["example.com", "mail.de", "web.de", "gmx.net", "example.org", "posteo.de"]


@dataclass(frozen=True, slots=True)
class Person:
    email: str
    first: str
    last: str
    phone: str
    city: str
    postal: str
    country: str
    birthday: dt.date
    interests: list[str]
    customer: str


def person(rnd: random.Random, i: int) -> Person:
    """The i-th generated person (unique email per i)."""
    first, last = rnd.choice(FIRST), rnd.choice(LAST)
    city, postal, country = rnd.choice(CITIES)
    return Person(email=f"user{i}.{last.lower()[:3]}@{DOMAINS[i % len(DOMAINS)]}", first=first, last=last,
                  phone=f"+49 30 {rnd.randrange(1000000, 9999999)}", city=city, postal=postal, country=country,
                  birthday=dt.date(rnd.randrange(1940, 2006), rnd.randrange(1, 13), rnd.randrange(1, 29)),
                  interests=rnd.sample(INTERESTS, rnd.randrange(0, 3)), customer=f"C{100000 + i}")
