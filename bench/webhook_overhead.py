"""Outgoing webhooks: what the outbox costs the hot paths it touches.

    .venv/bin/python bench/webhook_overhead.py [--batches 15] [--batch 1000] [--database-url postgresql://…]

Two paths, each timed per batch in three modes, interleaved batch by batch (a shared machine's noise hits all modes
alike), medians reported:

- **drain**: `engagement.record_hits` + commit of a batch of human opens and clicks (the `drain_hits` job);
- **contacts**: changing the name of a batch of ORM-loaded contacts + commit (every admin/API/sign-up write goes
  through the session listener).

Modes: `baseline` — the webhook hooks taken out (the tracking hook replaced by a no-op, the contact listener
removed), i.e. the code before outgoing webhooks; `unsubscribed` — the code as shipped with no endpoint wanting
these events (the common case: one cached lookup); `subscribed` — an endpoint wants them, so every hit and change
writes an outbox row. SQLite in a temp file by default. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
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

from sqlalchemy import event, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from campaigns import webhook_events
from campaigns.config import Settings
from campaigns.db import scratch_database
from campaigns.feedback import engagement
from campaigns.feedback import webhooks as feedback_webhooks
from campaigns.feedback.hits import Hit, HitKind
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    Link,
    Send,
    SendStatus,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from campaigns.resources import migrate
from campaigns.runtime import Runtime, embedded_redis

MJML = "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>"
AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko)"
MODES = ("baseline", "unsubscribed", "subscribed")


def seed(rt: Runtime, n: int) -> tuple[list[int], int]:
    """n contacts, a finished campaign with one link, a send to each (delivered two hours ago)."""
    now = utcnow()
    with rt.session_factory() as s:
        s.execute(insert(Contact), [{"email": f"c{i}@bench.test", "first_name": "C", "status": "subscribed"}
                                    for i in range(n)])
        campaign = Campaign(name="bench", kind="nurture", subject="s", mjml=MJML, status=CampaignStatus.FINISHED)
        s.add(campaign)
        s.flush()
        link = Link(campaign_id=campaign.id, url="https://shop.test/guide", position=0)
        s.add(link)
        ids = list(s.scalars(select(Contact.id).order_by(Contact.id)))
        s.execute(insert(Send), [{"campaign_id": campaign.id, "contact_id": c, "status": SendStatus.SENT,
                                  "sent_at": now - dt.timedelta(hours=2)} for c in ids])
        s.commit()
        sends = list(s.scalars(select(Send.id).order_by(Send.id)))
        return sends, link.id


def set_mode(rt: Runtime, mode: str, endpoint_id: int) -> None:
    with rt.session_factory() as s:
        s.get(WebhookEndpoint, endpoint_id).enabled = mode == "subscribed"
        s.commit()
    webhook_events.invalidate()
    hooked = event.contains(Session, "after_flush", webhook_events._contacts)
    if mode == "baseline":
        feedback_webhooks.opens_and_clicks = lambda session, events: None
        if hooked:
            event.remove(Session, "after_flush", webhook_events._contacts)
    else:
        feedback_webhooks.opens_and_clicks = ORIGINAL
        if not hooked:
            event.listen(Session, "after_flush", webhook_events._contacts)


ORIGINAL = feedback_webhooks.opens_and_clicks


def drain_batch(rt: Runtime, sends: list[int], link_id: int, batch: int, tag: str) -> float:
    at = time.time()
    hits = []
    for i, send_id in enumerate(sends[:batch // 2]):
        hits.append(Hit(HitKind.OPEN, send_id, 0, at, AGENT, "203.0.113.9", key=f"o{tag}{i}"))
        hits.append(Hit(HitKind.CLICK, send_id, link_id, at + 1, AGENT, "203.0.113.9", key=f"c{tag}{i}"))
    t0 = time.perf_counter()
    with rt.session_factory() as s:
        engagement.record_hits(s, hits)
        s.commit()
    return time.perf_counter() - t0


def contacts_batch(rt: Runtime, ids: list[int], tag: str) -> float:
    t0 = time.perf_counter()
    with rt.session_factory() as s:
        for contact in s.scalars(select(Contact).where(Contact.id.in_(ids))):
            contact.first_name = f"N{tag}"
        s.commit()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--database-url", default="")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rapport-webhook-bench-"))
    stack = contextlib.ExitStack()
    try:
        db_url = (stack.enter_context(scratch_database(args.database_url, "rapport_webhook_bench"))
                  if args.database_url else f"sqlite:///{work / 'bench.db'}")
        redis_conn = embedded_redis(work)
        settings = Settings(instance_path=work / "instance", database_url=db_url,
                            redis_url=f"unix://{redis_conn.socket_file}", secret_key="bench-" + uuid.uuid4().hex,
                            queue_name="webhook-bench")
        migrate(settings)
        rt = Runtime(settings)
        sends, link_id = seed(rt, args.batch)
        with rt.session_factory() as s:
            contact_ids = list(s.scalars(select(Contact.id).order_by(Contact.id)))
            hook = WebhookEndpoint(url="https://crm.example/hook", secret="whsec_AA==", enabled=False,
                                   event_types=["email.opened", "email.clicked", "contact.updated"],
                                   consecutive_failures=0, disabled_reason="")
            s.add(hook)
            s.commit()
            endpoint_id = hook.id
        times: dict[str, dict[str, list[float]]] = {"drain": {m: [] for m in MODES},
                                                    "contacts": {m: [] for m in MODES}}
        for b in range(args.batches):
            for mode in MODES:
                set_mode(rt, mode, endpoint_id)
                times["drain"][mode].append(drain_batch(rt, sends, link_id, args.batch, f"{b}{mode}"))
                times["contacts"][mode].append(contacts_batch(rt, contact_ids, f"{b}{mode}"))
        set_mode(rt, "unsubscribed", endpoint_id)
        with rt.session_factory() as s:
            outbox_rows = s.scalar(select(func.count()).select_from(WebhookEvent))
        backend = make_url(db_url).get_backend_name()
        result: dict[str, object] = {"database": backend, "batch": args.batch, "batches": args.batches,
                                     "outbox_rows_written": outbox_rows}
        print(f"{backend}, {args.batches} interleaved batches of {args.batch} (medians, ms per batch)")
        print(f"{'path':<10}" + "".join(f"{m:>14}" for m in MODES))
        for path, by_mode in times.items():
            medians = {m: statistics.median(v) * 1000 for m, v in by_mode.items()}
            print(f"{path:<10}" + "".join(f"{medians[m]:>14.1f}" for m in MODES))
            for m in MODES:
                result[f"{path}_{m}_ms"] = round(medians[m], 1)
        print(json.dumps(result))
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
