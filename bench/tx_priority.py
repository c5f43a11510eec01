"""Transactional priority: how fast POST /api/v1/tx answers (the message's job is on the queue by then), and the
transactional delivery rate alone against the same while a bulk campaign of several thousand is sending.

    .venv/bin/python bench/tx_priority.py [--bulk 5000] [--tx 200] [--workers 2] [--rounds 3]
                                         [--database-url postgresql://…] [--redis-url redis://…]

Everything is real: the Flask app (its test client, in this process) with an API key, the idempotency and rate
limit checks; Redis (embedded unless --redis-url); `worker.py` processes, started once and kept running as in
production; the capture SMTP server (python -m mailer.capture) in its own process, where arrivals are counted.

Phases, interleaved --rounds times (solo, bulk, solo, bulk, …):
  solo  --tx receipts (a PDF attached, variables) posted one after another, to addresses of this phase only;
        nothing else is queued
  bulk  a campaign to --bulk contacts is started; once 200 of its messages have arrived, the same --tx receipts
        are posted; the campaign must still be sending when the last receipt arrives (checked and printed), then
        it is cancelled and the queues drained before the next phase

enqueue latency: each POST's duration (the answer is written after the commit, whose hook puts the job on the
transactional queue). tx rate: receipts / (last receipt's arrival at the capture server − the first POST), the
receipts counted there by recipient. delivery latency: a receipt's arrival − its POST. Reported: each phase's
figures, the medians over rounds, and ratio = the median of the rounds' bulk/solo rate ratios. The last line
printed is one JSON object.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rq.registry import StartedJobRegistry
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


def post_receipts(client, headers: dict, tag: str, n: int) -> tuple[float, list[float], dict[str, float]]:
    """Post n receipts; (time of the first POST, each call's seconds, recipient -> POST time)."""
    latencies, posted = [], {}
    first = time.time()
    for i in range(n):
        to = f"{tag}-{i}@example.com"
        t0 = time.perf_counter()
        at = time.time()
        r = client.post("/api/v1/tx", json=body(to, i), headers={**headers, "Idempotency-Key": f"{tag}-{i}"})
        latencies.append(time.perf_counter() - t0)
        if r.status_code != 202:
            raise SystemExit(f"POST /api/v1/tx answered {r.status_code}: {r.get_data(as_text=True)[:500]}")
        posted[to] = at
    return first, latencies, posted


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


def tx_phase(rt: Runtime, client, headers: dict, outbox: Outbox, tag: str, n: int) -> dict:
    first, latencies, posted = post_receipts(client, headers, tag, n)

    def settled() -> bool:     # the database says every receipt is done; then they are counted where they arrived
        with rt.session_factory() as session:
            return len(session.scalars(select(TxMessage.id).where(TxMessage.email.like(f"{tag}-%"),
                                                                  TxMessage.status.in_(TX_FINAL))).all()) >= n

    wait_until(settled, 300, f"{n} receipts of {tag}")
    got = arrivals(outbox, f"{tag}-")
    if len(got) < n:
        raise SystemExit(f"{tag}: only {len(got)} of {n} receipts arrived at the capture server")
    last = max(got.values())
    delivery = sorted(got[to] - posted[to] for to in posted)
    return {"rate": n / (last - first), "seconds": last - first, "delivered": len(got),
            "enqueue_ms_median": 1000 * statistics.median(latencies),
            "enqueue_ms_p95": 1000 * sorted(latencies)[int(0.95 * (n - 1))],
            "delivery_ms_median": 1000 * statistics.median(delivery),
            "delivery_ms_p95": 1000 * delivery[int(0.95 * (n - 1))]}


def bulk_phase(rt: Runtime, client, headers: dict, outbox: Outbox, topic_id: int, tag: str, n: int,
               bulk: int) -> dict:
    campaign_id = new_campaign(rt, topic_id, f"bulk {tag}")
    before = outbox.count()
    with rt.session_factory() as session:
        lifecycle.start(session, rt, session.get(Campaign, campaign_id))
        session.commit()
    wait_until(lambda: outbox.count() - before >= 200, 300, "the bulk campaign's mail to flow")
    bulk_at_start = outbox.count() - before
    result = tx_phase(rt, client, headers, outbox, tag, n)
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
    p.add_argument("--tx", type=int, default=200, help="transactional messages per phase")
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
        client = app.test_client()
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
        tx_phase(rt, client, headers, outbox, "warmup", 20)
        solo, bulk = [], []
        for r in range(1, args.rounds + 1):
            print(f"round {r}/{args.rounds} solo: {args.tx} receipts, nothing else queued", flush=True)
            solo.append(tx_phase(rt, client, headers, outbox, f"solo{r}", args.tx))
            print("  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in solo[-1].items()}),
                  flush=True)
            print(f"round {r}/{args.rounds} bulk: {args.tx} receipts while {args.bulk:,} campaign mails go out",
                  flush=True)
            bulk.append(bulk_phase(rt, client, headers, outbox, topic_id, f"bulk{r}", args.tx, args.bulk))
            print("  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in bulk[-1].items()}),
                  flush=True)
            outbox.clear()

        def med(runs: list[dict], k: str) -> float:
            return round(statistics.median(x[k] for x in runs), 2)

        figures = {"database": db_url.split(":", 1)[0], "workers": args.workers, "bulk": args.bulk, "tx": args.tx,
                   "rounds": args.rounds,
                   "enqueue_ms_median": med(solo + bulk, "enqueue_ms_median"),
                   "enqueue_ms_median_solo": med(solo, "enqueue_ms_median"),
                   "enqueue_ms_median_bulk": med(bulk, "enqueue_ms_median"),
                   "tx_rate_solo": med(solo, "rate"), "tx_rate_bulk": med(bulk, "rate"),
                   "ratio": round(statistics.median(b["rate"] / s["rate"] for s, b in zip(solo, bulk, strict=True)),
                                  3),
                   "ratios": [round(b["rate"] / s["rate"], 3) for s, b in zip(solo, bulk, strict=True)],
                   "delivery_ms_median_solo": med(solo, "delivery_ms_median"),
                   "delivery_ms_median_bulk": med(bulk, "delivery_ms_median"),
                   "delivery_ms_p95_bulk": med(bulk, "delivery_ms_p95"),
                   "bulk_still_sending": all(b["bulk_still_sending"] for b in bulk),
                   "bulk_sent_during": [b["bulk_sent_during"] for b in bulk]}
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
