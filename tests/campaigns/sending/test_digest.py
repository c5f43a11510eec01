"""The weekly/monthly digest through the real worker, queue, database and SMTP server; its web-version page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from campaigns.composing import starters as starter_service
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    DigestItem,
    DigestRun,
    Frequency,
    PolicyLedger,
    Send,
    SendStatus,
    utcnow,
)
from campaigns.queueing import PERIODIC as TASKS
from campaigns.queueing import Job
from campaigns.sending import digest, policy, release
from campaigns.sending import lifecycle as sending
from mailer.tracking import Purpose
from tests.campaigns.sending.test_policy import days, fresh, history, sends_of, set_policy


def age(session, contact: Contact, by: dt.timedelta) -> None:
    """Let time pass for one contact: their past mail moves back by `by`."""
    for row in session.scalars(select(PolicyLedger).where(PolicyLedger.contact_id == contact.id)):
        row.sent_at -= by
    session.commit()


def mails_to(outbox, email: str) -> list:
    return [outbox.get(e.key) for e in outbox.list(limit=500) if email in e.recipients]


@pytest.fixture()
def readers(db_session, make_contacts, make_campaign, runtime, run_worker):
    """A weekly reader and an every-mail reader, each mailed 2 days ago, then two newsletters sent to both."""
    topic, (weekly, every) = make_contacts(2)
    weekly.frequency = Frequency.WEEKLY
    db_session.commit()
    history(db_session, weekly, "nurture", *days(2))
    history(db_session, every, "nurture", *days(2))
    set_policy(db_session, messages_per_day=10)
    letters = []
    for title, pre in (("Spring sowing", "Peas and beans, {{ contact.first_name }}"), ("Pruning night", "")):
        c = make_campaign([topic], subject=f"{title} for {{{{ contact.first_name }}}}")
        c.preheader = pre
        c.name = title
        db_session.commit()
        sending.start(db_session, runtime, c)
        db_session.commit()
        letters.append(c)
    run_worker()
    return weekly, every, letters


def test_weekly_reader_gets_one_digest_after_the_period_not_before(
        db_session, runtime, run_worker, outbox, readers, client):
    weekly, every, letters = readers
    # The every-mail reader got both newsletters; the weekly reader's are held for their choice.
    assert len(mails_to(outbox, every.email)) == 2
    assert all(sends_of(db_session, c.id)[weekly.id] == ("held", "preference") for c in letters)

    # Before the week is over: no digest, and nothing is trickled out one by one either.
    for _ in range(2):
        runtime.queue.enqueue("campaigns.tasks.send_digests")
        run_worker()
        age(db_session, weekly, dt.timedelta(days=2))      # 4, then 6 days since their last mail
    assert digest.due_contacts(fresh(db_session), policy.load(db_session, runtime.settings.policy), utcnow()) == []
    release.release_held(runtime)
    run_worker()
    assert mails_to(outbox, weekly.email) == []
    assert all(sends_of(db_session, c.id)[weekly.id] == ("held", "preference") for c in letters)

    # A week after their last mail: the periodic run (release first, as the scheduler may order them) sends one.
    age(db_session, weekly, dt.timedelta(days=2))
    assert release.release_held(runtime) == 0
    runtime.queue.enqueue("campaigns.tasks.send_digests")
    run_worker()
    got = mails_to(outbox, weekly.email)
    assert len(got) == 1
    mail = got[0]
    first = weekly.first_name
    assert mail.subject.startswith(f"{first}, your digest: 2 mails")
    assert f"Spring sowing for {first}" in mail.html and f"Pruning night for {first}" in mail.html
    assert f"Peas and beans, {first}" in mail.html and f"Peas and beans, {first}" in mail.text
    links = re.findall(r'href="https://mail\.shop\.test/m/([^"]+)"', mail.html)
    assert len(links) == 2 and mail.html.count("Read it") == 2

    # Held sends went into the digest: skipped with reason digest, the newsletters are finished.
    fresh(db_session)
    for c in letters:
        assert sends_of(db_session, c.id)[weekly.id] == ("skipped", "digest")
        assert db_session.get(Campaign, c.id).status == CampaignStatus.FINISHED
        assert db_session.get(Campaign, c.id).held == 0
    run = db_session.scalars(select(DigestRun)).one()
    assert (run.contacts, run.items) == (1, 2)
    # The digest itself went through the send path as nurture: a sent send row and a ledger row.
    digest_send = db_session.scalars(select(Send).where(Send.campaign_id == run.campaign_id)).one()
    assert digest_send.status == SendStatus.SENT and digest_send.contact_id == weekly.id
    assert db_session.get(PolicyLedger, digest_send.id).kind == "nurture"

    # The every-mail reader got nothing more; a second run sends nothing.
    assert len(mails_to(outbox, every.email)) == 2
    runtime.queue.enqueue("campaigns.tasks.send_digests")
    run_worker()
    assert len(mails_to(outbox, weekly.email)) == 1
    assert len(db_session.scalars(select(DigestRun)).all()) == 1

    # "Read it" opens the newsletter as this contact got it, under a sandboxing CSP.
    page = client.get(f"/m/{links[0]}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert f"Hello {first}, news from Berlin" in body
    assert "sandbox" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert re.search(r'href="https://mail\.shop\.test/c/[^"]+"', body)          # links are tracked as usual


def test_web_version_rejects_forged_and_cross_purpose_tokens(db_session, runtime, client, readers):
    weekly, _every, letters = readers
    send_id = db_session.scalar(select(Send.id).where(Send.campaign_id == letters[0].id,
                                                      Send.contact_id == weekly.id))
    good = runtime.tokens.seal(Purpose.WEB, send_id)
    assert client.get(f"/m/{good}").status_code == 200
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    for bad in (flipped, runtime.tokens.seal(Purpose.MESSAGE, send_id), runtime.tokens.seal(Purpose.OPEN, send_id),
                "x" * 30, "x" * 500, runtime.tokens.seal(Purpose.WEB, 10 ** 9)):
        page = client.get(f"/m/{bad}")
        assert page.status_code == 404, bad
        assert "not available" in page.get_data(as_text=True) or "not found" in page.get_data(as_text=True).lower()
    assert client.post(f"/m/{good}").status_code == 405


def test_monthly_reader_is_due_after_thirty_days(db_session, runtime, make_contacts, make_campaign,
                                                 run_worker, outbox):
    topic, (monthly,) = make_contacts(1, prefix="monthly")
    monthly.frequency = Frequency.MONTHLY
    db_session.commit()
    history(db_session, monthly, "nurture", *days(10))
    set_policy(db_session, messages_per_day=10)
    c = make_campaign([topic])
    sending.start(db_session, runtime, c)
    db_session.commit()
    run_worker()
    assert sends_of(db_session, c.id)[monthly.id] == ("held", "preference")
    rules = policy.load(db_session, runtime.settings.policy)
    assert digest.due_contacts(db_session, rules, utcnow()) == []
    assert digest.due_contacts(db_session, rules, utcnow() + dt.timedelta(days=19)) == []
    age(db_session, monthly, dt.timedelta(days=21))
    assert digest.due_contacts(db_session, rules, utcnow()) == [monthly.id]
    result = digest.run(runtime)
    run_worker()
    assert (result.contacts, result.items) == (1, 1)
    assert len(mails_to(outbox, monthly.email)) == 1
    assert sends_of(db_session, c.id)[monthly.id] == ("skipped", "digest")


def test_switching_back_to_every_mail_releases_held_mail(db_session, runtime, readers, run_worker,
                                                         outbox):
    weekly, _every, letters = readers
    weekly = fresh(db_session).get(Contact, weekly.id)
    weekly.frequency = Frequency.EVERY
    db_session.commit()
    assert release.release_held(runtime) == 2
    run_worker()
    assert len(mails_to(outbox, weekly.email)) == 2
    assert digest.run(runtime).campaign_id is None
    assert db_session.scalars(select(DigestItem)).all() == []


def test_a_stranded_run_is_dispatched_by_the_next_run(db_session, runtime, readers, run_worker, outbox):
    weekly, _every, _letters = readers
    age(db_session, weekly, dt.timedelta(days=6))
    rules = policy.load(db_session, runtime.settings.policy)
    campaign_id, contacts, items = digest.collect(fresh(db_session), rules, utcnow())
    db_session.commit()                                                                  # the worker dies here
    assert contacts == [weekly.id] and items == 2
    assert mails_to(outbox, weekly.email) == []
    result = digest.run(runtime)
    run_worker()
    assert result.repaired == 1 and result.campaign_id is None
    got = mails_to(outbox, weekly.email)
    assert len(got) == 1 and "your digest: 2 mails" in got[0].subject
    assert fresh(db_session).get(Campaign, campaign_id).status == CampaignStatus.FINISHED


def test_digest_is_scheduled_daily_and_not_offered_as_a_starter() -> None:
    task = TASKS["digest"]
    assert task.job == Job.SEND_DIGESTS and task.at == dt.time(7, 0)
    assert "digest" not in {s.key for s in starter_service.starters()}


def test_resuming_a_paused_digest_mails_only_its_own_contacts(db_session, runtime, readers, run_worker,
                                                               outbox):
    weekly, every, _letters = readers
    age(db_session, weekly, dt.timedelta(days=6))
    rules = policy.load(db_session, runtime.settings.policy)
    campaign_id, _contacts, _items = digest.collect(fresh(db_session), rules, utcnow())
    db_session.commit()
    sending.dispatch_to(runtime, campaign_id, [weekly.id])
    c = fresh(db_session).get(Campaign, campaign_id)
    sending.pause(db_session, c, "the relay refused")       # as after relay failures, before the batch ran
    db_session.commit()
    run_worker()
    assert mails_to(outbox, weekly.email) == []
    sending.start(db_session, runtime, fresh(db_session).get(Campaign, campaign_id))    # the page's Resume
    db_session.commit()
    run_worker()
    assert len(mails_to(outbox, weekly.email)) == 1
    assert len(mails_to(outbox, every.email)) == 2                                     # no digest for everyone
    assert fresh(db_session).get(Campaign, campaign_id).recipients == 1


def test_mail_of_a_topic_left_meanwhile_is_not_in_the_digest(db_session, runtime, readers, run_worker,
                                                            outbox):
    from campaigns.models import Subscription

    weekly, _every, letters = readers
    fresh(db_session)
    for sub in db_session.scalars(select(Subscription).where(Subscription.contact_id == weekly.id)):
        sub.subscribed = False
    db_session.commit()
    age(db_session, weekly, dt.timedelta(days=6))
    result = digest.run(runtime)
    run_worker()
    assert result.campaign_id is None and mails_to(outbox, weekly.email) == []
    assert all(sends_of(db_session, c.id)[weekly.id] == ("held", "preference") for c in letters)


def test_mail_to_a_segment_alone_is_in_the_digest(db_session, runtime, readers, run_worker, outbox,
                                                  make_campaign) -> None:
    import json

    from campaigns.contacts import segments

    weekly, _every, _letters = readers
    berlin = segments.save_segment(db_session, {"name": "Berlin", "definition": json.dumps(
        {"match": "all", "rules": [{"field": "city", "op": "is", "value": "Berlin"}]})})
    db_session.commit()
    news = make_campaign([], subject="Berlin news for {{ contact.first_name }}")
    news.segment_id = berlin.id
    db_session.commit()
    sending.start(db_session, runtime, news)
    db_session.commit()     # the dispatch job is enqueued once the start is committed
    run_worker()
    assert sends_of(db_session, news.id)[weekly.id] == ("held", "preference")
    age(db_session, weekly, dt.timedelta(days=6))
    digest.run(runtime)
    run_worker()
    got = mails_to(outbox, weekly.email)
    assert len(got) == 1 and f"Berlin news for {weekly.first_name}" in got[0].html


def test_mail_of_a_topic_left_is_not_in_the_digest_while_another_topic_is_kept(db_session, runtime, readers,
                                                                                run_worker, outbox,
                                                                                make_campaign) -> None:
    """The topic check is per campaign: being subscribed to some other campaign's topic does not count."""
    from campaigns.contacts.records import set_subscriptions
    from campaigns.models import Topic

    weekly, _every, letters = readers
    offers = Topic(name="Offers")
    db_session.add(offers)
    db_session.commit()
    make_campaign([offers])                             # a draft about Offers: the topic is some campaign's
    weekly = fresh(db_session).get(Contact, weekly.id)
    set_subscriptions(db_session, weekly, [offers.id])  # left the newsletters' topic, joined Offers
    db_session.commit()
    age(db_session, weekly, dt.timedelta(days=6))
    digest.run(runtime)
    run_worker()
    assert mails_to(outbox, weekly.email) == []
    assert all(sends_of(db_session, c.id)[weekly.id] == ("held", "preference") for c in letters)
