"""Contacts list and segments at scale: 1,000,000 contacts, timed through the services the admin pages call.

Run: .venv/bin/python bench/contacts_list.py [--contacts N] [--database-url postgresql://postgres@127.0.0.1:5432/test]
     [--analyze] [--repeat 5]

Loads N generated contacts (with interests, orders and human/machine opens) into a fresh, migrated database — a
temp SQLite file by default, or a throw-away database on the --database-url server — with the driver's bulk path
(executemany on SQLite, COPY on PostgreSQL), then times, as the median of --repeat runs after one warm-up:
  - the contacts list: first page, a deep page forwards and its previous page, in both orders;
  - searches: an email prefix, a common first name, a last name, "first last", and a term that matches nobody;
  - a page of the list filtered by a segment, and segment counts (simple and nested with orders and engagement);
  - the /admin/contacts page through the Flask app (first page and a deep page), HTML included.
Prints one line per measurement and a JSON line. --analyze runs ANALYZE first (PostgreSQL's autovacuum does it by
itself; SQLite only when asked).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.people import person

CONTACT_COLS = ("id", "email", "first_name", "last_name", "phone", "address_line1", "address_line2", "city",
                "region", "postal_code", "country", "birthday", "timezone", "locale", "attributes", "status",
                "consent_source", "created_at", "updated_at", "last_sent_at", "engagement_score", "frequency")


def rows(n: int, now: dt.datetime):
    """Contacts, interests, orders and opens as tuples (ids 1..n, oldest first)."""
    rnd = random.Random(42)
    contacts, interests, orders, events = [], [], [], []
    start = now - dt.timedelta(days=1500)
    for i in range(1, n + 1):
        p = person(rnd, i)
        created = start + dt.timedelta(seconds=i * 1500 * 86400 // n)
        status = "subscribed" if rnd.random() < 0.9 else "unsubscribed"
        sent = now - dt.timedelta(days=rnd.randrange(1, 200)) if rnd.random() < 0.7 else None
        contacts.append((i, p.email, p.first, p.last, p.phone, "Lindenstraße 1", "", p.city, "", p.postal,
                         p.country, p.birthday, "Europe/Berlin", "de",
                         json.dumps({"customer": p.customer, "visits": str(rnd.randrange(0, 50))}),
                         status, "bench", created, created, sent, 0.0, "every"))
        for interest in p.interests:
            interests.append((i, interest))
        for _ in range(rnd.choice((0, 0, 0, 1, 1, 2))):
            orders.append((i, now - dt.timedelta(days=rnd.randrange(1, 900)), rnd.randrange(500, 30000) / 100,
                           "EUR", ""))
        if rnd.random() < 0.25:
            events.append((i, "open", now - dt.timedelta(days=rnd.randrange(0, 120)), "{}", rnd.random() < 0.3))
    return contacts, interests, orders, events


def _sqlite_value(v):
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return v.isoformat() if isinstance(v, dt.date) else v


def bulk_insert(engine, tables) -> None:
    """Insert (table, columns, row iterable) with the driver's fastest path (COPY, or executemany), in one
    transaction; the benchmarks that build big data sets share it."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "postgresql":
            for table, cols, data in tables:
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in data:
                        copy.write_row(row)
        else:
            cur.execute("BEGIN")
            for table, cols, data in tables:
                cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                ([_sqlite_value(v) for v in row] for row in data))
        raw.commit()
    finally:
        raw.close()


def load(engine, n: int) -> float:
    """Bulk-load n contacts and their data; returns seconds."""
    now = dt.datetime.now(dt.UTC)
    t = time.perf_counter()
    contacts, interests, orders, events = rows(n, now)
    tables = [("contact", CONTACT_COLS, contacts), ("contact_interest", ("contact_id", "interest"), interests),
              ('"order"', ("contact_id", "ordered_at", "amount", "currency", "reference"), orders),
              ("event", ("contact_id", "type", "occurred_at", "data", "machine"), events)]
    bulk_insert(engine, tables)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('contact', 'id'), %s)", (n,))
    print(f"loaded {n:,} contacts, {len(interests):,} interests, {len(orders):,} orders, {len(events):,} opens "
          f"in {time.perf_counter() - t:.1f} s", flush=True)
    return time.perf_counter() - t


def timed(fn, repeat: int) -> tuple[float, object]:
    result = fn()   # warm-up (and the result, to print what was found)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, result


def database(url: str | None, tmp: Path):
    from campaigns.config import Settings
    from campaigns.db import scratch_database
    from campaigns.resources import migrate

    if not url:
        db_url = f"sqlite:///{tmp / 'bench.db'}"
        migrate(Settings(database_url=db_url))
        return db_url, lambda: None
    stack = contextlib.ExitStack()
    db_url = stack.enter_context(scratch_database(url, "rapport_bench"))
    migrate(Settings(database_url=db_url))
    return db_url, stack.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--analyze", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from sqlalchemy import text

    from campaigns.contacts import records as contact_service
    from campaigns.contacts import segments
    from campaigns.db import make_engine, make_session_factory
    from campaigns.models import AdminUser, Segment

    n = args.contacts
    with tempfile.TemporaryDirectory(prefix="rapport-bench-contacts-") as tmpdir:
        tmp = Path(tmpdir)
        db_url, drop = database(args.database_url or None, tmp)
        engine = make_engine(db_url)
        figures: dict[str, float] = {}
        try:
            load_s = load(engine, n)
            if args.analyze:
                with engine.begin() as conn:
                    conn.execute(text("ANALYZE"))
            session = make_session_factory(engine)()
            berlin_roses = {"match": "all", "rules": [
                {"field": "city", "op": "is", "value": "Berlin"}, {"field": "interest", "op": "has", "value": "roses"}]}
            nested = {"match": "all", "rules": [
                {"field": "country", "op": "is", "value": "DE"},
                {"match": "any", "rules": [{"field": "interest", "op": "has", "value": "roses"},
                                           {"field": "lifetime_value", "op": "gte", "value": "200"}]},
                {"field": "opened", "op": "in_last_days", "value": 30}]}
            segment = Segment(name="Berlin roses", definition=berlin_roses)
            session.add(segment)
            session.commit()

            def page(**kw):
                return lambda: contact_service.list_contacts(session, **kw)

            deep = n // 2
            cases = {
                "first_page_newest": page(newest_first=True),
                "first_page_oldest": page(newest_first=False),
                "deep_page_newest (after id n/2)": page(newest_first=True, after=deep),
                "deep_page_oldest (after id n/2)": page(newest_first=False, after=deep),
                "previous_page (before id n/2)": page(newest_first=True, before=deep),
                "last_page_newest (after id 30)": page(newest_first=True, after=30),
                "search_email_prefix 'user4242'": page(query="user4242"),
                "search_email_with_at 'user424242.'": page(query="user424242.", newest_first=True),
                "search_first_name 'anna'": page(query="anna"),
                "search_first_name deep 'anna'": page(query="anna", after=deep),
                "search_last_name 'müller'": page(query="müller"),
                "search_full_name 'anna beck'": page(query="anna beck"),
                "search_no_match 'zzzz'": page(query="zzzz"),
                "segment_page 'Berlin + roses'": page(segment_id=segment.id),
                "segment_deep_page 'Berlin + roses'": page(segment_id=segment.id, after=deep),
                "segment_count 'Berlin + roses'": lambda: segments.count(session, berlin_roses),
                "segment_count nested (DE, roses or LTV>=200, opened 30d)": lambda: segments.count(session, nested),
            }
            for name, fn in cases.items():
                ms, result = timed(fn, args.repeat)
                found = result if isinstance(result, int) else f"{len(result.contacts)} rows"
                figures[name] = round(ms, 1)
                print(f"{name:60s} {ms:8.1f} ms   ({found})", flush=True)

            # The real page through the Flask app (login, query, template), first and deep page.
            from werkzeug.security import generate_password_hash

            from campaigns.config import Settings
            from campaigns.web.app import create_app

            session.add(AdminUser(email="bench@shop.test", name="Bench", role="admin",
                                  password_hash=generate_password_hash("bench-password")))
            session.commit()
            app = create_app({"SETTINGS": Settings(database_url=db_url, instance_path=tmp / "instance",
                                                   secret_key="bench-secret"),
                              "TESTING": True, "WTF_CSRF_ENABLED": False})
            client = app.test_client()
            client.post("/admin/login", data={"email": "bench@shop.test", "password": "bench-password"})
            for name, url in (("http_contacts_first_page", "/admin/contacts"),
                              ("http_contacts_deep_page", f"/admin/contacts?after={deep}"),
                              ("http_contacts_search", "/admin/contacts?q=anna+beck"),
                              ("http_contacts_segment", f"/admin/contacts?segment={segment.id}")):
                def get(url=url):
                    r = client.get(url)
                    assert r.status_code == 200, r.status_code
                    return r.get_data(as_text=True).count('href="/admin/contacts/')
                ms, found = timed(get, args.repeat)
                figures[name] = round(ms, 1)
                print(f"{name:60s} {ms:8.1f} ms   ({found} rows)", flush=True)
            session.close()
        finally:
            dialect = engine.dialect.name
            engine.dispose()
            drop()
    print(json.dumps({"contacts": n, "database": dialect, "analyzed": args.analyze, "load_s": round(load_s, 1),
                      "ms": figures, "max_page_ms": max(v for k, v in figures.items() if "count" not in k)}))


if __name__ == "__main__":
    main()
