"""The public archive: chosen, sent campaigns per topic, as pages and an Atom feed that carry nobody's data."""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

import feedparser
import pytest
from sqlalchemy import select

from campaigns.archive import issues
from campaigns.composing.editor import save_campaign
from campaigns.errors import ValidationError
from campaigns.models import AuditEntry, Campaign, Topic
from campaigns.sending import lifecycle
from campaigns.signup import forms as signup_forms
from tests.campaigns.coupons.test_coupons import make_pool
from tests.helpers import csrf, fresh

BASE = "https://mail.shop.test"
PERSONAL_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name|default('reader', true) }} {{ contact.last_name }} from {{ contact.city }}
({{ contact.email }}). Your code: CODE[{{ coupon.code }}], valid until {{ coupon.expires }}.</mj-text>
<mj-text><a href="https://shop.test/guide">Read the guide</a> · <a href="{{ preferences_url }}">Settings</a></mj-text>
</mj-column></mj-section></mj-body></mjml>"""
ATOM = "{http://www.w3.org/2005/Atom}"


def _send(db_session, runtime, campaign, work) -> None:
    lifecycle.start(db_session, runtime, campaign)
    db_session.commit()
    work()
    fresh(db_session)


@pytest.fixture()
def sent(db_session, runtime, make_contacts, work, outbox):
    """A campaign with names, addresses and coupon codes, sent to three contacts; returns (campaign, topic)."""
    topic, _contacts = make_contacts(3, "Newsletter")
    pool = make_pool(db_session, ["GT-AAAA-1111", "GT-BBBB-2222", "GT-CCCC-3333"])
    campaign = save_campaign(db_session, {"name": "Spring", "kind": "nurture",
                                          "subject": "Spring news for {{ contact.first_name|default('you', true) }}",
                                          "preheader": "What to sow now", "mjml": PERSONAL_MJML,
                                          "coupon_pool_id": str(pool.id)}, topic_ids=[topic.id])
    db_session.commit()
    _send(db_session, runtime, campaign, work)
    assert len(outbox.list()) == 3
    return db_session.get(Campaign, campaign.id), db_session.get(Topic, topic.id)


def personal_data(db_session, outbox) -> list[str]:
    """Everything of a recipient the delivered messages carry: addresses, names, codes, and every token URL."""
    out = set()
    for entry in outbox.list():
        msg = outbox.get(entry.key)
        out.update(msg.recipients)
        out.update(re.findall(r"CODE\[([A-Z0-9-]+)\]", msg.html))
        out.update(re.findall(re.escape(BASE) + r"/(?:o|c|u|p|m|s)/[A-Za-z0-9_.\-]+", msg.html + msg.text))
    for name in ("Zoë0", "Jürgen1", "Ana2", "Tester", "from Berlin"):   # the sender's address is in Berlin too
        out.add(name)
    assert any(v.startswith("GT-") for v in out) and any(f"{BASE}/u/" in v for v in out)
    return sorted(out)


def archive(client, campaign_id: int, topic_id: int | None):
    page = f"/admin/campaigns/{campaign_id}/archive"
    data = {"csrf_token": csrf(client, page), "topic_id": str(topic_id or "")}
    if topic_id:
        data["archive"] = "1"
    return client.post(page, data=data)


def test_archive_and_feed_show_the_issue_with_no_personal_data(db_session, editor, client, sent, outbox) -> None:
    campaign, topic = sent
    form = signup_forms.save_form(db_session, {"name": "Footer", "title": "News", "consent_text": "Yes."},
                                  [topic.id])
    db_session.commit()
    r = archive(editor, campaign.id, topic.id)
    assert r.status_code == 303, re.findall(r'class="flash[^"]*"[^>]*>(.*?)<', r.get_data(as_text=True), re.S)
    issue = issues.archive_choice(fresh(db_session), db_session.get(Campaign, campaign.id))
    ref = f"{topic.id}-newsletter"
    assert issue.slug == "spring-news-for-you"
    admin_page = editor.get(f"/admin/campaigns/{campaign.id}/archive").get_data(as_text=True)
    assert f"{BASE}/archive/{ref}/spring-news-for-you" in admin_page
    assert f'<a href="{BASE}/archive/{ref}/feed.atom">Atom feed</a></td><td class="num">1</td>' in admin_page

    index = client.get(f"/archive/{ref}")
    page = client.get(f"/archive/{ref}/spring-news-for-you")
    feed = client.get(f"/archive/{ref}/feed.atom")
    assert (index.status_code, page.status_code, feed.status_code) == (200, 200, 200)
    bodies = {name: r.get_data(as_text=True) for name, r in (("index", index), ("page", page), ("feed", feed))}
    for name, body in bodies.items():
        for value in personal_data(db_session, outbox):
            assert value not in body, (name, value)
        for path in ("/o/", "/c/", "/u/", "/p/", "/m/", "/s/"):
            assert f"{BASE}{path}" not in body, (name, path)
    html = bodies["page"]
    assert "Hello reader" in html and "Code: CODE[]" in html.replace("Your code", "Code")
    assert 'href="https://shop.test/guide"' in html                 # the link as written, not tracked
    assert 'width="1" height="1"' not in html                       # no open pixel
    # No unsubscribe or preference link (the footer's nor the template's own), and no separator left dangling.
    assert ">Unsubscribe<" not in html and ">Settings<" not in html and "recipient-link.invalid" not in html
    assert re.search(r"Read the guide</a>\s*(·|&middot;)", html) is None
    assert f"{BASE}/signup/{form.public_id}" in html and f"{BASE}/signup/{form.public_id}" in bodies["index"]
    assert "Spring news for you" in bodies["index"] and "What to sow now" in bodies["index"]
    assert page.headers["Cache-Control"] == "public, max-age=300" and "sandbox" in page.headers[
        "Content-Security-Policy"]

    # The feed is Atom and parses back: one entry pointing at the issue page.
    root = ET.fromstring(feed.get_data())
    assert root.tag == f"{ATOM}feed"
    parsed = feedparser.parse(feed.get_data())
    assert parsed.version == "atom10" and not parsed.bozo
    assert [(e.title, e.link) for e in parsed.entries] == [("Spring news for you",
                                                            f"{BASE}/archive/{ref}/spring-news-for-you")]
    assert feed.headers["Content-Type"].startswith("application/atom+xml")


def test_only_archived_sent_campaigns_appear(db_session, runtime, editor, client, sent, make_campaign,
                                             work) -> None:
    campaign, topic = sent
    ref = issues.topic_ref(topic)
    assert client.get(f"/archive/{ref}").status_code == 404          # nothing archived yet
    draft = make_campaign([topic], subject="Draft news")
    assert archive(editor, draft.id, topic.id).status_code == 303      # chosen, but not sent
    assert client.get(f"/archive/{ref}").status_code == 404
    assert client.get(f"/archive/{ref}/draft-news").status_code == 404
    assert client.get(f"/archive/{ref}/feed.atom").status_code == 404
    assert archive(editor, campaign.id, topic.id).status_code == 303
    body = client.get(f"/archive/{ref}").get_data(as_text=True)
    assert "Spring news for you" in body and "Draft news" not in body
    _send(db_session, runtime, db_session.get(Campaign, draft.id), work)   # sent: now it appears
    assert "Draft news" in client.get(f"/archive/{ref}").get_data(as_text=True)
    assert client.get(f"/archive/{ref}/draft-news").status_code == 200
    # Taken out of the archive: gone. Both are in the audit log.
    assert archive(editor, campaign.id, None).status_code == 303
    assert client.get(f"/archive/{ref}/spring-news-for-you").status_code == 404
    fresh(db_session)
    logged = [(e.action, e.detail) for e in db_session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert logged[-1] == ("campaign.archive", "Spring: taken out of the public archive")
    assert ("campaign.archive", f"Spring: public at {BASE}/archive/{ref}/spring-news-for-you") in logged
    for path in ("/archive/999999", "/archive/abc", f"/archive/{ref}/no-such-issue", f"/archive/{ref}/../x"):
        assert client.get(path).status_code == 404, path


def test_a_hidden_topic_or_transactional_mail_is_never_shown(db_session, editor, client, sent) -> None:
    campaign, topic = sent
    hidden = Topic(name="Internal", public=False)
    db_session.add(hidden)
    db_session.commit()
    r = archive(editor, campaign.id, hidden.id)
    assert r.status_code == 400 and "choose a public topic" in r.get_data(as_text=True)
    assert archive(editor, campaign.id, topic.id).status_code == 303
    db_session.get(Topic, topic.id).public = False
    db_session.commit()
    assert client.get(f"/archive/{issues.topic_ref(topic)}").status_code == 404
    transactional = save_campaign(db_session, {"name": "Receipt", "kind": "transactional", "subject": "Receipt",
                                               "mjml": "<mjml><mj-body><mj-text>Thanks</mj-text></mj-body></mjml>"})
    with pytest.raises(ValidationError, match="transactional"):
        issues.set_archived(db_session, runtime_settings(client), transactional, topic.id)


def runtime_settings(client):
    return client.application.extensions["rapport"].settings


def test_caching_escaping_and_the_one_address(db_session, editor, client, sent, monkeypatch) -> None:
    campaign, topic = sent
    topic.name = "Tips & <Tricks>"
    campaign.subject = "Soil & <b>roots</b>\x07"
    db_session.commit()
    assert archive(editor, campaign.id, topic.id).status_code == 303
    ref = issues.topic_ref(topic)
    assert ref == f"{topic.id}-tips-tricks"
    index = client.get(f"/archive/{ref}")
    body = index.get_data(as_text=True)
    assert "Tips &amp; &lt;Tricks&gt;" in body and "<Tricks>" not in body and "<b>roots" not in body
    # The list renders each issue once per process and content, not on every request.
    rendered = []
    real = issues.render_neutral
    monkeypatch.setattr(issues, "render_neutral", lambda *a: rendered.append(a) or real(*a))
    assert client.get(f"/archive/{ref}").get_data(as_text=True) == body and rendered == []
    again = client.get(f"/archive/{ref}", headers={"If-None-Match": index.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    feed = client.get(f"/archive/{ref}/feed.atom").get_data()
    parsed = feedparser.parse(feed)
    assert not parsed.bozo and parsed.feed.title.startswith("Tips & <Tricks>")
    assert parsed.entries[0].title == "Soil & <b>roots</b>"
    # The topic's id is what counts; its name in the address is corrected with a permanent redirect.
    moved = client.get(f"/archive/{topic.id}-old-name")
    assert moved.status_code == 301 and moved.headers["Location"].endswith(f"/archive/{ref}")
    assert client.head(f"/archive/{ref}").status_code == 200


def test_the_api_reads_a_campaigns_place_in_the_archive(db_session, editor, client, sent) -> None:
    from campaigns.accounts import api_keys

    campaign, topic = sent
    key = api_keys.create_key(db_session, "Site", ["campaigns:read"]).secret
    db_session.commit()
    headers = {"Authorization": f"Bearer {key}"}
    url = f"/api/v1/campaigns/{campaign.id}/archive"
    assert client.get(url, headers=headers).get_json() == {
        "campaign_id": campaign.id, "archived": False, "shown": False, "topic_id": None, "url": None}
    assert archive(editor, campaign.id, topic.id).status_code == 303
    assert client.get(url, headers=headers).get_json() == {
        "campaign_id": campaign.id, "archived": True, "shown": True, "topic_id": topic.id,
        "url": f"{BASE}/archive/{topic.id}-newsletter/spring-news-for-you"}
    assert client.get(url).status_code == 401
    assert client.get("/api/v1/feed-mailings", headers=headers).get_json() == {"data": []}
