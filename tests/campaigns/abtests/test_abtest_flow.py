"""A/B tests through the real app, Redis queue, worker and capture SMTP server: the test share goes out split between
the variants, people's clicks (through the real click endpoint; scanners' clicks must not count) pick the winner at
the set time, and the winner goes to everyone else — counted at the receiving end."""

from __future__ import annotations

import collections
import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from campaigns import queueing
from campaigns.abtests import decide
from campaigns.models import AbOutcome, AbPhase, AbTest, Campaign, CampaignStatus, Event, Send
from campaigns.queueing import Job
from campaigns.reports.campaign_report import campaign_report
from campaigns.sending import lifecycle, sweeper
from tests.helpers import csrf, fresh

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
SUBJECT_A = "Spring news from the garden"
SUBJECT_B = "Your spring planting guide is here"
MJML_B = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}! Everything for spring:
<a href="https://shop.test/spring">See the spring guide</a></mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def delivered(outbox) -> dict[str, tuple[str, list[str]]]:
    """recipient -> (subject, click paths) of every message the capture server received."""
    out = {}
    for m in outbox.list(limit=100_000):
        msg = outbox.get(m.key)
        assert m.recipients[0] not in out, f"{m.recipients[0]} got the campaign twice"
        clicks = [path_of(u) for u in dict.fromkeys(re.findall(r'href="(https://mail\.shop\.test/c/[^"]+)"', msg.html))]
        out[m.recipients[0]] = (msg.subject, clicks)
    return out


def set_up(editor, campaign, **fields) -> None:
    data = {"csrf_token": csrf(editor, f"/admin/campaigns/{campaign.id}/abtest"), "test_percent": "20",
            "criterion": "human_clicks", "wait_hours": "2", "auto_send": "1", "default_variant": "0",
            "subject_1": SUBJECT_B, "mjml_1": MJML_B, **fields}
    r = editor.post(f"/admin/campaigns/{campaign.id}/abtest", data=data)
    assert r.status_code == 302, r.get_data(True)


def start(editor, campaign) -> None:
    token = csrf(editor, f"/admin/campaigns/{campaign.id}")
    assert editor.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token}).status_code == 302


def make_due(db_session, campaign_id: int, hours: int = 3) -> None:
    """Pretend the campaign started (and its mail went out) some hours ago: the decision is due, and clicks are
    not 'seconds after delivery'."""
    earlier = dt.timedelta(hours=hours)
    c = fresh(db_session).get(Campaign, campaign_id)
    c.started_at -= earlier
    for send in db_session.scalars(select(Send).where(Send.campaign_id == campaign_id, Send.sent_at.is_not(None))):
        send.sent_at -= earlier
    db_session.commit()


def test_a_thousand_contacts_test_share_then_winner_by_human_clicks(runtime, editor, client, db_session,
                                                                     make_contacts, make_campaign, outbox, work):
    topic, contacts = make_contacts(1000)
    campaign = make_campaign([topic], subject=SUBJECT_A)
    set_up(editor, campaign)
    start(editor, campaign)
    work()

    # The test share (20 %, stable hash) went out, split between A and B; nobody else got anything yet.
    got = delivered(outbox)
    by_subject = collections.Counter(subject for subject, _ in got.values())
    share = fresh(db_session).scalars(select(Send).where(Send.campaign_id == campaign.id)).all()
    assert len(got) == len(share) and 150 <= len(got) <= 250
    assert set(by_subject) == {SUBJECT_A, SUBJECT_B} and min(by_subject.values()) >= 70
    assert {s.variant for s in share} == {0, 1}
    variant_of = {c.email: s.variant for s in share for c in contacts if c.id == s.contact_id}
    assert all(got[email][0] == (SUBJECT_B if v == 1 else SUBJECT_A) for email, v in variant_of.items())
    c = fresh(db_session).get(Campaign, campaign.id)
    assert c.status == CampaignStatus.RUNNING      # waits for the decision, not finished
    page = editor.get(f"/admin/campaigns/{campaign.id}").get_data(True)
    assert "The A/B test share has been sent" in page
    # Not due yet: the periodic job decides nothing.
    assert decide.decide_due(runtime) == 0

    make_due(db_session, campaign.id)
    a_people = [e for e, v in variant_of.items() if v == 0]
    b_people = [e for e, v in variant_of.items() if v == 1]
    # People: 30 of B click one link, 5 of A do.
    for i, email in enumerate(b_people[:30]):
        assert client.get(got[email][1][0], headers={"User-Agent": BROWSER},
                          environ_base={"REMOTE_ADDR": f"203.0.113.{i + 1}"}).status_code == 302
    for i, email in enumerate(a_people[:5]):
        client.get(got[email][1][0], headers={"User-Agent": BROWSER}, environ_base={"REMOTE_ADDR": f"198.51.100.{i}"})
    # Machines on A: a security gateway follows every link of 60 messages at once, a link checker sends HEADs.
    for email in a_people[10:70]:
        for path in got[email][1]:
            client.get(path, headers={"User-Agent": BROWSER}, environ_base={"REMOTE_ADDR": "192.0.2.50"})
    for email in a_people[70:90]:
        client.head(got[email][1][0], headers={"User-Agent": BROWSER})
    work()   # drain the hits
    machine = fresh(db_session).scalars(select(Event).where(Event.campaign_id == campaign.id,
                                                            Event.type == "click", Event.machine.is_(True))).all()
    assert len(machine) >= 60 * 2     # recorded, but they must not count

    # The periodic job, run by the worker, decides and sends the rest.
    queueing.enqueue(runtime.queue, Job.DECIDE_AB_TESTS)
    work()
    test = fresh(db_session).scalar(select(AbTest).where(AbTest.campaign_id == campaign.id))
    assert test.phase == AbPhase.REST and test.outcome == AbOutcome.WINNER and test.winner == 1
    assert test.confidence > 0.95 and "B wins by people's clicks" in test.decision
    assert "B 30 of" in test.decision and "A 5 of" in test.decision

    # Everyone got exactly one message; everyone outside the test share got B.
    got_all = delivered(outbox)
    assert len(got_all) == 1000
    rest = {e: s for e, (s, _c) in got_all.items() if e not in got}
    assert len(rest) == 1000 - len(got) and set(rest.values()) == {SUBJECT_B}
    c = fresh(db_session).get(Campaign, campaign.id)
    assert c.status == CampaignStatus.FINISHED and c.sent == 1000

    # Deciding again (a second worker, a restart) changes nothing and sends nothing.
    assert decide.decide_due(runtime) == 0
    work()
    assert len(outbox.list(limit=100_000)) == 1000

    report = campaign_report(fresh(db_session), campaign.id)["ab_test"]
    a, b = report["variants"]
    assert (a["human_clicks"], b["human_clicks"]) == (5, 30)
    assert report["winner"] == "B" and report["rest_sent"] == 1000 - len(got)
    page = editor.get(f"/admin/campaigns/{campaign.id}/report").get_data(True)
    assert "B wins by people&#39;s clicks" in page or "B wins by people's clicks" in page


@pytest.mark.parametrize("auto_send", [True, False])
def test_a_small_test_declares_no_winner(runtime, editor, db_session, make_contacts, make_campaign, outbox, work,
                                         auto_send):
    """Too few recipients to judge: no winner. Automatic: the default variant (B here) goes; otherwise the
    campaign waits until a person picks."""
    topic, _contacts = make_contacts(60)
    campaign = make_campaign([topic], subject=SUBJECT_A)
    set_up(editor, campaign, test_percent="50", default_variant="1", auto_send="1" if auto_send else "")
    start(editor, campaign)
    work()
    first = delivered(outbox)
    assert 15 <= len(first) <= 45
    make_due(db_session, campaign.id)
    assert decide.decide_due(runtime) == 1
    work()
    test = fresh(db_session).scalar(select(AbTest).where(AbTest.campaign_id == campaign.id))
    assert test.outcome == AbOutcome.TOO_FEW and test.best is not None and "No winner declared" in test.decision
    if auto_send:
        assert test.phase == AbPhase.REST and test.winner == 1
    else:
        assert test.phase == AbPhase.DECIDED and test.winner is None
        assert len(outbox.list(limit=100_000)) == len(first)
        assert fresh(db_session).get(Campaign, campaign.id).status == CampaignStatus.RUNNING
        assert "waits for you" in editor.get(f"/admin/campaigns/{campaign.id}").get_data(True)
        token = csrf(editor, f"/admin/campaigns/{campaign.id}/abtest")
        r = editor.post(f"/admin/campaigns/{campaign.id}/abtest/pick", data={"csrf_token": token, "variant": "1"})
        assert r.status_code == 302
        work()
    got = delivered(outbox)
    assert len(got) == 60
    assert {s for e, (s, _c) in got.items() if e not in first} == {SUBJECT_B}
    assert fresh(db_session).get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_the_decision_waits_for_the_test_share_to_go_out_and_for_a_paused_campaign(runtime, editor, db_session,
                                                                                  make_contacts, make_campaign,
                                                                                  outbox, work):
    topic, _contacts = make_contacts(40)
    campaign = make_campaign([topic], subject=SUBJECT_A)
    set_up(editor, campaign, test_percent="50")
    start(editor, campaign)
    make_due(db_session, campaign.id)
    assert decide.decide_due(runtime) == 0          # not dispatched yet
    fresh(db_session)
    assert lifecycle.dispatch(runtime, campaign.id) > 0
    assert decide.decide_due(runtime) == 0          # the test share is dispatched but still queued
    work()
    db_session.execute(update(Campaign).where(Campaign.id == campaign.id).values(status=CampaignStatus.PAUSED))
    db_session.commit()
    assert decide.decide_due(runtime) == 0
    db_session.execute(update(Campaign).where(Campaign.id == campaign.id).values(status=CampaignStatus.RUNNING))
    db_session.commit()
    assert decide.decide_due(runtime) == 1


def test_the_rest_goes_even_when_the_dispatch_job_after_the_decision_is_lost(runtime, editor, db_session,
                                                                            make_contacts, make_campaign, outbox,
                                                                            work):
    """A worker dies (or Redis restarts) right after the decision committed: the job that walks the audience for
    the rest is gone, and the delivery sweeper starts it again from the database."""
    topic, _contacts = make_contacts(30)
    campaign = make_campaign([topic], subject=SUBJECT_A)
    set_up(editor, campaign, test_percent="40", default_variant="1")
    start(editor, campaign)
    work()
    share = len(delivered(outbox))
    make_due(db_session, campaign.id)
    assert decide.decide_due(runtime) == 1
    runtime.queue.empty()                                   # the dispatch job is lost
    runtime.redis.delete(sweeper.marker(runtime, sweeper.Work.DISPATCH, campaign.id))
    work()
    assert len(delivered(outbox)) == share                  # nothing sent: nobody walks the audience
    assert sweeper.sweep(runtime)["dispatch"] == 1
    work()
    got = delivered(outbox)
    assert len(got) == 30 and fresh(db_session).get(Campaign, campaign.id).status == CampaignStatus.FINISHED
