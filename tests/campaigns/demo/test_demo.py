"""`python -m campaigns demo` (what `make demo` runs): everything starts, a campaign reaches the Outbox, Ctrl-C
stops every process, and a second start reuses the data."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_demo(instance: Path, port: int, smtp_port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "BASE_URL")}
    env.update(RAPPORT_INSTANCE=str(instance), SMTP_CAPTURE_PORT=str(smtp_port), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "campaigns", "demo", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    out = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        out.append(line)
        if "Press Ctrl-C to stop" in line:
            break
        if not line and proc.poll() is not None:
            pytest.fail("demo exited early:\n" + "".join(out))
    proc.banner = "".join(out)  # type: ignore[attr-defined]
    # The banner comes once the server answers: the first request after it succeeds, no retrying.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login", timeout=10) as r:
        assert r.status == 200
    return proc


def stop_demo(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as r:
            return r.read().decode()

    def post(self, path: str, data: dict, csrf_from: str) -> str:
        token = re.search(r'name="csrf_token" value="([^"]+)"', self.get(csrf_from)).group(1)
        body = urllib.parse.urlencode({**data, "csrf_token": token}).encode()
        with self.opener.open(self.base + path, data=body, timeout=30) as r:
            return r.read().decode()


def test_demo_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    port, smtp_port = free_port(), free_port()
    proc = start_demo(instance, port, smtp_port)
    try:
        assert f"http://127.0.0.1:{port}/admin" in proc.banner and "demo@rapport.test" in proc.banner
        assert (instance / "secret_key").exists() and (instance / "dkim" / "rapport.private.pem").exists()
        web = Browser(f"http://127.0.0.1:{port}")
        web.post("/admin/login", {"email": "demo@rapport.test", "password": "rapport-demo"}, "/admin/login")
        # Nothing of the newsletter before Send (the Outbox may already hold the demo replies' forwards to their
        # owner, which the demo's worker sends on its own: docs/replies.md).
        assert "what to sow this month" not in web.get("/admin/outbox?q=what+to+sow")
        contacts = web.get("/admin/contacts")
        assert contacts.count("@example.") >= 50
        campaigns = web.get("/admin/campaigns")
        assert "March newsletter" in campaigns and "Autumn thank-you coupon" in campaigns
        campaign_url = re.search(r'href="(/admin/campaigns/\d+)">March newsletter', campaigns).group(1)
        web.post(campaign_url + "/send", {}, campaign_url)
        deadline = time.monotonic() + 60
        progress: dict = {}
        while time.monotonic() < deadline:
            progress = json.loads(web.get(campaign_url + "/progress"))
            if _sent_to_everyone_it_may_reach(progress):
                break
            time.sleep(0.25)
        assert _sent_to_everyone_it_may_reach(progress), progress
        outbox = web.get("/admin/outbox?q=what+to+sow")
        assert "what to sow this month" in outbox
        key = re.search(r'href="/admin/outbox/([^"]+)"', outbox).group(1)
        message = web.get(f"/admin/outbox/{key}")
        assert "DKIM-Signature" in message and "List-Unsubscribe-Post" in message
        # The demo's mail and pages name the demo's shop, not the product's placeholder business.
        assert "Green Thumb" in message and "Rapport Demo Shop" not in message
        assert "Rapport Demo Shop" not in web.get("/admin/settings")
    finally:
        code = stop_demo(proc)
    assert code == 0
    assert not port_open(port) and not port_open(smtp_port)

    # Running it again reuses the data (no second seed, same key).
    proc = start_demo(instance, port, smtp_port)
    try:
        assert "Reusing existing data" in proc.banner
    finally:
        assert stop_demo(proc) == 0


def _sent_to_everyone_it_may_reach(progress: dict) -> bool:
    """Finished — or everyone it may reach has it and the rest is held by the contact policy: on a day when a
    demo contact has a birthday, the demo's birthday automation greets them at 09:00 Berlin time and the policy's
    one-mail-a-day rule then holds the newsletter for them (the campaign page says so and finishes later)."""
    if progress.get("status") == "finished":
        return progress["failed"] == 0
    return (progress.get("status") == "running" and progress["remaining"] == 0 and progress["retrying"] == 0
            and progress["failed"] == progress["unknown"] == 0 and progress["held"] > 0
            and progress["sent"] + progress["held"] == progress["recipients"]
            and "held by the contact policy" in progress["waiting"])


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of a process's children, from /proc."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except FileNotFoundError:
                continue
            out.append((int(child), cmd))
    return out


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads children from /proc")
def test_demo_restarts_a_worker_that_dies(tmp_path: Path) -> None:
    port, smtp_port = free_port(), free_port()
    proc = start_demo(tmp_path / "instance", port, smtp_port)
    try:
        [(old, _)] = [c for c in _children(proc.pid) if "-m worker" in c[1]]
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = [pid for pid, cmd in _children(proc.pid) if "-m worker" in cmd and pid != old]
            if workers:
                break
            time.sleep(0.2)
        assert workers, "no new worker"
        assert proc.poll() is None and port_open(port)
    finally:
        assert stop_demo(proc) == 0
