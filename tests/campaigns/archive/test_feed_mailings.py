"""RSS-to-email through the real worker and SMTP capture: new items are mailed once, whatever the feed does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import threading

import pytest
from sqlalchemy import func, select

from campaigns.accounts import api_keys
from campaigns.archive import feed_mailings, fetching, issues
from campaigns.archive.fetching import FeedError, fetch
from campaigns.composing.editor import save_campaign
from campaigns.composing.starters import starter
from campaigns.errors import ValidationError
from campaigns.models import AuditEntry, Campaign, FeedItem, FeedMailing
from campaigns.outbound import blocked
from campaigns.sending import sweeper
from tests.campaigns.archive.feeds import FeedServer, rss, serve
from tests.helpers import csrf, fresh

A = ("post-a", "Sowing tomatoes", "<p>Start <strong>indoors</strong> in March.</p>")
B = ("post-b", "Compost basics", "<p>Greens &amp; browns.<script>alert('x')</script><img src=\"https://t.test/p.gif\">"
                                 "<a href=\"javascript:alert(1)\">bad</a></p>")
C = ("post-c", "Pruning roses", "<p>Cut above an outward bud.</p>")
LATER = dt.timedelta(days=2)


@pytest.fixture()
def settings(settings):
    """The feed server runs on 127.0.0.1: these tests use the operator's override of the SSRF guard."""
    return dataclasses.replace(settings, feeds_allow_private=True)


@pytest.fixture()
def feed():
    with serve(FeedServer(body=rss(A, B))) as state:
        yield state


@pytest.fixture()
def mailing(db_session, make_contacts, feed):
    topic, _contacts = make_contacts(3, "Blog")
    report = starter("blog_report")
    template = save_campaign(db_session, {"name": "Blog report", "kind": "nurture", "subject": report.subject,
                                          "mjml": report.mjml, "from_name": "Anna Becker"}, topic_ids=[topic.id])
    obj = feed_mailings.save_mailing(db_session, {"name": "Blog", "feed_url": feed.url, "template_id": template.id,
                                                  "every_hours": "24", "max_items": "10"})
    feed_mailings.set_active(db_session, obj, True)
    db_session.commit()
    return obj


def titles(message) -> list[str]:
    return [t for _g, t, _h in (A, B, C) if t in message.html]


def test_first_run_mails_a_and_b_then_only_c_then_nothing(db_session, runtime, mailing, feed, work, outbox) -> None:
    now = dt.datetime.now(dt.UTC)
    assert feed_mailings.run_due(runtime, now) == {"checked": 1, "mailed": 2, "failed": 0}
    work()
    first = outbox.list()
    assert sorted(r for m in first for r in m.recipients) == [f"person{i}@example.com" for i in range(3)]
    for entry in first:
        message = outbox.get(entry.key)
        assert titles(message) == ["Sowing tomatoes", "Compost basics"]
        assert message.subject == "New on our blog: Sowing tomatoes"
        # item HTML is sanitised: no script, no image from the feed, no javascript: link
        assert "<script" not in message.html and "t.test/p.gif" not in message.html
        assert "javascript:" not in message.html and "alert(" not in message.html
        assert "<strong>indoors</strong>" in message.html
        assert "Sowing tomatoes" in message.text and "<strong>" not in message.text   # text part: text only

    # Not due yet: the feed is not even fetched.
    requests = feed.requests
    assert feed_mailings.run_due(runtime, now + dt.timedelta(hours=1))["checked"] == 0
    assert feed.requests == requests

    feed.body = rss(C, A, B)
    assert feed_mailings.run_due(runtime, now + LATER)["mailed"] == 1
    work()
    second = [outbox.get(e.key) for e in outbox.list() if e.key not in {f.key for f in first}]
    assert len(second) == 3
    assert all(titles(m) == ["Pruning roses"] for m in second)

    # Reordered, with a duplicate and the same items under a different order: nothing is new, nothing is sent.
    feed.body = rss(B, C, A, C)
    assert feed_mailings.run_due(runtime, now + 2 * LATER)["mailed"] == 0
    # Unchanged feed: the conditional GET is answered 304, nothing is parsed or sent.
    assert feed_mailings.run_due(runtime, now + 3 * LATER)["mailed"] == 0
    assert feed.conditional_hits == 1
    assert feed.headers_seen[-1].get("If-None-Match") == feed.etag()
    work()
    assert len(outbox.list()) == 6
    fresh(db_session)
    assert db_session.scalar(select(func.count()).select_from(FeedItem)) == 3
    runs = feed_mailings.runs(db_session, mailing.id)
    assert [n for _c, n in runs] == [1, 2]


def test_a_worker_dying_after_the_check_sends_nothing_twice(db_session, runtime, mailing, feed, work,
                                                            outbox) -> None:
    """The items are recorded in the transaction that creates and starts the run: a second check before the
    worker has sent anything (a crash, a retry) finds them seen and creates nothing."""
    now = dt.datetime.now(dt.UTC)
    first = feed_mailings.check(runtime, mailing.id, now)
    again = feed_mailings.check(runtime, mailing.id, now + LATER)
    assert (first.mailed, again.mailed, again.new_items) == (2, 0, 0)
    work()
    assert sorted(r for m in outbox.list() for r in m.recipients) == [f"person{i}@example.com" for i in range(3)]
    fresh(db_session)
    assert db_session.scalar(select(func.count()).select_from(Campaign).where(Campaign.name.like("Blog ·%"))) == 1


def test_a_lost_dispatch_job_is_recovered_by_the_sweeper(db_session, runtime, mailing, feed, work, outbox) -> None:
    """The worker dies right after the check committed (its dispatch job lost): the items are recorded and the run
    is running, so the sweeper dispatches it; each item still goes out exactly once."""
    result = feed_mailings.check(runtime, mailing.id)
    assert result.mailed == 2
    runtime.queue.empty()
    runtime.redis.delete(sweeper.marker(runtime, sweeper.Work.DISPATCH, result.campaign_id))
    work()
    assert outbox.list() == []
    assert feed_mailings.check(runtime, mailing.id, dt.datetime.now(dt.UTC) + LATER).mailed == 0
    assert sweeper.sweep(runtime)["dispatch"] == 1
    work()
    assert sorted(r for m in outbox.list() for r in m.recipients) == [f"person{i}@example.com" for i in range(3)]


def test_broken_feed_is_shown_in_the_admin_and_nothing_is_sent(db_session, runtime, mailing, feed, work, outbox,
                                                               editor) -> None:
    now = dt.datetime.now(dt.UTC)
    feed.body, feed.content_type = b"<html><body>Oops, not a feed</body></html>", "text/html"
    result = feed_mailings.check(runtime, mailing.id, now)
    assert result.mailed == 0 and "does not serve an RSS or Atom feed" in result.error
    feed.status, feed.body = 500, b"server error"
    assert "HTTP 500" in feed_mailings.check(runtime, mailing.id, now).error
    work()
    assert outbox.list() == []
    page = editor.get(f"/admin/feeds/{mailing.id}").get_data(as_text=True)
    assert "Last check failed, nothing was sent: the feed answered HTTP 500" in page
    key = api_keys.create_key(fresh(db_session), "Site", ["campaigns:read"]).secret
    db_session.commit()
    listed = editor.get("/api/v1/feed-mailings", headers={"Authorization": f"Bearer {key}"}).get_json()["data"]
    assert [(m["name"], m["active"], m["last_error"]) for m in listed] == [
        ("Blog", True, "the feed answered HTTP 500 Internal Server Error")]
    assert "problem" in editor.get("/admin/feeds").get_data(as_text=True)
    fresh(db_session)
    m = db_session.get(FeedMailing, mailing.id)
    assert m.next_check_at <= now + feed_mailings.RETRY_AFTER_ERROR   # tried again within the hour
    # Fixed: the items go out once, and the problem is cleared.
    feed.status, feed.body, feed.content_type = 200, rss(A), "application/rss+xml"
    assert feed_mailings.check(runtime, mailing.id, now).mailed == 1
    work()
    assert len(outbox.list()) == 3
    fresh(db_session)
    assert db_session.get(FeedMailing, mailing.id).last_error == ""


def test_a_template_that_cannot_be_sent_records_nothing(db_session, runtime, mailing, feed, work, outbox) -> None:
    """Items of a check whose run cannot start stay unseen: once the template is fixed, they are mailed."""
    template = db_session.get(Campaign, mailing.template_id)
    template.valid_until = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    db_session.commit()
    result = feed_mailings.check(runtime, mailing.id)
    assert result.mailed == 0 and "valid until" in result.error
    fresh(db_session)
    assert db_session.scalar(select(func.count()).select_from(FeedItem)) == 0
    template = db_session.get(Campaign, mailing.template_id)
    template.valid_until = None
    db_session.commit()
    assert feed_mailings.check(runtime, mailing.id).mailed == 2
    work()
    assert len(outbox.list()) == 3


def test_more_new_items_than_max_items_mails_the_newest(db_session, runtime, mailing, feed, work, outbox) -> None:
    m = db_session.get(FeedMailing, mailing.id)
    m.max_items = 1
    db_session.commit()
    feed.body = rss(B, A)   # B is the newest (published first)
    assert feed_mailings.check(runtime, mailing.id).mailed == 1
    work()
    assert {tuple(titles(outbox.get(e.key))) for e in outbox.list()} == {("Compost basics",)}
    feed.body = rss(C, B, A)
    assert feed_mailings.check(runtime, mailing.id).mailed == 1   # A was seen (skipped), never mailed later
    work()
    assert sum("Sowing tomatoes" in (outbox.get(e.key).html or "") for e in outbox.list()) == 0


def test_the_ssrf_guard_refuses_private_addresses_without_the_override(feed) -> None:
    with pytest.raises(FeedError, match="private or local address"):
        fetch(feed.url)
    with pytest.raises(FeedError, match="private or local address"):
        fetch("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(FeedError, match="http:// or https://"):
        fetch("file:///etc/passwd")
    assert fetch(feed.url, allow_private=True).body == feed.body


def test_limits_size_and_time(feed) -> None:
    feed.body = rss(A) + b" " * 5000
    with pytest.raises(FeedError, match="larger than"):
        fetch(feed.url, allow_private=True, max_bytes=4096)
    # Compressed although identity was asked for: inflated, within the same limit (a gzip bomb is refused).
    feed.encoding, feed.body = "gzip", gzip.compress(rss(A))
    assert fetch(feed.url, allow_private=True).body == rss(A)
    feed.body = gzip.compress(b" " * 100_000)
    with pytest.raises(FeedError, match="larger than"):
        fetch(feed.url, allow_private=True, max_bytes=4096)
    feed.encoding = ""
    feed.delay = 1.0
    with pytest.raises(FeedError, match="did not answer within 0.2 seconds"):
        fetch(feed.url, allow_private=True, timeout=0.2)


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True), ("169.254.169.254", True),
    ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True), ("::1", True), ("fe80::1%eth0", True),
    ("fd00::1", True), ("::ffff:127.0.0.1", True), ("::ffff:10.0.0.1", True),
    ("93.184.215.14", False), ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", False), ("::ffff:93.184.215.14", False),
])
def test_the_ssrf_guard_knows_private_addresses(address: str, refused: bool) -> None:
    assert blocked(address) is refused


def test_redirects_are_checked_again_and_limited(feed, monkeypatch) -> None:
    with serve(FeedServer(body=rss(C))) as target:
        feed.redirect_to = target.url
        assert fetch(feed.url, allow_private=True).body == rss(C)          # followed
        # Every hop is checked: the feed's own host counts as public here, the redirect's target as private.
        real = fetching._resolve
        monkeypatch.setattr(fetching, "_resolve", lambda host, port, allow_private: real(
            host, port, allow_private or port != target.port))
        with pytest.raises(FeedError, match="private or local address"):
            fetch(feed.url)
        monkeypatch.undo()
        target.redirect_to = feed.url                                       # a loop
        with pytest.raises(FeedError, match="redirected more than 3 times"):
            fetch(feed.url, allow_private=True)


def test_save_refuses_bad_input(db_session, mailing) -> None:
    template_id = mailing.template_id
    receipt = save_campaign(db_session, {"name": "Receipt", "kind": "transactional", "subject": "Receipt",
                                         "mjml": starter("blog_report").mjml, "all_contacts": "1"})
    db_session.commit()
    with pytest.raises(ValidationError, match="transactional"):
        feed_mailings.save_mailing(db_session, {"name": "T", "feed_url": "https://blog.shop.test/feed",
                                                "template_id": str(receipt.id)})
    db_session.rollback()
    good = {"name": "Other", "feed_url": "https://blog.shop.test/feed", "template_id": str(template_id)}
    for change, fld in (({"feed_url": "ftp://x.test/feed"}, "feed_url"), ({"name": ""}, "name"),
                        ({"name": "Blog"}, "name"), ({"every_hours": "5"}, "every_hours"),
                        ({"max_items": "0"}, "max_items"), ({"template_id": "999999"}, "template_id")):
        with pytest.raises(ValidationError) as err:
            feed_mailings.save_mailing(db_session, {**good, **change})
        assert err.value.field == fld
        db_session.rollback()


def test_admin_creates_switches_on_and_checks_now(db_session, runtime, editor, make_contacts, feed, work,
                                                  outbox) -> None:
    topic, _ = make_contacts(2, "Blog")
    report = starter("blog_report")
    template = save_campaign(db_session, {"name": "Blog report", "kind": "nurture", "subject": report.subject,
                                          "mjml": report.mjml}, topic_ids=[topic.id])
    db_session.commit()
    r = editor.post("/admin/feeds/new", data={"csrf_token": csrf(editor, "/admin/feeds/new"), "name": "Our blog",
                                              "feed_url": feed.url, "template_id": str(template.id),
                                              "every_hours": "168", "max_items": "5"})
    assert r.status_code == 303
    page = r.headers["Location"]
    token = csrf(editor, page)
    assert editor.post(page + "/activate", data={"csrf_token": token}).status_code == 303
    assert editor.post(page + "/check", data={"csrf_token": token}).status_code == 303
    work()    # the check job, then the run's dispatch and batches
    work()
    assert sorted(r for m in outbox.list() for r in m.recipients) == ["person0@example.com", "person1@example.com"]
    html = editor.get(page).get_data(as_text=True)
    assert "Our blog · " in html and "Check now" in html


def test_runs_of_an_archived_template_are_archived_with_their_items(db_session, runtime, mailing, feed, work,
                                                                    client) -> None:
    template = db_session.get(Campaign, mailing.template_id)
    topic = template.topics[0]
    issues.set_archived(db_session, runtime.settings, template, topic.id)
    db_session.commit()
    assert feed_mailings.check(runtime, mailing.id).mailed == 2
    work()
    ref = issues.topic_ref(topic)
    index = client.get(f"/archive/{ref}").get_data(as_text=True)
    assert "New on our blog: Sowing tomatoes" in index
    page = client.get(f"/archive/{ref}/new-on-our-blog-sowing-tomatoes").get_data(as_text=True)
    assert "Sowing tomatoes" in page and "Compost basics" in page and "<strong>indoors</strong>" in page
    assert "person0@example.com" not in page and "Hello there" in page


def test_two_checks_at_the_same_moment_mail_each_item_once(db_session, runtime, mailing, feed, work, outbox,
                                                           monkeypatch) -> None:
    """Both checks read "nothing seen yet" before either records: the unique item key lets one of them through.
    (SQLite serialises writers before the read, so the race only exists on PostgreSQL.)"""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's BEGIN IMMEDIATE serialises the two checks before they read")
    both_read = threading.Barrier(2, timeout=30)
    real_copy = feed_mailings._copy

    def copy_after_both_read(template, m):
        both_read.wait()
        return real_copy(template, m)

    monkeypatch.setattr(feed_mailings, "_copy", copy_after_both_read)
    results = []
    threads = [threading.Thread(target=lambda: results.append(feed_mailings.check(runtime, mailing.id)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.mailed for r in results) == [0, 2] and all(not r.error for r in results)
    work()
    assert sorted(r for m in outbox.list() for r in m.recipients) == [f"person{i}@example.com" for i in range(3)]


def test_a_mailing_whose_check_crashes_does_not_stop_the_others(db_session, runtime, mailing, feed, work, outbox,
                                                                monkeypatch) -> None:
    other = feed_mailings.save_mailing(db_session, {"name": "Blog again", "feed_url": feed.url + "?again",
                                                    "template_id": str(mailing.template_id)})
    feed_mailings.set_active(db_session, other, True)
    db_session.commit()
    real = feed_mailings.fetch

    def crash_for_the_first(url, **kwargs):
        if url == feed.url:
            raise RuntimeError("a bug")
        return real(url, **kwargs)

    monkeypatch.setattr(feed_mailings, "fetch", crash_for_the_first)
    assert feed_mailings.run_due(runtime) == {"checked": 2, "mailed": 2, "failed": 1}
    work()
    assert len(outbox.list()) == 3


def test_deleting_a_mailing_keeps_its_mails_and_a_check_under_way_sends_nothing(
        db_session, runtime, mailing, feed, work, outbox, editor, monkeypatch) -> None:
    """A marketer can remove a feed mailing (it could only be paused): its sent mails stay in Campaigns with their
    reports; a check that was fetching the feed at that moment records and sends nothing."""
    template_id, mailing_id = mailing.template_id, mailing.id
    assert feed_mailings.check(runtime, mailing_id).mailed == 2
    work()
    run_id = db_session.scalar(select(FeedItem.campaign_id).where(FeedItem.mailing_id == mailing_id).limit(1))
    page = f"/admin/feeds/{mailing_id}"
    html = editor.get(page).get_data(as_text=True)
    assert "Delete “Blog”" in html and "The 1 mail it sent stay under Campaigns" in html
    assert editor.get(page + "/delete").status_code == 405           # only an explicit POST deletes
    r = editor.post(page + "/delete", data={"csrf_token": csrf(editor, page)})
    assert r.status_code == 303 and r.headers["Location"].endswith("/admin/feeds")
    assert "Feed mailing “Blog” deleted" in editor.get("/admin/feeds").get_data(as_text=True)
    db_session.rollback()
    assert db_session.scalar(select(func.count()).select_from(FeedMailing)) == 0
    assert db_session.scalar(select(func.count()).select_from(FeedItem)) == 0
    assert fresh(db_session).get(Campaign, run_id).sent == 3            # the mail it sent, with its report
    assert editor.get(f"/admin/campaigns/{run_id}").status_code == 200
    assert db_session.scalar(select(AuditEntry.target).where(AuditEntry.action == "feed_mailing.delete")) == \
        f"feed mailing {mailing_id}"

    # A check that lists the mailing, then fetches while it is deleted: nothing recorded, nothing sent.
    again = feed_mailings.save_mailing(db_session, {"name": "Blog 2", "feed_url": feed.url, "template_id": template_id,
                                                    "every_hours": "24", "max_items": "10"})
    feed_mailings.set_active(db_session, again, True)
    db_session.commit()
    real_fetch = feed_mailings.fetch

    def fetch_while_deleted(*args, **kwargs):
        answer = real_fetch(*args, **kwargs)
        with runtime.session_factory() as session:
            feed_mailings.delete_mailing(session, session.get(FeedMailing, again.id))
            session.commit()
        return answer

    monkeypatch.setattr(feed_mailings, "fetch", fetch_while_deleted)
    sent_before = outbox.count()
    result = feed_mailings.check(runtime, again.id)
    work()
    assert (result.mailed, result.error) == (0, "") and outbox.count() == sent_before
    assert feed_mailings.check(runtime, again.id).mailed == 0          # gone: a later tick just skips it
