"""The cadence watch agrees with the send table: on the demo data (seeded sends) and when last_sent_at is missing."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import func, select

from campaigns.automations import runs as auto
from campaigns.composing.editor import save_campaign
from campaigns.contacts.records import save_contact
from campaigns.demo import data as demo_data
from campaigns.models import Contact, ContactStatus, Send, SendStatus
from tests.helpers import csrf, fresh


def login_demo(client) -> None:
    r = client.post("/admin/login", data={"email": demo_data.DEMO_EMAIL, "password": demo_data.DEMO_PASSWORD,
                                          "csrf_token": csrf(client, "/admin/login")})
    assert r.status_code == 302


def test_cadence_report_on_the_demo_matches_the_send_table(runtime, db_session, client) -> None:
    assert demo_data.seed(runtime.settings, contacts=80)
    fresh(db_session)
    now = dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=30)
    last_sent = dict(db_session.execute(select(Send.contact_id, func.max(Send.sent_at))
                                        .where(Send.status == SendStatus.SENT).group_by(Send.contact_id)).all())
    contacts = list(db_session.scalars(select(Contact).where(Contact.status == ContactStatus.SUBSCRIBED)))
    # The seeded sends keep every contact's last_sent_at, as the send path does.
    assert {c.id: c.last_sent_at for c in contacts if c.id in last_sent} == \
        {cid: at for cid, at in last_sent.items() if cid in {c.id for c in contacts}}
    quiet = {c.id for c in contacts if last_sent.get(c.id, c.created_at) < cutoff}
    mailed_lately = {cid for cid, at in last_sent.items() if at >= cutoff}
    assert mailed_lately and quiet      # the demo has both, or this test proves nothing

    login_demo(client)
    page = client.get("/admin/automations/cadence?days=30").get_data(as_text=True)
    shown = re.search(r"<strong>([\d,]+)</strong> subscribed contacts? got no mail", page).group(1)
    total = int(shown.replace(",", ""))
    assert total == len(quiet)
    listed, after = set(), None
    while True:
        got = auto.not_contacted(db_session, 30, after=after, now=now)
        listed |= {c.id for c in got.contacts}
        if got.next_after is None:
            break
        after = got.next_after
    assert listed == quiet and not listed & mailed_lately


def test_a_contact_mailed_lately_is_not_quiet_even_without_last_sent_at(
        runtime, db_session, make_contacts, outbox, work) -> None:
    from campaigns.sending import lifecycle as sending

    now = dt.datetime.now(dt.UTC)
    topic, contacts = make_contacts(2)
    old = save_contact(db_session, {"email": "old@example.com"})
    for c in (*contacts, old):
        c.created_at = now - dt.timedelta(days=200)
    db_session.commit()
    campaign = save_campaign(db_session, {"name": "News", "subject": "News", "mjml": (
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>")},
                             topic_ids=[topic.id])
    db_session.commit()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    work()
    assert outbox.count() == 2
    fresh(db_session)
    for c in db_session.scalars(select(Contact)):
        c.last_sent_at = None       # as rows written before last_sent_at was kept (the demo's were)
    db_session.commit()
    page = auto.not_contacted(db_session, 30)
    assert [c.email for c in page.contacts] == ["old@example.com"] and page.total == 1
