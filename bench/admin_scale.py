"""The admin at 1,000,000 contacts: every page and JSON endpoint timed through the real app, plus the CSV export.

Run: .venv/bin/python bench/admin_scale.py [--contacts N] [--database-url postgresql://postgres@127.0.0.1:5432/x]
     [--data PATH] [--rebuild] [--repeat 5] [--only SUBSTRING] [--live-count-limit N]
(also `make bench-admin`, with BENCH_ARGS).

The data set (issue 16): N contacts (bench/people.py, with interests, custom attributes and about 0.67 orders each),
1.4 subscriptions per contact over three topics, 300 past campaigns, one nurture campaign sent to 90 % of the list
(20 % human opens, 10 % machine opens, 3 % clicks, its policy-ledger rows), one running campaign half sent to the
same audience, a draft marketing campaign with that audience (the forecast), two saved segments and a sender
identity owning 5 % of the contacts; and the feature objects every other admin page shows or lists, at their scale
(bench/admin_features.py: replies, transactional messages, webhook deliveries, draw entries, event answers, …). It
is bulk-loaded (executemany on SQLite, COPY on PostgreSQL) into a file
(--data, default /tmp/rapport-admin-scale-N.db) or the database named by --database-url, and kept: the next run
re-opens it, migrates it to the current schema and times again (--rebuild starts over). PostgreSQL gets
VACUUM ANALYZE after loading.

The pages: the hand-written list in page_plan, then every other GET rule under /admin of the app's url_map with its
parameters filled from rows of the data set (bench/admin_pages.py; rules that are not pages, such as downloads, are
on its commented skip list; a rule it cannot fill is printed and listed as not_timed). Each page is requested through
the Flask app with a logged-in admin client: one warm-up, then --repeat timed requests (server time as seen by the
client, no network); a page that does not answer 200 is printed and listed as failed. Background work the pages ask
for (cached summaries, forecasts) is run by an in-process RQ worker in burst mode after the warm-up, as a worker
would. The CSV export of every contact is timed first, as a job. Prints a table, one JSON line per page ({"page",
"median_ms", "max_ms", and "background_s": the worker's time for what the first view asked for}) and a summary line
with export_seconds, pages, not_timed, failed and slowest.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import admin_features, admin_pages
from bench.contacts_list import CONTACT_COLS, bulk_insert, rows

TOPICS = ("Newsletter", "Garden tips", "Offers")
LINKS = ("https://shop.test/roses", "https://shop.test/tools", "https://shop.test/books", "https://shop.test/sale")
PASSWORD = "bench-password"
MJML = ("<mjml><mj-body><mj-section><mj-column><mj-text>Hello {{ contact.first_name }}</mj-text>"
        + "".join(f'<mj-button href="{u}">Go</mj-button>' for u in LINKS)
        + "<mj-text>{{ postal_address }} <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></mj-text>"
          "</mj-column></mj-section></mj-body></mjml>")


def in_topic(i: int) -> tuple[bool, bool, bool]:
    """Which of the three topics contact i is subscribed to (90 %, 40 %, 10 %: 1.4 per contact)."""
    return i % 10 != 0, i % 5 in (1, 2), i % 10 == 3


def audience(n: int):
    """Contact ids of the sent campaign's audience: the first topic's subscribers."""
    return (i for i in range(1, n + 1) if i % 10 != 0)


def build(engine, n: int) -> float:
    """Load the whole data set into an empty migrated database; returns seconds."""
    t0 = time.perf_counter()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    contacts, interests, orders, opens = rows(n, now)
    print(f"  generated {n:,} contacts in {time.perf_counter() - t0:.1f} s", flush=True)
    sent_at = now - dt.timedelta(days=10)
    running_at = now - dt.timedelta(hours=2)
    big, running, draft = 301, 302, 303
    campaign_cols = ("id", "name", "kind", "subject", "preheader", "from_name", "from_email", "reply_to", "mjml",
                     "text_body", "all_contacts", "status", "status_reason", "content_hash", "created_at",
                     "updated_at", "started_at", "dispatched_at", "finished_at", "recipients", "sent", "failed",
                     "held", "skipped", "relay", "recipients_listed")
    reach = sum(1 for _ in audience(n))
    half = sum(1 for i in audience(n) if i <= n // 2)

    def campaign(cid: int, name: str, kind: str, status: str, started, finished, recipients: int, sent: int):
        created = started or now - dt.timedelta(days=1)
        return (cid, name, kind, f"{name} subject", "", "", "", "", MJML, "", False, status, "", "", created,
                created, started, started, finished, recipients, sent, 0, 0, 0, "", False)

    campaigns = [campaign(i, f"Past newsletter {i}", "nurture", "finished", now - dt.timedelta(days=400 - i),
                          now - dt.timedelta(days=400 - i, hours=-2), 1000, 1000) for i in range(1, 301)]
    campaigns += [campaign(big, "Spring newsletter (big)", "nurture", "finished", sent_at,
                           sent_at + dt.timedelta(hours=3), reach, reach),
                  campaign(running, "Summer newsletter (running)", "nurture", "running", running_at, None, reach,
                           half),
                  campaign(draft, "Autumn offer (draft)", "marketing", "draft", None, None, 0, 0)]
    topic_rows = [(k + 1, name, "", True, now - dt.timedelta(days=1500)) for k, name in enumerate(TOPICS)]
    campaign_topics = [(big, 1), (running, 1), (draft, 1)]
    links = [(k + 1, big, url, k) for k, url in enumerate(LINKS)]
    links += [(len(LINKS) + k + 1, running, url, k) for k, url in enumerate(LINKS)]

    def subscriptions():
        for i in range(1, n + 1):
            for topic, yes in enumerate(in_topic(i), start=1):
                if yes:
                    yield (i, topic, True, now - dt.timedelta(days=30))

    def sends():
        for i in audience(n):     # send id = contact id for the big campaign, n + contact id for the running one
            yield (i, big, i, "sent", 1, sent_at, sent_at, sent_at + dt.timedelta(seconds=i % 10800), "", "")
            if i <= n // 2:
                yield (n + i, running, i, "sent", 1, running_at, running_at, running_at, "", "")
            else:
                yield (n + i, running, i, "queued", 0, running_at, None, None, "", "")

    def ledger():
        for i in audience(n):
            yield (i, i, "nurture", sent_at + dt.timedelta(seconds=i % 10800))
            if i <= n // 2:
                yield (n + i, i, "nurture", running_at)

    def events():
        yield from ((c, None, None, t, o, d, m) for c, t, o, d, m in opens)   # opens outside any campaign
        for i in audience(n):
            at = sent_at + dt.timedelta(seconds=(i * 7) % 600000)
            if i % 5 == 0:
                yield (i, big, i, "open", at, "{}", False)
            elif i % 10 == 1:
                yield (i, big, i, "open", sent_at + dt.timedelta(seconds=i % 120), "{}", True)
            if i % 100 < 3:
                link = i % len(LINKS) + 1
                yield (i, big, i, "click", at + dt.timedelta(minutes=1), json.dumps({"link_id": link}), False)

    bulk_insert(engine, [
        ("contact", CONTACT_COLS, contacts), ("contact_interest", ("contact_id", "interest"), interests),
        ('"order"', ("contact_id", "ordered_at", "amount", "currency", "reference"), orders),
        ("topic", ("id", "name", "description", "public", "created_at"), topic_rows),
        ("campaign", campaign_cols, campaigns), ("campaign_topic", ("campaign_id", "topic_id"), campaign_topics),
        ("link", ("id", "campaign_id", "url", "position"), links),
        ("subscription", ("contact_id", "topic_id", "subscribed", "updated_at"), subscriptions()),
        ("send", ("id", "campaign_id", "contact_id", "status", "attempts", "created_at", "claimed_at", "sent_at",
                  "reason", "last_error"), sends()),
        ("policy_ledger", ("send_id", "contact_id", "kind", "sent_at"), ledger()),
        ("event", ("contact_id", "campaign_id", "send_id", "type", "occurred_at", "data", "machine"), events()),
        ("sender", ("id", "name", "email", "reply_to", "title"),
         [(1, "Mara Klein", "mara@shop.test", None, "Customer care")]),
    ])
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("UPDATE contact SET owner_id = 1 WHERE id % 20 = 7"))
        if engine.dialect.name == "postgresql":
            for table in ("contact", "send", "event", '"order"', "campaign", "topic", "link", "sender"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
    print(f"  loaded {n:,} contacts, {len(interests):,} interests, {len(orders):,} orders, "
          f"{sum(sum(in_topic(i)) for i in range(1, n + 1)):,} subscriptions, {2 * reach:,} sends "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    return time.perf_counter() - t0


def prepare(url: str, n: int, rebuild: bool) -> str:
    """Create or re-open the data set; returns the SQLAlchemy URL (migrated to the current schema)."""
    from sqlalchemy import text

    from campaigns.config import Settings
    from campaigns.db import make_engine
    from campaigns.resources import migrate

    if url.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        target = make_url(url)
        admin = make_engine(target.set(database="postgres").render_as_string(hide_password=False))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database})
            if exists and rebuild:
                conn.execute(text(f'DROP DATABASE "{target.database}" WITH (FORCE)'))
                exists = False
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
        admin.dispose()
    else:
        path = Path(url.removeprefix("sqlite:///"))
        if rebuild:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    migrate(Settings(database_url=url))
    engine = make_engine(url)
    with engine.connect() as conn:
        have = conn.scalar(text("SELECT count(*) FROM contact"))
    if have == 0:
        build(engine, n)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        else:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
    elif have != n:
        sys.exit(f"{url} holds {have:,} contacts, not {n:,}: use --rebuild or another --data/--database-url")
    else:
        print(f"re-using the data set in {url} ({have:,} contacts)", flush=True)
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--data", default="", help="SQLite file to build or re-use")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="", help="time only pages whose name contains this")
    parser.add_argument("--live-count-limit", type=int, default=None,
                        help="RAPPORT_LIVE_COUNT_LIMIT for this run (0: a small data set takes the big list's paths)")
    args = parser.parse_args()
    n = args.contacts
    url = args.database_url or f"sqlite:///{args.data or f'/tmp/rapport-admin-scale-{n}.db'}"
    url = prepare(url, n, args.rebuild)

    from campaigns.config import Settings
    from campaigns.runtime import Runtime, install

    tmp = Path(tempfile.mkdtemp(prefix="rapport-admin-scale-"))
    settings = Settings(database_url=url, instance_path=tmp / "instance", secret_key="bench-secret",
                        redis_url=os.environ.get("BENCH_REDIS_URL", ""), queue_name="rapport-bench-admin",
                        postal_address="Green Thumb, Lindenstraße 1, 10115 Berlin")
    if args.live_count_limit is not None:
        settings = dataclasses.replace(settings, live_count_limit=args.live_count_limit)
    rt = install(Runtime(settings))
    rt.redis.flushdb()
    segment_ids = admin_data(rt, n)
    app, client, work = logged_in(rt)

    export_seconds = export_cpu = export_id = None
    if not args.only or "export" in args.only:      # first: the export's own pages are timed with the others
        cpu, server = time.process_time(), server_cpu(url)
        export_seconds, export_id = time_export(client, work)
        export_cpu = round(time.process_time() - cpu + server_cpu(url) - server, 1)
        shown = "not a job" if export_seconds is None else \
            f"{export_seconds:.1f} s (CPU {export_cpu} s, this process and its PostgreSQL backends)"
        print(f"{'export of every contact (job)':45s} {shown}", flush=True)

    pages, unfilled = page_plan(rt, app, client, work, segment_ids, export_id)
    for line in unfilled:
        print(f"NOT TIMED (no id to fill the rule): {line}", flush=True)
    results, failed = [], []
    for name, method, path, body in pages:
        if args.only and args.only not in name:
            continue

        def call(method=method, path=path, body=body) -> float:
            t = time.perf_counter()
            resp = client.post(path, json=body) if method == "POST" else \
                client.get(path, headers=(body or {}).get("headers"))
            elapsed = (time.perf_counter() - t) * 1000
            if resp.status_code != 200:
                raise PageFailed(f"{path} answered {resp.status_code}")
            return elapsed

        try:
            call()      # warm-up: also asks for any background summary the page needs
        except PageFailed as exc:
            failed.append(f"{name}: {exc}")
            print(f"{name:60s} FAILED: {exc}", flush=True)
            continue
        t = time.perf_counter()
        work()          # ... which a worker computes, as in production (its time is shown apart)
        background = time.perf_counter() - t
        times = [call() for _ in range(args.repeat)]
        results.append({"page": name, "median_ms": round(statistics.median(times), 1),
                        "max_ms": round(max(times), 1), "background_s": round(background, 2)})
        print(f"{name:60s} {results[-1]['median_ms']:9.1f} ms  (max {results[-1]['max_ms']:.1f})"
              f"   worker {background:6.2f} s", flush=True)

    if export_seconds is not None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        print(f"load average now: {load}", flush=True)
    print()
    for row in results:
        print(json.dumps(row))
    slowest = max(results, key=lambda r: r["median_ms"]) if results else None
    print(json.dumps({"contacts": n, "database": rt.engine.dialect.name,
                      "export_seconds": None if export_seconds is None else round(export_seconds, 1),
                      "export_cpu_seconds": export_cpu, "pages": len(results), "not_timed": unfilled,
                      "failed": failed,
                      "slowest": slowest}))
    rt.close()
    if not settings.redis_url:          # the embedded Redis server and the export files go with the temp directory
        with contextlib.suppress(Exception):
            rt.redis.shutdown(nosave=True)
    shutil.rmtree(tmp, ignore_errors=True)


def admin_data(rt, n: int) -> list[int]:
    """The admin user, two saved segments and the feature objects (bench/admin_features.py), unless the data set
    has them; returns the segment ids."""
    from werkzeug.security import generate_password_hash

    from campaigns.models import AdminUser, Segment

    with rt.session_factory() as session:
        if session.query(AdminUser).filter_by(email="bench@shop.test").first() is None:
            session.add(AdminUser(email="bench@shop.test", name="Bench", role="admin",
                                  password_hash=generate_password_hash(PASSWORD)))
            session.add(Segment(name="Regulars who opened lately", definition={"match": "all", "rules": [
                {"field": "attribute", "key": "visits", "op": "gte", "value": "20"},
                {"field": "topic", "op": "subscribed", "value": 2},
                {"field": "opened", "op": "in_last_days", "value": 30}]}))
            session.add(Segment(name="Berlin roses", definition={"match": "all", "rules": [
                {"field": "city", "op": "is", "value": "Berlin"},
                {"field": "interest", "op": "has", "value": "roses"}]}))
            session.commit()
        segment_ids = [s.id for s in session.query(Segment).order_by(Segment.id)]
    if admin_features.seed(rt.engine, rt.session_factory, rt.settings, n,
                           dt.datetime.now(dt.UTC).replace(microsecond=0)):
        print("  added the feature objects (replies, transactional messages, webhooks, draws, events, …)", flush=True)
    return segment_ids


def logged_in(rt):
    """The Flask app on this runtime, a client logged in as the bench admin, and a burst worker for its queue."""
    from rq import SimpleWorker

    from campaigns.web.app import create_app

    app = create_app({"SETTINGS": rt.settings, "TESTING": True, "WTF_CSRF_ENABLED": False})
    app.extensions["rapport"] = rt
    client = app.test_client()
    r = client.post("/admin/login", data={"email": "bench@shop.test", "password": PASSWORD})
    assert r.status_code == 302, r.status_code

    def work() -> None:
        SimpleWorker([rt.queue], connection=rt.redis).work(burst=True, logging_level="WARNING")

    return app, client, work


def page_plan(rt, app, client, work, segment_ids: list[int], export_id: str | None):
    """Every page to time (bench/admin_pages.py): the hand-written ones, then every other GET rule under /admin
    with ids of this data set; returns (pages, the rules that could not be filled)."""
    big, running, draft = 301, 302, 303
    fixed: list[tuple[str, str, str, dict | None]] = [
        ("dashboard", "GET", "/admin/", None),
        ("dashboard.json", "GET", "/admin/dashboard.json", None),
        ("contacts list", "GET", "/admin/contacts", None),
        ("contacts search", "GET", "/admin/contacts?q=anna+beck", None),
        ("contact page", "GET", "/admin/contacts/5", None),
        ("campaign list", "GET", "/admin/campaigns", None),
        ("campaign draft + forecast", "GET", f"/admin/campaigns/{draft}", None),
        ("campaign running", "GET", f"/admin/campaigns/{running}", None),
        ("progress poll", "GET", f"/admin/campaigns/{running}/progress", None),
        ("campaign finished", "GET", f"/admin/campaigns/{big}", None),
        ("report", "GET", f"/admin/campaigns/{big}/report", None),
        ("report.json", "GET", f"/admin/campaigns/{big}/report.json", None),
        ("topics", "GET", "/admin/topics", None),
        ("settings", "GET", "/admin/settings", None),
        ("sender identity", "GET", "/admin/settings/senders/1", None),
        ("segments list", "GET", "/admin/segments", None),
        ("segment editor", "GET", f"/admin/segments/{segment_ids[0]}", None),
        ("segment count (attribute+topic+opened)", "POST", "/admin/segments/count",
         {"definition": {"match": "all", "rules": [
             {"field": "attribute", "key": "visits", "op": "gte", "value": "20"},
             {"field": "topic", "op": "subscribed", "value": 2},
             {"field": "opened", "op": "in_last_days", "value": 30}]}}),
        ("segment count (city+interest)", "POST", "/admin/segments/count",
         {"definition": {"match": "all", "rules": [{"field": "city", "op": "is", "value": "Berlin"},
                                                   {"field": "interest", "op": "has", "value": "roses"}]}}),
        *[(f"saved segment count {sid}", "GET", f"/admin/segments/{sid}/count", None) for sid in segment_ids],
        ("outbox", "GET", "/admin/outbox", None),
    ]
    with rt.session_factory() as session:
        found = admin_features.lookup(session)
    ids = {"finished_campaign": big, "running_campaign": running, "draft_campaign": draft, "sender_id": 1,
           "segment_id": segment_ids[0], "export_id": export_id, **found, **runtime_ids(rt, client, work, draft)}
    return admin_pages.plan(app, ids, fixed)


class PageFailed(Exception):
    """A timed page did not answer 200."""


def server_cpu(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving this data set's database (0 for SQLite).

    The machine is shared: wall-clock time moves with everyone's load, CPU time much less."""
    if not url.startswith("postgresql"):
        return 0.0
    from sqlalchemy.engine import make_url

    name = f" {make_url(url).database} "
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and name in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total


def time_export(client, work) -> tuple[float | None, str | None]:
    """Start a CSV export of every contact as a job, run it; returns its seconds and id (None, None if exports are
    not jobs)."""
    r = client.post("/admin/contacts/exports", data={"status": ""})
    if r.status_code == 404:
        return None, None
    assert r.status_code in (302, 303), r.status_code
    t = time.perf_counter()
    work()
    elapsed = time.perf_counter() - t
    status = client.get(r.headers["Location"] + "/status").get_json()
    assert status["state"] == "finished", status
    return elapsed, r.headers["Location"].rstrip("/").rsplit("/", 1)[1]


def runtime_ids(rt, client, work, draft: int) -> dict[str, str]:
    """Ids of what lives in Redis or files rather than tables: a started import (existing addresses, skipped, so
    the data set keeps its contacts) and one waiting for its mapping, a live preview, a captured message in the
    outbox, a web-version token, and a token of the shop's coupon API."""
    import io
    from email.message import EmailMessage

    from campaigns import queueing, storage
    from campaigns.contacts import imports
    from campaigns.coupons import redemption
    from campaigns.queueing import Job
    from mailer.capture import Outbox
    from mailer.tracking import Purpose

    csv = "email,first_name\n" + "".join(f"{e},x\n" for e in _first_emails(rt, 5))
    store = storage.for_settings(rt.settings)
    upload = imports.save_upload(rt.redis, store, io.BytesIO(csv.encode()), "bench.csv")
    imports.start(rt.redis, store, upload.id, upload.guesses, imports.Mode.SKIP)
    queueing.enqueue(rt.queue, Job.IMPORT_CONTACTS, upload.id)
    work()
    waiting = imports.save_upload(rt.redis, store, io.BytesIO(csv.encode()), "bench.csv")
    with rt.session_factory() as session:
        coupon_token = redemption.create_api_token(session, "bench")
        session.commit()
    r = client.post("/admin/campaigns/preview", data={"mjml": MJML, "subject": "Hello", "kind": "nurture",
                                                      "campaign_id": str(draft)})
    preview = (r.get_json() or {}).get("url") or ""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "mara@shop.test", "user1@example.test", "Hello"
    message.set_content("Hello from the bench")
    key = Outbox(rt.settings.outbox_path).store("mara@shop.test", ["user1@example.test"], message.as_bytes())
    return {"import_id": upload.id, "upload_id": waiting.id, "coupon_api_token": coupon_token,
            "preview_token": preview.rsplit("/", 1)[-1], "outbox_key": key,
            "web_token": rt.tokens.seal(Purpose.WEB, 1)}


def _first_emails(rt, count: int) -> list[str]:
    from sqlalchemy import text

    with rt.engine.connect() as conn:
        return list(conn.scalars(text("SELECT email FROM contact ORDER BY id LIMIT :n"), {"n": count}))


if __name__ == "__main__":
    main()
