"""No coupon code is ever issued twice, with several threads and several worker processes drawing from one pool."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select

from campaigns.coupons import assignment
from campaigns.models import CouponCode
from campaigns.sending import lifecycle as sending
from tests.campaigns.coupons.test_coupons import codes_in, coupon_campaign, fresh, make_pool

ROOT = Path(__file__).resolve().parents[3]


def test_threads_claiming_from_one_pool_never_share_a_code(runtime, db_session, make_contacts,
                                                          make_campaign) -> None:
    topic, contacts = make_contacts(40)
    pool = make_pool(db_session, [f"T-{i:05d}" for i in range(150)])
    campaign_ids = [coupon_campaign(db_session, make_campaign, topic, pool).id for _ in range(6)]
    contact_ids, pool_id = [c.id for c in contacts], pool.id
    fresh(db_session)
    got: list[tuple[int, int, str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(campaign_ids))

    def work(campaign_id: int) -> None:
        try:
            start.wait()
            with runtime.session_factory() as session:
                for i in range(0, len(contact_ids), 7):   # claims of 7, like a batch job's rounds
                    chunk = [(cid + 1000 * campaign_id, cid) for cid in contact_ids[i:i + 7]]
                    codes, _missing = assignment.assign_codes(session, pool_id, campaign_id, chunk)
                    session.commit()
                    got.extend((campaign_id, cid, code) for cid, code in codes.items())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(cid,)) for cid in campaign_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # 6 campaigns x 40 recipients want 240 codes; the pool has 150: all of them go out, each exactly once.
    assert len(got) == 150
    assert len({code for _c, _p, code in got}) == 150
    assert len({(c, p) for c, p, _code in got}) == 150
    in_db = {(c.campaign_id, c.contact_id, c.code) for c in db_session.scalars(
        select(CouponCode).where(CouponCode.assigned_at.is_not(None)))}
    assert in_db == set(got)


def test_worker_processes_sending_campaigns_from_one_pool_issue_each_code_once(
        runtime, db_session, make_contacts, make_campaign, outbox) -> None:
    pool = make_pool(db_session, [f"P-{i:05d}" for i in range(80)])
    campaigns = []
    for name in ("a", "b", "c"):
        topic, _ = make_contacts(30, topic_name=f"Topic {name}", prefix=name)
        campaigns.append(coupon_campaign(db_session, make_campaign, topic, pool))
    for campaign in campaigns:
        sending.start(db_session, runtime, campaign)
        db_session.commit()
    s = runtime.settings
    env = dict(os.environ, DATABASE_URL=s.database_url, REDIS_URL=s.redis_url, SMTP_URL=s.smtp_urls[0],
               SECRET_KEY=s.secret_key, BASE_URL=s.base_url, DKIM_DOMAIN=s.dkim_domain,
               DKIM_SELECTOR=s.dkim_selector, DKIM_PRIVATE_KEY_PATH=str(s.dkim_private_key_path),
               RAPPORT_QUEUE=s.queue_name, RAPPORT_INSTANCE=str(s.instance_path), RAPPORT_BATCH_SIZE="8")
    procs = [subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--burst"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]

    # 90 recipients, 80 codes: 80 messages, each with its own code; the campaigns that ran dry are paused.
    delivered = codes_in(outbox)
    assert len(delivered) == 80
    assert len(set(delivered.values())) == 80
    fresh(db_session)
    rows = list(db_session.scalars(select(CouponCode).where(CouponCode.assigned_at.is_not(None))))
    assert len(rows) == 80 and len({r.code for r in rows}) == 80
    from campaigns.models import Contact

    email_of = dict(db_session.execute(select(Contact.id, Contact.email)).all())
    assert {email_of[r.contact_id]: r.code for r in rows} == delivered
