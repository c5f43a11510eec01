"""The policy holds under concurrency: four real worker processes send four campaigns to the same contacts at the
same instant, round after round, and no contact ever gets more than the policy allows (PostgreSQL and SQLite)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from rq import Queue, Worker
from sqlalchemy import func, select

from campaigns.composing.editor import save_campaign
from campaigns.models import Campaign, Contact, PolicyLedger, Send, SendStatus, Subscription, Topic, utcnow
from campaigns.runtime import Runtime
from campaigns.sending import lifecycle as sending
from campaigns.sending import policy

ROOT = Path(__file__).resolve().parents[3]
WORKERS = 4
CONTACTS = 48        # per round
SLICE = 8            # contacts per batch job: the four campaigns' jobs for one slice start together
ROUNDS = 6           # alternately marketing (ratio allows one) and nurture (daily cap allows one)
MJML = "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ contact.first_name }}</mj-text></mj-column>" \
       "</mj-section></mj-body></mjml>"


def _seed_round(rt: Runtime, n: int, kind: str, round_no: int) -> tuple[list[int], list[int]]:
    """n new contacts (three nurture mails each in the last days when kind is marketing) and four campaigns."""
    now = utcnow()
    with rt.session_factory() as s:
        topic = Topic(name=f"round {round_no}")
        s.add(topic)
        s.flush()
        contacts = [Contact(email=f"r{round_no}-{i}@example.com", first_name=f"R{i}") for i in range(n)]
        s.add_all(contacts)
        s.flush()
        s.add_all([Subscription(contact_id=c.id, topic_id=topic.id) for c in contacts])
        for age in (2, 5, 9) if kind == "marketing" else ():
            past = Campaign(name="past nurture", kind="nurture", subject="s", mjml=MJML, status="finished")
            s.add(past)
            s.flush()
            sends = [Send(campaign_id=past.id, contact_id=c.id, status=SendStatus.SENT,
                          sent_at=now - dt.timedelta(days=age)) for c in contacts]
            s.add_all(sends)
            s.flush()
            s.add_all([PolicyLedger(send_id=x.id, contact_id=x.contact_id, kind="nurture", sent_at=x.sent_at)
                       for x in sends])
        campaigns = [save_campaign(s, {"name": f"race {round_no}.{k}", "kind": kind, "subject": "Hi",
                                       "mjml": MJML}, topic_ids=[topic.id]) for k in range(WORKERS)]
        s.commit()
        return [c.id for c in contacts], [c.id for c in campaigns]


def _wait(predicate, timeout: float, procs) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, dead[0].stderr.read()[-3000:] if dead[0].stderr else "a worker died"
        assert time.monotonic() < deadline, "timed out waiting for the workers"
        time.sleep(0.05)


@pytest.fixture()
def workers(runtime, outbox):
    """Four long-running worker.py processes on the test's database, queue and SMTP server."""
    s = runtime.settings
    env = dict(os.environ, DATABASE_URL=s.database_url, REDIS_URL=s.redis_url, SMTP_URL=s.smtp_urls[0],
               SECRET_KEY=s.secret_key, BASE_URL=s.base_url, DKIM_DOMAIN=s.dkim_domain,
               DKIM_SELECTOR=s.dkim_selector, DKIM_PRIVATE_KEY_PATH=str(s.dkim_private_key_path),
               RAPPORT_QUEUE=s.queue_name, RAPPORT_INSTANCE=str(s.instance_path))
    logs = [open(s.instance_path.parent / f"worker-{i}.log", "w+b") for i in range(WORKERS)]
    # No scheduler: the test releases every batch job itself, and the delivery sweeper would otherwise start
    # campaign-wide jobs for the staged campaigns first, so the four campaigns would rarely race for a contact.
    procs = [subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--name", f"race-{os.getpid()}-{i}",
                               "--no-scheduler"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=logs[i])
             for i in range(WORKERS)]
    try:
        queue = Queue(s.queue_name, connection=runtime.redis)
        _wait(lambda: Worker.count(queue=queue) >= WORKERS, 120, procs)
        yield procs
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def test_four_workers_never_let_two_campaigns_pass_for_one_contact(runtime, db_session, workers, outbox) -> None:
    with runtime.session_factory() as s:
        policy.save(s, {"enabled": "1", "window_days": "30", "ratio_marketing": "1", "ratio_nurture": "3",
                        "min_nurture_before_marketing": "3", "marketing_per_week": "4", "messages_per_day": "1",
                        "hold_days": "14"})
        s.commit()
    # Dispatch (send rows) goes through a side queue, so that the real batch jobs can be released all at once.
    staging = Runtime(runtime.settings.with_overrides({"queue_name": runtime.settings.queue_name + "-staging"}))
    staging.use_redis(runtime.redis)
    queue = runtime.queue
    overlapping = 0
    sent_total = 0
    for round_no in range(ROUNDS):
        kind = "marketing" if round_no % 2 == 0 else "nurture"
        contact_ids, campaign_ids = _seed_round(runtime, CONTACTS, kind, round_no)
        with staging.session_factory() as s:
            for cid in campaign_ids:
                sending.start(s, staging, s.get(Campaign, cid))
                s.commit()
                sending.dispatch(staging, cid)
        staging.queue.empty()
        # For each slice of contacts, the four campaigns' batch jobs are adjacent in the queue: four idle workers
        # take them at the same moment and decide for the same contacts at the same instant.
        jobs = []
        for lo in range(0, CONTACTS, SLICE):
            for cid in campaign_ids:
                jobs.append(Queue.prepare_data("campaigns.tasks.send_batch",
                                               (cid, contact_ids[lo], contact_ids[min(lo + SLICE, CONTACTS) - 1]),
                                               timeout=600))
        queue.enqueue_many(jobs)

        def settled(campaign_ids: list[int] = campaign_ids) -> bool:
            with runtime.session_factory() as s:
                return not s.scalar(select(func.count()).select_from(Send).where(
                    Send.campaign_id.in_(campaign_ids), Send.status.in_([SendStatus.QUEUED, SendStatus.SENDING])))

        _wait(settled, 120, workers)
        rows = fresh_rows(db_session, campaign_ids)
        by_contact: dict[int, Counter] = {}
        claimed: dict[int, list[dt.datetime]] = {}
        for contact_id, status, reason, claimed_at in rows:
            by_contact.setdefault(contact_id, Counter())[(status, reason)] += 1
            claimed.setdefault(contact_id, []).append(claimed_at)
        expected_hold = "ratio" if kind == "marketing" else "daily-total"
        assert len(by_contact) == CONTACTS
        for contact_id, outcome in by_contact.items():
            assert outcome == Counter({("sent", ""): 1, ("held", expected_hold): WORKERS - 1}), (round_no, contact_id)
        ledger = Counter(db_session.scalars(select(PolicyLedger.contact_id).where(
            PolicyLedger.contact_id.in_(contact_ids), PolicyLedger.kind == kind)))
        assert set(ledger.values()) == {1}
        overlapping += sum(1 for times in claimed.values() if max(times) - min(times) < dt.timedelta(seconds=0.5))
        sent_total += CONTACTS
    # Every message the database calls sent reached the SMTP server exactly once.
    assert outbox.count() == sent_total
    # And the race really was run: for many contacts the campaigns were claimed within the same half second.
    assert overlapping >= CONTACTS, overlapping


def fresh_rows(session, campaign_ids: list[int]) -> list:
    session.rollback()
    session.expire_all()
    return session.execute(select(Send.contact_id, Send.status, Send.reason, Send.claimed_at)
                           .where(Send.campaign_id.in_(campaign_ids))).all()
