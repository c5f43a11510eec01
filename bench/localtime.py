"""Local-time delivery at scale: what dispatch costs with per-zone times, and what the sweeper's "is anything due?"
and the progress poll cost while every row waits for a later zone.

    .venv/bin/python bench/localtime.py [--recipients 200000] [--database-url postgresql://…] [--rounds 3]

Contacts are spread over 12 time zones (and some without one). Each round, interleaved: a campaign dispatched all
at once (`plain`) and one dispatched for 09:00 local time (`local`), timed; then, on the local campaign with every
row waiting, the sweeper's due check as it reads a normal campaign (`scan`: queued rows through the status index,
each checked for next_attempt_at) and as it reads a local-time one (`index`: the partial index
ix_send_local_queued), and a progress poll, each timed REPEAT times (median). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import exists, func, or_, select, text, update
from sqlalchemy.engine import make_url

from bench.dispatch import seed
from bench.send_throughput import make_database, new_campaign
from campaigns.config import Settings
from campaigns.models import Campaign, CampaignStatus, Send, SendStatus, utcnow
from campaigns.resources import migrate
from campaigns.runtime import Runtime, embedded_redis
from campaigns.sending import lifecycle as sending
from campaigns.sending import localtime

ZONES = ["America/New_York", "America/Los_Angeles", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
         "Africa/Lagos", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo", "Australia/Adelaide", "Pacific/Auckland",
         "UTC"]
REPEAT = 15


def spread_zones(rt: Runtime) -> None:
    with rt.session_factory() as session:
        for i, name in enumerate(ZONES):
            session.execute(text("UPDATE contact SET timezone = :z WHERE id % :n = :i"),
                            {"z": name, "n": len(ZONES), "i": i})
        session.commit()


def dispatch(rt: Runtime, topic_id: int, local: bool) -> tuple[int, float]:
    campaign_id = new_campaign(rt, topic_id, "local" if local else "plain")
    with rt.session_factory() as session:
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
            status=CampaignStatus.RUNNING, local_time="09:00" if local else "", local_zone="Europe/Berlin"))
        session.commit()
    rt.queue.empty()
    t0 = time.perf_counter()
    sending.dispatch(rt, campaign_id)
    seconds = time.perf_counter() - t0
    rt.queue.empty()
    return campaign_id, seconds


def timed(rt: Runtime, query) -> float:
    runs = []
    for _ in range(REPEAT):
        with rt.session_factory() as session:
            t0 = time.perf_counter()
            query(session)
            runs.append(time.perf_counter() - t0)
            session.commit()
    return statistics.median(runs) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipients", type=int, default=200_000)
    p.add_argument("--database-url", default="")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rapport-localtime-"))
    stack = contextlib.ExitStack()
    out: dict[str, list[float]] = {k: [] for k in ("plain_s", "local_s", "scan_ms", "index_ms", "progress_ms")}
    try:
        db_url = make_database(args.database_url, work, stack)
        redis_conn = embedded_redis(work)
        settings = Settings(instance_path=work / "instance", database_url=db_url,
                            redis_url=f"unix://{redis_conn.socket_file}", secret_key="bench-" + uuid.uuid4().hex,
                            queue_name="bench-localtime")
        migrate(settings)
        rt = Runtime(settings)
        print(f"seeding {args.recipients:,} contacts into {make_url(db_url).get_backend_name()} …", flush=True)
        topic_id = seed(rt, args.recipients)
        spread_zones(rt)
        for _ in range(args.rounds):
            _plain, plain_s = dispatch(rt, topic_id, local=False)
            local_id, local_s = dispatch(rt, topic_id, local=True)
            now = utcnow()
            with rt.session_factory() as session:
                waiting = session.scalar(select(func.count()).select_from(Send).where(
                    Send.campaign_id == local_id, Send.not_before > now))
            assert waiting == args.recipients, waiting
            due = or_(Send.next_attempt_at.is_(None), Send.next_attempt_at <= now)
            scan = timed(rt, lambda s, cid=local_id, due=due: s.scalar(select(exists().where(
                Send.campaign_id == cid, Send.status == SendStatus.QUEUED, due))))
            index = timed(rt, lambda s, cid=local_id, now=now: s.scalar(select(localtime.due_rows(cid, now))))
            progress = timed(rt, lambda s, cid=local_id: sending.progress(s, cid))
            print(f"  dispatch plain {plain_s:.2f} s, local {local_s:.2f} s; due check scan {scan:.1f} ms, "
                  f"index {index:.2f} ms; progress {progress:.1f} ms", flush=True)
            for k, v in zip(out, (plain_s, local_s, scan, index, progress), strict=True):
                out[k].append(v)
        rt.close()
        redis_conn.flushdb()
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    summary: dict[str, object] = {"recipients": args.recipients, "database": make_url(db_url).get_backend_name()}
    for k, runs in out.items():
        summary[f"{k}_median"] = round(statistics.median(runs), 3)
        summary[f"{k}_runs"] = [round(r, 3) for r in runs]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
