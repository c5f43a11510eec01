"""The worker logs what a person needs at INFO; RQ's per-job lines and per-batch results only at DEBUG."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from campaigns.logs import JobChatter
from campaigns.sending import lifecycle as sending

ROOT = Path(__file__).resolve().parents[3]


def test_a_campaign_of_many_batches_logs_a_few_lines_not_one_per_batch(runtime, db_session, make_contacts,
                                                                       make_campaign, outbox) -> None:
    s = runtime.settings
    topic, _ = make_contacts(12)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    env = dict(os.environ, DATABASE_URL=s.database_url, REDIS_URL=s.redis_url, SMTP_URL=s.smtp_urls[0],
               SECRET_KEY=s.secret_key, BASE_URL=s.base_url, DKIM_DOMAIN=s.dkim_domain,
               DKIM_SELECTOR=s.dkim_selector, DKIM_PRIVATE_KEY_PATH=str(s.dkim_private_key_path),
               RAPPORT_QUEUE=s.queue_name, RAPPORT_INSTANCE=str(s.instance_path), RAPPORT_BATCH_SIZE="2")
    proc = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--burst"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert outbox.count() == 12                                 # six batches of two really ran
    log = proc.stderr.splitlines()
    assert [line for line in log if "batch" in line or "Job OK" in line or "Successfully completed" in line
            or "result is kept" in line] == [], "\n".join(log)
    assert any("dispatched" in line for line in log)            # what a person wants to know is still there
    assert len(log) < 20, "\n".join(log)


def test_job_lines_come_back_at_debug() -> None:
    logger = logging.getLogger("rq.worker.test")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "Worker %s: %s: %s (%s)",
                               ("w", "rapport", "Job OK", "abc"), None)
    chatter = JobChatter()
    logger.setLevel(logging.INFO)
    assert chatter.filter(record) is False and record.levelname == "DEBUG"
    logger.setLevel(logging.DEBUG)
    record.levelno = logging.INFO
    assert chatter.filter(record) is True
    other = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "Worker %s: started with PID %d, version %s",
                              ("w", 1, "2"), None)
    assert chatter.filter(other) is True and other.levelname == "INFO"
