"""Transactional priority: how fast POST /api/v1/tx answers (the message's job is on the queue by then), and the
transactional delivery rate alone against the same while a bulk campaign of several thousand is sending.

    .venv/bin/python bench/tx_priority.py [--bulk 5000] [--tx 300] [--posters 4] [--latency 200] [--workers 2]
                                         [--rounds 3] [--database-url postgresql://…] [--redis-url redis://…]

Everything is real: the Flask app (test clients, in this process) with an API key, rate limit and Idempotency-Key;
Redis (embedded unless --redis-url); `worker.py` processes, started once and kept running as in production; the
capture SMTP server (python -m mailer.capture) in its own process, where arrivals are counted by recipient.
Every receipt has variables and a 20 KB PDF attached; each phase mails addresses of its own (new contacts).

Each round, interleaved --rounds times:
  enqueue  --latency receipts posted one after another while the workers deliver them, then as many with the
           workers suspended (`api_alone`: the API, its database and Redis only; the jobs are delivered after):
           each call's wall time (the answer is written after the commit, whose hook has put the job on the
           transactional queue) and the CPU time this process spent on it (which a busy machine inflates less)
  solo     --tx receipts posted at once by --posters threads, faster than the workers deliver; nothing else
           queued. rate = receipts / (last arrival at the capture server − first POST)
  bulk     a campaign to --bulk contacts is started; once 200 of its messages have arrived, the same burst; the
           campaign must still be sending when the last receipt arrives (checked, printed), then it is cancelled
           and the queues drained
Reported: each phase's figures, medians over rounds, and ratio = the median of the rounds' bulk/solo rate ratios.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rq.registry import StartedJobRegistry
from rq.suspension import resume, suspend
from sqlalchemy import select

from bench.send_throughput import free_port, make_database, new_campaign, seed_contacts, set_policy
from campaigns.accounts import api_keys
from campaigns.composing.editor import save_campaign
from campaigns.config import Settings
from campaigns.models import TX_FINAL, Campaign, CampaignStatus, TxMessage
from campaigns.resources import migrate
from campaigns.runtime import Runtime, embedded_redis
from campaigns.sending import lifecycle
from mailer.capture.entries import arrival_time
from mailer.capture.outbox import Outbox
from mailer.dkim import generate_private_key_pem

RECEIPT = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Thank you, {{ contact.first_name|default('friend', true) }}! Order {{ order_number }}:
{% for item in items %}{{ item.name }} × {{ item.qty }}; {% endfor %}total {{ total }}.</mj-text>
<mj-button href="https://shop.example.com/orders/track">Track your parcel</mj-button>
</mj-column></mj-section></mj-body></mjml>"""
PDF = base64.b64encode(b"%PDF-1.4\n" + os.urandom(20_000) + b"\n%%EOF\n").decode()


def body(to: str, i: int) -> dict:
    return {"template": "order-receipt", "to": to, "to_name": "Ada Lovelace",
            "variables": {"order_number": f"A-{i}", "total": "€ 42.00",
                          "items": [{"name": "Seed tray", "qty": 2}, {"name": "Trowel", "qty": 1}]},
            "attachments": [{"filename": f"invoice-{i}.pdf", "content_type": "application/pdf", "content": PDF}]}


def post_one(client, headers: dict, to: str, i: int, tag: str) -> None:
    r = client.post("/api/v1/tx", json=body(to, i), headers={**headers, "Idempotency-Key": f"{tag}-{i}"})
    if r.status_code != 202:
        raise SystemExit(f"POST /api/v1/tx answered {r.status_code}: {r.get_data(as_text=True)[:500]}")


def enqueue_latency(rt: Runtime, app, headers: dict, tag: str, n: int) -> dict:
    """n receipts posted one after another, twice: with the workers delivering them meanwhile, and with the workers
    suspended (the API path alone: the jobs wait on the queue, delivered after); each call's wall and CPU time."""
    client = app.test_client()
    out = {}
    for mode in ("delivering", "api_alone"):
        if mode == "api_alone":
            suspend(rt.redis)
        wall, cpu = [], []
        try:
            for i in range(n):
                t0, c0 = time.perf_counter(), time.process_time()
                post_one(client, headers, f"{tag}{mode[0]}-{i}@example.com", i, f"{tag}{mode[0]}")
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        finally:
            resume(rt.redis)
        wait_until(lambda: idle(rt), 300, "the workers to deliver them")
        suffix = "" if mode == "delivering" else "_api_alone"
        out.update({f"enqueue_ms_median{suffix}": 1000 * statistics.median(wall),
                    f"enqueue_ms_p95{suffix}": 1000 * sorted(wall)[int(0.95 * (n - 1))],
                    f"enqueue_cpu_ms_median{suffix}": 1000 * statistics.median(cpu)})
    return out


def burst(rt: Runtime, app, headers: dict, outbox: Outbox, tag: str, n: int, posters: int) -> dict:
    """n receipts posted by `posters` threads as fast as they go (faster than the workers deliver, so the rate is
    the delivery path's); rate = n / (last arrival − first POST), counted at the capture server."""
    posted: dict[str, float] = {}

    def post(k: int) -> None:
        client = app.test_client()
        for i in range(k, n, posters):
            to = f"{tag}-{i}@example.com"
            posted[to] = time.time()
            post_one(client, headers, to, i, tag)

    first = time.time()
    with ThreadPoolExecutor(posters) as pool:
        list(pool.map(post, range(posters)))
    posting = time.time() - first

    def settled() -> bool:     # the database says every receipt is done; then they are counted where they arrived
        with rt.session_factory() as session:
            return len(session.scalars(select(TxMessage.id).where(TxMessage.email.like(f"{tag}-%"),
                                                                  TxMessage.status.in_(TX_FINAL))).all()) >= n

    wait_until(settled, 600, f"{n} receipts of {tag}")
    got = arrivals(outbox, f"{tag}-")
    if len(got) < n:
        raise SystemExit(f"{tag}: only {len(got)} of {n} receipts arrived at the capture server")
    last = max(got.values())
    delivery = sorted(got[to] - posted[to] for to in posted)
    return {"rate": n / (last - first), "seconds": last - first, "posting_s": posting, "delivered": len(got),
            "delivery_ms_median": 1000 * statistics.median(delivery),
            "delivery_ms_p95": 1000 * delivery[int(0.95 * (n - 1))]}


def arrivals(outbox: Outbox, prefix: str) -> dict[str, float]:
    """recipient -> arrival time (epoch seconds) of the captured messages to addresses starting with prefix."""
    out = {}
    for entry in outbox.list(limit=10**6):
        for r in entry.recipients:
            if r.startswith(prefix):
                out[r] = arrival_time(entry.key).timestamp()
    return out


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def idle(rt: Runtime) -> bool:
    return all(q.count == 0 and StartedJobRegistry(queue=q).count == 0 for q in rt.queues)


def bulk_phase(rt: Runtime, app, headers: dict, outbox: Outbox, topic_id: int, tag: str, n: int, posters: int,
               bulk: int) -> dict:
    campaign_id = new_campaign(rt, topic_id, f"bulk {tag}")
    before = outbox.count()
    with rt.session_factory() as session:
        lifecycle.start(session, rt, session.get(Campaign, campaign_id))
        session.commit()
    wait_until(lambda: outbox.count() - before >= 200, 300, "the bulk campaign's mail to flow")
    bulk_at_start = outbox.count() - before
    result = burst(rt, app, headers, outbox, tag, n, posters)
    bulk_at_end = outbox.count() - before - n
    with rt.session_factory() as session:
        campaign = session.get(Campaign, campaign_id)
        still = campaign.status == CampaignStatus.RUNNING
        if still:
            lifecycle.cancel(session, campaign)
            session.commit()
    wait_until(lambda: idle(rt), 300, "the workers to finish the cancelled campaign's jobs")
    result.update(bulk_sent_before=bulk_at_start, bulk_sent_during=bulk_at_end - bulk_at_start,
                  bulk_still_sending=still and bulk_at_end < bulk)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bulk", type=int, default=5000, help="recipients of the bulk campaign")
    p.add_argument("--tx", type=int, default=300, help="transactional messages per solo or bulk phase")
    p.add_argument("--posters", type=int, default=4, help="threads posting them")
    p.add_argument("--latency", type=int, default=200, help="receipts posted one by one for the enqueue latency")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    p.add_argument("--redis-url", default="")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rapport-tx-bench-"))
    stack = contextlib.ExitStack()
    procs: list[subprocess.Popen] = []
    try:
        db_url = make_database(args.database_url, work, stack)
        port = free_port()
        outbox_dir = work / "outbox"
        procs.append(subprocess.Popen([sys.executable, "-m", "mailer.capture", "--port", str(port), "--outbox",
                                       str(outbox_dir)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        key = work / "dkim.pem"
        key.write_bytes(generate_private_key_pem("rsa", 2048))
        redis_url = args.redis_url or f"unix://{embedded_redis(work).socket_file}"
        settings = Settings(instance_path=work / "instance", database_url=db_url, redis_url=redis_url,
                            smtp_urls=(f"smtp://127.0.0.1:{port}",), secret_key="bench-" + uuid.uuid4().hex,
                            base_url="https://mail.bench.test", dkim_domain="bench.test", dkim_selector="bench",
                            dkim_private_key_path=key, sender_email="news@bench.test", queue_name="bench",
                            postal_address="Green Thumb, Lindenstraße 1, 10115 Berlin")
        migrate(settings)
        rt = Runtime(settings)
        rt.redis.flushdb()
        print(f"seeding {args.bulk:,} contacts …", flush=True)
        topic_id = seed_contacts(rt, args.bulk)
        set_policy(rt, False)      # the bulk campaign mails the same contacts every round
        with rt.session_factory() as session:
            save_campaign(session, {"name": "Order receipt", "kind": "transactional", "slug": "order-receipt",
                                    "subject": "Your order {{ order_number }}", "mjml": RECEIPT})
            secret = api_keys.create_key(session, "bench shop", ["send:transactional"], rate_limit=100_000).secret
            session.commit()
        from campaigns.web.app import create_app

        app = create_app({"SETTINGS": settings, "TESTING": True})
        app.extensions["rapport"] = rt
        headers = {"Authorization": f"Bearer {secret}"}
        env = dict(os.environ, DATABASE_URL=db_url, REDIS_URL=redis_url, SMTP_URL=settings.smtp_urls[0],
                   SECRET_KEY=settings.secret_key, BASE_URL=settings.base_url, DKIM_DOMAIN="bench.test",
                   DKIM_SELECTOR="bench", DKIM_PRIVATE_KEY_PATH=str(key), RAPPORT_QUEUE="bench",
                   RAPPORT_INSTANCE=str(settings.instance_path), POSTAL_ADDRESS=settings.postal_address,
                   SENDER_EMAIL="news@bench.test", RAPPORT_ALLOW_INSECURE="1")
        settings.instance_path.mkdir(parents=True, exist_ok=True)
        for i in range(args.workers):
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--name", f"tx-bench-{i}",
                                           "--no-scheduler"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                          stderr=open(settings.instance_path / f"worker-{i}.log", "wb")))
        outbox = Outbox(outbox_dir)
        # Warm-up (imports, connections, the compiled template) outside the figures.
        burst(rt, app, headers, outbox, "warmup", 20, args.posters)
        latency, solo, bulk = [], [], []

        def show(figures: dict) -> None:
            print("  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}),
                  flush=True)

        for r in range(1, args.rounds + 1):
            print(f"round {r}/{args.rounds} enqueue: {args.latency} receipts posted one by one", flush=True)
            latency.append(enqueue_latency(rt, app, headers, f"lat{r}", args.latency))
            show(latency[-1])
            print(f"round {r}/{args.rounds} solo: {args.tx} receipts at once, nothing else queued", flush=True)
            solo.append(burst(rt, app, headers, outbox, f"solo{r}", args.tx, args.posters))
            show(solo[-1])
            print(f"round {r}/{args.rounds} bulk: {args.tx} receipts at once while {args.bulk:,} campaign mails go "
                  "out", flush=True)
            bulk.append(bulk_phase(rt, app, headers, outbox, topic_id, f"bulk{r}", args.tx, args.posters, args.bulk))
            show(bulk[-1])
            outbox.clear()

        def med(runs: list[dict], k: str) -> float:
            return round(statistics.median(x[k] for x in runs), 2)

        figures = {"database": db_url.split(":", 1)[0], "workers": args.workers, "bulk": args.bulk, "tx": args.tx,
                   "posters": args.posters, "rounds": args.rounds,
                   "enqueue_ms_median": med(latency, "enqueue_ms_median"),
                   "enqueue_ms_p95": med(latency, "enqueue_ms_p95"),
                   "enqueue_cpu_ms_median": med(latency, "enqueue_cpu_ms_median"),
                   "enqueue_ms_median_api_alone": med(latency, "enqueue_ms_median_api_alone"),
                   "enqueue_ms_p95_api_alone": med(latency, "enqueue_ms_p95_api_alone"),
                   "enqueue_cpu_ms_median_api_alone": med(latency, "enqueue_cpu_ms_median_api_alone"),
                   "tx_rate_solo": med(solo, "rate"), "tx_rate_bulk": med(bulk, "rate"),
                   "ratio": round(statistics.median(b["rate"] / s["rate"] for s, b in zip(solo, bulk, strict=True)),
                                  3),
                   "ratios": [round(b["rate"] / s["rate"], 3) for s, b in zip(solo, bulk, strict=True)],
                   "delivery_ms_median_solo": med(solo, "delivery_ms_median"),
                   "delivery_ms_median_bulk": med(bulk, "delivery_ms_median"),
                   "bulk_still_sending": all(b["bulk_still_sending"] for b in bulk),
                   "bulk_sent_during": [b["bulk_sent_during"] for b in bulk],
                   "load_average": [round(x, 1) for x in os.getloadavg()]}
        print(json.dumps(figures), flush=True)
        return 0
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        stack.close()
        with contextlib.suppress(Exception):
            rt.close()


if __name__ == "__main__":
    sys.exit(main())
