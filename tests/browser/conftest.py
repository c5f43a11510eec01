"""Browser fixtures: Debian's Chromium driven by Playwright against the real app, worker and capture SMTP server.

Chromium is the Debian package at /usr/bin/chromium, installed here with apt-get when missing; Playwright's own
browser downloads are never used. Every page fails its test on a Content-Security-Policy violation, an uncaught
JavaScript exception or a 5xx answer.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from campaigns.config import Settings
from tests.browser.flows import ROOT, SCREENSHOTS, LiveServer, log_in

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TIMEOUT_MS = 20_000        # a generous upper bound for any one wait; passing runs take a fraction of it


def _missing_browser(reason: str) -> None:
    """In CI a missing browser is a failure; on a developer's machine the browser tests are skipped."""
    message = f"browser tests need Debian's chromium at {CHROMIUM}: {reason}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _install_chromium() -> None:
    """apt-get the Debian package (update once, then install), as root or through password-less sudo."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if not sudo or subprocess.run([sudo, "-n", "true"], capture_output=True).returncode != 0:
            _missing_browser("it is not installed, and installing it needs root (apt-get install chromium)")
        prefix = [sudo, "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(prefix + cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            _missing_browser(f"`{' '.join(cmd)}` failed: {(done.stderr or done.stdout)[-800:]}")
    if not CHROMIUM.exists():
        _missing_browser("apt-get install chromium finished but the binary is not there")


@pytest.fixture(scope="package")
def browser():
    """One headless Chromium for the browser tests (package scope: Playwright's sync API holds an event loop,
    so it is stopped before the rest of the suite runs)."""
    if not CHROMIUM.exists():
        _install_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


# ------------------------------------------------------------------ the live app, worker and data

@pytest.fixture()
def live_server(runtime) -> Iterator[LiveServer]:
    """The app in a threaded werkzeug server, with BASE_URL pointing at it (so cookies and links fit)."""
    from werkzeug.serving import make_server

    from campaigns.web.app import create_app

    holder: dict = {}
    server = make_server("127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    # A loopback http:// address: allowed, as in the demo (campaigns refuse http unless told otherwise).
    settings = runtime.settings.with_overrides({"base_url": url, "allow_http_base_url": True})
    app = create_app({"SETTINGS": settings})
    app.extensions["rapport"].use_redis(runtime.redis)
    holder["app"] = app
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield LiveServer(url, settings)
    server.shutdown()
    thread.join(10)
    app.extensions["rapport"].close()


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment under which `python worker.py` builds the same Settings as the live server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "SMTP_", "RAPPORT_"))}
    env.update(
        RAPPORT_INSTANCE=str(settings.instance_path), DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url, SMTP_URL=",".join(settings.smtp_urls), SECRET_KEY=settings.secret_key,
        BASE_URL=settings.base_url, DKIM_DOMAIN=settings.dkim_domain, DKIM_SELECTOR=settings.dkim_selector,
        DKIM_PRIVATE_KEY_PATH=str(settings.dkim_private_key_path), SENDER_NAME=settings.sender_name,
        SENDER_EMAIL=settings.sender_email, POSTAL_ADDRESS=settings.postal_address,
        RAPPORT_BATCH_SIZE=str(settings.batch_size), RAPPORT_QUEUE=settings.queue_name, PYTHONUNBUFFERED="1",
        RAPPORT_ALLOW_INSECURE="1",   # the live server is plain http on loopback
    )
    return env


class WorkerProcess:
    """The real worker, `python worker.py`, in its own process on the live server's database, queue and relay.
    Tests start it when they want queued work to happen, so a page can be seen before and after."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings, self.log_path = settings, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.proc is None:
            with self.log_path.open("w") as log:
                self.proc = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=worker_env(self.settings),
                                             stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> str:
        """Warm shutdown (finish the current job, then exit); returns the worker's log."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture()
def worker(live_server: LiveServer, runtime, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker process to start when the test wants; afterwards no job may have failed."""
    proc = WorkerProcess(live_server.settings, tmp_path / "worker.log")
    yield proc
    output = proc.stop()
    failed = runtime.queue.failed_job_registry
    assert failed.count == 0, [runtime.queue.fetch_job(j).exc_info for j in failed.get_job_ids()]
    assert "Traceback" not in output, output[-4000:]


@pytest.fixture()
def demo_data(live_server: LiveServer) -> LiveServer:
    """The demo's data (admin demo@rapport.test / rapport-demo, topics, named sender, two campaigns), 40 contacts."""
    from campaigns.demo.data import seed

    assert seed(live_server.settings, contacts=40)
    return live_server


# ------------------------------------------------------------------ pages that watch for breakage

@dataclass
class PageProblems:
    """What went wrong on a page that a person would not see at once but must not happen."""

    csp: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def fatal(self) -> list[str]:
        return self.csp + self.exceptions + self.server_errors


CSP_MESSAGE = re.compile(r"Content Security Policy|Refused to (load|execute|apply|frame|connect)", re.I)


@pytest.fixture()
def page(browser, request: pytest.FixtureRequest):
    """A fresh browser context and page (desktop size) that fails the test on CSP violations, uncaught exceptions
    and 5xx responses."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    problems = PageProblems()

    def on_console(msg) -> None:
        if msg.type in ("error", "warning") and CSP_MESSAGE.search(msg.text):
            problems.csp.append(f"{msg.text} ({msg.location.get('url')}:{msg.location.get('lineNumber')})")
        elif msg.type == "error":
            problems.console_errors.append(msg.text)

    def on_response(resp) -> None:
        if resp.status >= 500:
            problems.server_errors.append(f"{resp.status} {resp.request.method} {resp.url}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: problems.exceptions.append(f"uncaught: {exc}"))
    pg.on("response", on_response)
    pg.problems = problems
    yield pg
    context.close()
    fatal = problems.fatal()
    assert not fatal, "the browser saw problems:\n" + "\n".join(fatal)


@pytest.fixture()
def admin_page(page, demo_data: LiveServer):
    """A page logged in as the demo admin on the demo data."""
    log_in(page, demo_data)
    return page
