"""Opens and clicks through the real app, Redis queue and worker: machine detection, engagement, durability, report."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from campaigns.feedback import engagement, hits
from campaigns.models import Contact, Event, Link, Send
from campaigns.reports.campaign_report import campaign_report
from campaigns.sending import lifecycle as sending
from mailer.tracking import Purpose
from tests.helpers import fresh

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
MAIL_APP = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko)"


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


@pytest.fixture()
def sent(runtime, db_session, make_contacts, make_campaign, outbox, run_worker):
    """A campaign delivered to 6 contacts; returns (campaign, contacts, {email: (pixel, [click paths])})."""
    topic, contacts = make_contacts(6)
    campaign = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    urls = {}
    for m in outbox.list():
        msg = outbox.get(m.key)
        pixel = path_of(re.search(r'src="(https://mail\.shop\.test/o/[^"]+)"', msg.html).group(1))
        clicks = [path_of(u) for u in dict.fromkeys(re.findall(r'href="(https://mail\.shop\.test/c/[^"]+)"', msg.html))]
        urls[m.recipients[0]] = (pixel, clicks)
    return campaign, contacts, urls





def age_sends(db_session, hours: int = 2) -> None:
    """Pretend delivery happened a while ago, so opens are not 'seconds after delivery'."""
    for send in db_session.scalars(select(Send)):
        send.sent_at -= dt.timedelta(hours=hours)
    db_session.commit()


def events(db_session, type_: str) -> list[Event]:
    return list(fresh(db_session).scalars(select(Event).where(Event.type == type_).order_by(Event.id)))


def test_open_is_queued_fast_then_recorded_by_the_worker_as_human(client, db_session, sent, work) -> None:
    _campaign, contacts, urls = sent
    age_sends(db_session)
    pixel = urls[contacts[0].email][0]
    r = client.get(pixel, headers={"User-Agent": MAIL_APP})
    assert r.status_code == 200 and r.mimetype == "image/gif" and "no-store" in r.headers["Cache-Control"]
    assert events(db_session, "open") == []        # nothing written inline
    work()
    (ev,) = events(db_session, "open")
    assert ev.contact_id == contacts[0].id and ev.machine is False
    contact = db_session.get(Contact, contacts[0].id)
    assert contact.last_opened_at is not None and contact.engagement_score == pytest.approx(1.0)


@pytest.mark.parametrize(("agent", "ip"), [
    ("Mozilla/5.0", "127.0.0.1"),                                                      # Apple MPP
    (MAIL_APP, "17.58.101.7"),                                                         # Apple's network
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "127.0.0.1"),
    ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "127.0.0.1"),
    ("", "127.0.0.1"),
])
def test_proxy_and_scanner_opens_are_machine_and_not_engagement(client, db_session, sent, work, agent,
                                                                ip) -> None:
    campaign, contacts, urls = sent
    age_sends(db_session)
    client.get(urls[contacts[0].email][0], headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": ip})
    work()
    (ev,) = events(db_session, "open")
    assert ev.machine is True and ev.data["machine"]
    contact = db_session.get(Contact, contacts[0].id)
    assert contact.last_opened_at is None and contact.engagement_score == 0
    report = campaign_report(db_session, campaign.id)
    assert report["opens_human"] == 0 and report["opens_machine"] == 1 and report["open_rate"] == 0


def test_one_fetcher_opening_for_many_right_after_delivery_is_prefetch(client, db_session, sent, work) -> None:
    campaign, contacts, urls = sent
    # Two opens arrive (and are written) first, looking human; then the same fetcher opens for four more.
    for c in contacts[:2]:
        client.get(urls[c.email][0], headers={"User-Agent": MAIL_APP}, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    work()
    assert [e.machine for e in events(db_session, "open")] == [False, False]
    for c in contacts[2:]:
        client.get(urls[c.email][0], headers={"User-Agent": MAIL_APP}, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    work()
    assert [e.machine for e in events(db_session, "open")] == [True] * 6   # the first two corrected too
    assert campaign_report(db_session, campaign.id)["opens_human"] == 0


def test_a_crowd_reclassified_as_machine_no_longer_counts_as_engagement(client, db_session, sent, work) -> None:
    _campaign, contacts, urls = sent
    a, b = contacts[:2]
    # Two opens through one fetcher look human at first and move the contacts' engagement; a also clicks.
    for c in (a, b):
        client.get(urls[c.email][0], headers={"User-Agent": MAIL_APP}, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    work()
    client.get(urls[a.email][1][0], headers={"User-Agent": BROWSER}, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    work()
    assert fresh(db_session).get(Contact, a.id).engagement_score == pytest.approx(4.0)
    assert db_session.get(Contact, b.id).last_opened_at is not None
    # Then the same fetcher opens for four more recipients: it was a prefetching proxy all along.
    for c in contacts[2:]:
        client.get(urls[c.email][0], headers={"User-Agent": MAIL_APP}, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    work()
    fresh(db_session)
    ca, cb = db_session.get(Contact, a.id), db_session.get(Contact, b.id)
    assert cb.last_opened_at is None and cb.engagement_score == 0 and cb.engagement_at is None
    # a keeps exactly the human click (weight 3) and no open.
    assert ca.last_opened_at is None and ca.last_clicked_at is not None
    assert ca.engagement_score == pytest.approx(3.0) and ca.engagement_at == ca.last_clicked_at
    assert all(db_session.get(Contact, c.id).engagement_score == 0 for c in contacts[2:])


def test_a_link_sweep_spread_over_two_drains_undoes_the_first_clicks_engagement(client, db_session, sent,
                                                                               work) -> None:
    _campaign, contacts, urls = sent
    age_sends(db_session)
    first, second = urls[contacts[1].email][1]
    client.get(first, headers={"User-Agent": BROWSER})
    work()
    contact = fresh(db_session).get(Contact, contacts[1].id)
    assert contact.engagement_score == pytest.approx(4.0) and contact.last_clicked_at is not None
    client.get(second, headers={"User-Agent": BROWSER})   # the rest of the message's links within two seconds
    work()
    contact = fresh(db_session).get(Contact, contacts[1].id)
    assert contact.engagement_score == 0 and contact.last_clicked_at is None and contact.last_opened_at is None
    assert all(e.machine for e in events(db_session, "click") + events(db_session, "open"))


def test_click_redirects_to_stored_url_counts_as_open_and_scores(client, db_session, sent, work) -> None:
    campaign, contacts, urls = sent
    age_sends(db_session)
    _pixel, clicks = urls[contacts[1].email]
    r = client.get(clicks[0], headers={"User-Agent": BROWSER})
    assert r.status_code == 302 and r.headers["Location"] == "https://shop.test/guide?a=1&b=2"
    work()
    (click,) = events(db_session, "click")
    (implied,) = events(db_session, "open")
    assert click.machine is False and implied.data["implied_by"] == "click" and implied.send_id == click.send_id
    contact = db_session.get(Contact, contacts[1].id)
    assert contact.last_clicked_at is not None and contact.last_opened_at is not None
    assert contact.engagement_score == pytest.approx(4.0)   # open 1 + click 3
    report = campaign_report(db_session, campaign.id)
    assert report["opens_human"] == 1 and report["clicks_human"] == 1
    assert [(li["url"], li["unique_clicks"]) for li in report["links"]] == [
        ("https://shop.test/guide?a=1&b=2", 1), ("https://shop.test/events", 0)]


def test_scanner_clicks_are_flagged(client, db_session, sent, work) -> None:
    campaign, contacts, urls = sent
    age_sends(db_session)
    # A link checker: HEAD request.
    assert client.head(urls[contacts[0].email][1][0], headers={"User-Agent": BROWSER}).status_code == 302
    # A gateway following every link of a message at once, with a browser-like agent.
    for path in urls[contacts[1].email][1]:
        client.get(path, headers={"User-Agent": BROWSER})
    work()
    clicks = events(db_session, "click")
    assert len(clicks) == 3 and all(c.machine for c in clicks)
    assert events(db_session, "open") == []        # machine clicks imply no open
    report = campaign_report(db_session, campaign.id)
    assert report["clicks_human"] == 0 and report["clicks_machine"] == 3
    assert db_session.get(Contact, contacts[1].id).last_clicked_at is None


def test_a_click_pairing_a_send_with_another_campaigns_link_is_never_recorded(runtime, client, db_session, sent,
                                                                             make_campaign, work) -> None:
    """Only the server can seal a click token, and it pairs each send with its own campaign's links; should a
    mismatched pair ever exist, the hit writer refuses to turn it into an event (the redirect itself reads no send
    row, to stay fast)."""
    campaign, contacts, _urls = sent
    other = make_campaign(campaign.topics)
    foreign = Link(campaign_id=other.id, url="https://elsewhere.example/", position=0)
    db_session.add(foreign)
    db_session.commit()
    send = db_session.scalar(select(Send).where(Send.contact_id == contacts[0].id))
    client.get(f"/c/{runtime.tokens.seal(Purpose.CLICK, send.id, foreign.id)}")
    work()
    assert events(db_session, "click") == []
    # An unknown link is a friendly 404, and nothing in the request can choose a target.
    r = client.get(f"/c/{runtime.tokens.seal(Purpose.CLICK, send.id, 10**6)}")
    assert r.status_code == 404 and "Location" not in r.headers and "not valid" in r.get_data(True)


def test_test_send_links_work_but_record_nothing(runtime, client, db_session, sent, work) -> None:
    campaign, _contacts, _urls = sent
    link = db_session.scalar(select(Link).where(Link.campaign_id == campaign.id, Link.position == 1))
    r = client.get(f"/c/{runtime.tokens.seal(Purpose.CLICK, 0, link.id)}")
    assert r.status_code == 302 and r.headers["Location"] == "https://shop.test/events"
    client.get(f"/o/{runtime.tokens.seal(Purpose.OPEN, 0)}")
    assert hits.pending(runtime.redis) == 0
    work()
    assert events(db_session, "click") == [] and events(db_session, "open") == []


def test_an_interrupted_drain_is_replayed_without_loss_or_double_count(runtime, client, db_session, sent,
                                                                     work) -> None:
    _campaign, contacts, urls = sent
    age_sends(db_session)
    for c in contacts:
        client.get(urls[c.email][0], headers={"User-Agent": MAIL_APP})
    redis = runtime.redis
    # A drain moved four hits to its processing list, wrote two of them, and was killed.
    for _ in range(4):
        redis.lmove(hits.QUEUE_KEY, hits.PROCESSING_KEY, "LEFT", "RIGHT")
    moved = [hits.Hit.loads(r) for r in redis.lrange(hits.PROCESSING_KEY, 0, -1)]
    engagement.record_hits(db_session, moved[:2])
    db_session.commit()
    work()   # the drain job queued by the first hit replays the processing list
    opens = events(db_session, "open")
    assert sorted(e.contact_id for e in opens) == sorted(c.id for c in contacts)
    assert hits.pending(redis) == 0


def test_engagement_decays_with_a_30_day_half_life(runtime, db_session, make_contacts) -> None:
    _topic, (contact,) = make_contacts(1)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    engagement.add_to_score(contact, 3.0, t0)                       # a click
    engagement.add_to_score(contact, 1.0, t0 + dt.timedelta(days=30))  # an open a month later
    assert engagement.current_score(contact, t0 + dt.timedelta(days=30)) == pytest.approx(2.5)
    assert engagement.current_score(contact, t0 + dt.timedelta(days=60)) == pytest.approx(1.25)
    engagement.add_to_score(contact, 1.0, t0 - dt.timedelta(days=30))  # late report of an older open
    assert engagement.current_score(contact, t0 + dt.timedelta(days=30)) == pytest.approx(2.75)
    db_session.commit()
    engagement.decay_scores(runtime, t0 + dt.timedelta(days=60))
    assert fresh(db_session).get(Contact, contact.id).engagement_score == pytest.approx(1.375)


def test_segments_can_ask_for_recent_human_clicks_and_no_recent_opens(client, db_session, sent, work) -> None:
    _campaign, contacts, urls = sent
    age_sends(db_session)
    client.get(urls[contacts[0].email][1][0], headers={"User-Agent": BROWSER})       # human click
    client.get(urls[contacts[1].email][0], headers={"User-Agent": "Mozilla/5.0"})     # Apple MPP open
    work()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    clicked = set(fresh(db_session).scalars(select(Contact.id).where(engagement.had_event("click", since))))
    assert clicked == {contacts[0].id}
    no_open = set(db_session.scalars(select(Contact.id).where(
        engagement.no_event_since("open", dt.datetime.now(dt.UTC) - dt.timedelta(days=90)))))
    assert no_open == {c.id for c in contacts[1:]}   # the machine open does not count


def test_report_page_shows_people_and_machines_apart(client, db_session, sent, work) -> None:
    from werkzeug.security import generate_password_hash

    from campaigns.models import AdminUser

    campaign, contacts, urls = sent
    age_sends(db_session)
    client.get(urls[contacts[0].email][1][1], headers={"User-Agent": BROWSER})      # a person clicks "Events"
    client.get(urls[contacts[1].email][0], headers={"User-Agent": "Mozilla/5.0"})   # Apple MPP
    work()
    report_url = f"/admin/campaigns/{campaign.id}/report"
    assert client.get(report_url).status_code == 302                                  # login first
    db_session.add(AdminUser(email="m@shop.test", name="M", role="viewer",
                             password_hash=generate_password_hash("correct horse battery")))
    db_session.commit()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/admin/login", data={"email": "m@shop.test", "password": "correct horse battery",
                                      "csrf_token": token})
    html = client.get(report_url).get_data(as_text=True)
    people = re.search(r"Opened \(people\)</th><td>(\d+)", html).group(1)
    machines = re.search(r"Opened only by machines</th><td>(\d+)", html).group(1)
    assert (people, machines) == ("1", "1")
    assert re.search(r"https://shop.test/events</a></td><td>1</td>", html)
    assert client.get("/admin/campaigns/999999/report").status_code == 404
