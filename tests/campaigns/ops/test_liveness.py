"""`python -m campaigns check` and the admin's System page against real RQ workers and the scheduler ticker."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import time
from pathlib import Path

from rq import SimpleWorker

from campaigns import scheduler
from campaigns.check import check

ROOT = Path(__file__).resolve().parents[3]


def run_check(settings) -> tuple[int, str]:
    out = io.StringIO()
    code = check(settings, out)
    return code, out.getvalue()


def worker_env(s) -> dict[str, str]:
    return dict(os.environ, DATABASE_URL=s.database_url, REDIS_URL=s.redis_url, SMTP_URL=s.smtp_urls[0],
                SECRET_KEY=s.secret_key, BASE_URL=s.base_url, RAPPORT_QUEUE=s.queue_name,
                RAPPORT_INSTANCE=str(s.instance_path), DKIM_PRIVATE_KEY_PATH=str(s.dkim_private_key_path))


def test_check_fails_without_workers_and_passes_with_a_real_worker_process(runtime) -> None:
    code, out = run_check(runtime.settings)
    assert code == 1
    assert "no worker is alive" in out and "no scheduler is ticking" in out
    proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--name", "probe-worker"],
                            env=worker_env(runtime.settings), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:     # the worker registers and the ticker ticks within a second or two of starting
            code, out = run_check(runtime.settings)
            if code == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert code == 0, out
        assert "worker probe-worker" in out and out.strip().endswith("OK")
    finally:
        proc.terminate()        # warm shutdown: the worker unregisters itself
        _, err = proc.communicate(timeout=30)
    code, out = run_check(runtime.settings)
    assert code == 1
    assert "no worker is alive" in out


def test_check_fails_when_the_queue_is_stuck(runtime) -> None:
    worker = SimpleWorker([runtime.queue], connection=runtime.redis, name="idle-one")
    worker.register_birth()      # alive (a fresh heartbeat) but taking nothing
    scheduler.tick(runtime)
    runtime.queue.empty()        # the periodic jobs that tick enqueued; an idle worker would have taken them
    try:
        assert run_check(runtime.settings)[0] == 0
        job = runtime.queue.enqueue("campaigns.tasks.release_held")
        job.enqueued_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
        job.save()
        code, out = run_check(runtime.settings)
        assert code == 1, out
        assert "the queue is stuck" in out and "1 queued" in out
    finally:
        worker.register_death()


def test_check_fails_when_the_database_is_unreachable(runtime) -> None:
    settings = runtime.settings.with_overrides({"database_url": "postgresql+psycopg://x@127.0.0.1:1/none"})
    code, out = run_check(settings)
    assert code == 1
    assert "FAIL database: unreachable" in out


def test_cli_check_exit_code(runtime) -> None:
    proc = subprocess.run([sys.executable, "-m", "campaigns", "check"], env=worker_env(runtime.settings), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no worker is alive" in proc.stdout
