"""Policy forecast: the set-based SQL forecast of a campaign's audience (receive now / held by which rule).

    .venv/bin/python bench/policy_forecast.py [--contacts 100000] [--database-url postgresql://…] [--repeat 5]

Seeds N subscribed contacts with a realistic 37-day history (12 past campaigns, 8 nurture and 4 marketing, each
sent to a random 30–70 % of the contacts: send rows plus their policy ledger rows), a few paused contacts and
weekly/monthly readers, then times policy.forecast for a marketing and a nurture campaign to every contact, and
the release check of held sends (release.release_held over a campaign with every contact held). Each timing is the
median of --repeat runs. SQLite in a temp file by default; --database-url runs on a throw-away PostgreSQL database.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.engine import make_url

from campaigns.config import Settings
from campaigns.db import scratch_database
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    PolicyLedger,
    Send,
    SendStatus,
    utcnow,
)
from campaigns.resources import migrate
from campaigns.runtime import Runtime, embedded_redis
from campaigns.sending import (
    outlook,
    policy,
    release,
)

MJML = "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>"


def seed(rt: Runtime, n: int) -> dict:
    """Contacts, past campaigns with their sends and ledger rows; returns counts."""
    rnd = random.Random(7)
    now = utcnow()
    with rt.session_factory() as s:
        for start in range(0, n, 10_000):
            rows = []
            for i in range(start, min(n, start + 10_000)):
                row = {"email": f"reader{i}@example.com", "first_name": "Reader", "status": "subscribed",
                       "attributes": {}, "frequency": "every", "paused_until": None}
                r = rnd.random()
                if r < 0.02:
                    row["paused_until"] = now + dt.timedelta(days=20)
                elif r < 0.05:
                    row["frequency"] = "weekly"
                elif r < 0.07:
                    row["frequency"] = "monthly"
                rows.append(row)
            s.execute(insert(Contact), rows)
        s.commit()
        ids = list(s.scalars(select(Contact.id).order_by(Contact.id)))
        sends = 0
        for k in range(12):
            kind = "marketing" if k % 3 == 2 else "nurture"
            at = now - dt.timedelta(days=0.3 + 40 * k / 12)     # the newest 7 hours ago, the oldest 37 days
            past = Campaign(name=f"past {k}", kind=kind, subject="s", mjml=MJML, status=CampaignStatus.FINISHED)
            s.add(past)
            s.flush()
            share = rnd.uniform(0.3, 0.7)
            chosen = [i for i in ids if rnd.random() < share]
            for lo in range(0, len(chosen), 20_000):
                part = chosen[lo:lo + 20_000]
                s.execute(insert(Send), [{"campaign_id": past.id, "contact_id": c, "status": SendStatus.SENT,
                                          "attempts": 1, "last_error": "", "sent_at": at} for c in part])
            s.flush()
            s.execute(insert(PolicyLedger).from_select(
                ["send_id", "contact_id", "kind", "sent_at"],
                select(Send.id, Send.contact_id, literal(kind), Send.sent_at).where(Send.campaign_id == past.id)))
            s.commit()
            sends += len(chosen)
        ledger = s.scalar(select(func.count()).select_from(PolicyLedger))
    return {"contacts": n, "sends": sends, "ledger_rows": ledger}


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contacts", type=int, default=100_000)
    p.add_argument("--database-url", default="")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rapport-policy-bench-"))
    stack = contextlib.ExitStack()
    try:
        db_url = (stack.enter_context(scratch_database(args.database_url, "rapport_policy_bench"))
                  if args.database_url else f"sqlite:///{work / 'bench.db'}")
        redis_conn = embedded_redis(work)
        settings = Settings(instance_path=work / "instance", database_url=db_url,
                            redis_url=f"unix://{redis_conn.socket_file}", secret_key="bench-" + uuid.uuid4().hex,
                            queue_name="policy-bench")
        migrate(settings)
        rt = Runtime(settings)
        backend = make_url(db_url).get_backend_name()
        print(f"seeding {args.contacts:,} contacts with history into {backend} …", flush=True)
        t0 = time.perf_counter()
        counts = seed(rt, args.contacts)
        print(f"  {time.perf_counter() - t0:.1f} s: {counts}", flush=True)
        results: dict[str, object] = {"database": backend, **counts}
        with rt.session_factory() as s:
            pol = policy.load(s, settings.policy)
            for kind in ("marketing", "nurture"):
                campaign = Campaign(name=f"bench {kind}", kind=kind, subject="s", mjml=MJML, all_contacts=True)
                s.add(campaign)
                s.commit()
                seconds, fc = timed(lambda c=campaign: outlook.forecast(s, c, pol), args.repeat)
                s.commit()
                print(f"forecast {kind:<9} {seconds:6.3f} s  audience {fc.audience:,}: send {fc.send:,}, "
                      f"held {fc.held}", flush=True)
                results[f"forecast_{kind}_s"] = round(seconds, 3)
                results[f"forecast_{kind}"] = {"send": fc.send, **fc.held}
            # The periodic release check over a running campaign whose every send is held.
            coupon = Campaign(name="held coupon", kind="marketing", subject="s", mjml=MJML, all_contacts=True,
                              status=CampaignStatus.RUNNING, started_at=utcnow(), dispatched_at=utcnow())
            s.add(coupon)
            s.flush()
            s.execute(insert(Send).from_select(
                ["campaign_id", "contact_id", "status", "attempts", "last_error", "reason"],
                select(literal(coupon.id), Contact.id, literal(SendStatus.HELD.value), literal(0), literal(""),
                       literal("ratio"))))
            s.execute(update(Campaign).where(Campaign.id == coupon.id).values(held=args.contacts))
            s.commit()
        # release_held re-queues the eligible ones; they are put back to held (untimed) before the next run.
        times, released = [], 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            released = release.release_held(rt)
            times.append(time.perf_counter() - t0)
            with rt.session_factory() as s2:
                s2.execute(update(Send).where(Send.campaign_id == coupon.id).values(status=SendStatus.HELD))
                s2.execute(update(Campaign).where(Campaign.id == coupon.id).values(held=args.contacts))
                s2.commit()
            rt.redis.delete(f"rq:queue:{settings.queue_name}")
        seconds = statistics.median(times)
        print(f"release_held over {args.contacts:,} held sends {seconds:6.3f} s (re-queued {released:,})", flush=True)
        results["release_held_s"] = round(seconds, 3)
        results["release_held_requeued"] = released
        rt.close()
        redis_conn.shutdown()
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
