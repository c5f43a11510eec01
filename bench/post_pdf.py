"""Post: a print run of N personalised letters, end to end, as the background job does it.

    .venv/bin/python bench/post_pdf.py [--letters 1000] [--layout din5008] [--database-url postgresql://…]

Seeds N subscribed contacts with complete postal addresses (a mix of German, Austrian and US addresses, names with
non-Latin-1 letters), a coupon pool with a code for each, and a draft nurture campaign to all of them; then times
campaigns.post.runs.run: the contact policy for every recipient, coupon codes, the letter records and events, the
PDF (one page per letter with address window, code and QR code), the label sheet and the CSV. SQLite in a temp
file by default. The target is 1,000 letters in at most 60 s. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert
from sqlalchemy.engine import make_url

from campaigns import storage
from campaigns.cli import migrate
from campaigns.config import Settings
from campaigns.coupons.codes import generate_codes
from campaigns.db import scratch_database
from campaigns.models import Campaign, Contact, CouponPool, PostLayout, PostRun
from campaigns.post import runs
from campaigns.runtime import Runtime, embedded_redis

MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Dear {{ contact.first_name }},</mj-text>
<mj-text>thank you for a wonderful season in {{ contact.city }}. The frost is coming: this is the week to bring the
dahlias in, mulch the roses and sow the first broad beans under glass. Our gardeners wrote down what they do in
November, and we printed it for you.</mj-text>
<mj-text>With your code {{ coupon.code }} you get {{ coupon.value }} until {{ coupon.expires }}.</mj-text>
<mj-text>Warm regards from the nursery,<br>{{ sender.name }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
PLACES = (
    {"address_line1": "Lindenstraße {n}", "postal_code": "10115", "city": "Berlin", "country": "DE"},
    {"address_line1": "Mariahilfer Straße {n}", "postal_code": "1060", "city": "Wien", "country": "AT"},
    {"address_line1": "{n} Elm Street", "postal_code": "62701", "city": "Springfield", "region": "IL",
     "country": "US"},
)
NAMES = ("Çağla", "Jürgen", "Zoë", "Oğuz", "Anna", "Émile", "Li", "Bob")


def seed(rt: Runtime, n: int) -> int:
    """Contacts, a coupon pool with n codes and a draft campaign to all of them; returns the campaign id."""
    with rt.session_factory() as s:
        rows = []
        for i in range(n):
            place = PLACES[i % len(PLACES)]
            rows.append({"email": f"reader{i}@example.com", "first_name": NAMES[i % len(NAMES)],
                         "last_name": f"Gärtner {i}", "status": "subscribed", "attributes": {},
                         "frequency": "every", **{k: v.format(n=i % 97 + 1) for k, v in place.items()}})
        for start in range(0, n, 5000):
            s.execute(insert(Contact), rows[start:start + 5000])
        pool = CouponPool(name="Autumn", value_description="15% off bulbs",
                          expires_on=dt.date.today() + dt.timedelta(days=60))
        s.add(pool)
        s.flush()
        generate_codes(s, pool.id, n, prefix="AUT")
        campaign = Campaign(name="Autumn letter", kind="nurture", subject="Before the frost, {{ contact.first_name }}",
                            mjml=MJML, from_name="Anna Becker", all_contacts=True, coupon_pool_id=pool.id)
        s.add(campaign)
        s.commit()
        return campaign.id


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--letters", type=int, default=1000)
    p.add_argument("--layout", default=PostLayout.DIN5008.value, choices=[x.value for x in PostLayout])
    p.add_argument("--database-url", default="")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rapport-post-bench-"))
    stack = contextlib.ExitStack()
    try:
        db_url = (stack.enter_context(scratch_database(args.database_url, "rapport_post_bench"))
                  if args.database_url else f"sqlite:///{work / 'bench.db'}")
        redis_conn = embedded_redis(work)
        settings = Settings(instance_path=work / "instance", database_url=db_url,
                            redis_url=f"unix://{redis_conn.socket_file}", secret_key="bench-" + uuid.uuid4().hex,
                            queue_name="post-bench")
        migrate(settings)
        rt = Runtime(settings)
        campaign_id = seed(rt, args.letters)
        with rt.session_factory() as s:
            run = runs.create_run(s, s.get(Campaign, campaign_id),
                                  {"layout": args.layout, "label_sheet": "L7160",
                                   "return_address": "Green Thumb\nLindenstraße 1\n10115 Berlin"}, created_by="bench")
            s.commit()
            run_id = run.id
        t0 = time.perf_counter()
        runs.run(rt, run_id)
        seconds = time.perf_counter() - t0
        with rt.session_factory() as s:
            run = s.get(PostRun, run_id)
            letters, status, error = run.letters, str(run.status), run.error
        size = 0
        with storage.for_settings(settings).open(runs.file_key(run_id, "letters")) as f:
            size = len(f.read())
        print(f"{letters:,} letters ({args.layout}, {make_url(db_url).get_backend_name()}) in {seconds:.1f} s: "
              f"{status}{' ' + error if error else ''}; PDF {size / 1e6:.1f} MB", flush=True)
        rt.close()
        redis_conn.shutdown()
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"letters": letters, "layout": args.layout, "seconds": round(seconds, 1),
                      "pdf_mb": round(size / 1e6, 1), "status": status}))
    return 0 if status == "done" and seconds <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
