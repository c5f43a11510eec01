"""Recipient pages say who they are from: the brand name and logo set in Settings, and the postal address."""

from __future__ import annotations

import html

from campaigns.signup import service as signup_service
from mailer.tracking import Purpose
from tests.campaigns.accounts.test_settings import admin, flashes, post  # noqa: F401 - the admin fixture


def _pages(client, runtime, db_session, make_contacts) -> dict[str, str]:
    topic, (contact,) = make_contacts(1)
    form = signup_service.save_form(db_session, {"name": "Footer", "title": "Get our newsletter",
                                                 "consent_text": "Yes, send me the newsletter."}, [topic.id])
    db_session.commit()
    urls = {"unsubscribe": "/u/" + runtime.tokens.seal(Purpose.UNSUBSCRIBE, contact.id, 0),
            "preferences": "/p/" + runtime.tokens.seal(Purpose.PREFERENCES, contact.id),
            "signup": f"/signup/{form.public_id}",
            "not found": "/u/not-a-token"}
    out = {}
    for name, url in urls.items():
        r = client.get(url)
        assert r.status_code == (404 if name == "not found" else 200), name
        out[name] = html.unescape(r.get_data(as_text=True))
    return out


def test_every_recipient_page_shows_the_sender_and_the_postal_address(client, runtime, db_session,
                                                                      make_contacts) -> None:
    for name, page in _pages(client, runtime, db_session, make_contacts).items():
        header = page.split('<header class="brand">')[1].split("</header>")[0]
        assert "Green Thumb" in header and "<img" not in header, name
        assert "Green Thumb, Lindenstraße 1, 10115 Berlin" in page.split('<footer class="imprint">')[1], name


def test_name_and_logo_set_in_settings_appear_and_the_logo_is_allowed_by_the_csp(
        admin, client, runtime, db_session, make_contacts) -> None:  # noqa: F811
    r = post(admin, "/admin/settings/brand", {"name": "Green Thumb Gardens", "logo_url": "http://cdn.shop.test/l.png"})
    assert r.status_code == 400 and "https://" in html.unescape(r.get_data(as_text=True))
    r = post(admin, "/admin/settings/brand", {"name": "Green Thumb Gardens", "language": "en_GB"})
    assert r.status_code == 400
    r = post(admin, "/admin/settings/brand", {"name": "Green Thumb Gardens", "logo_url": "https://cdn.shop.test/l.png",
                                              "language": "de"}, follow_redirects=True)
    assert "Brand saved." in flashes(r)
    for name, page in _pages(client, runtime, db_session, make_contacts).items():
        header = page.split('<header class="brand">')[1].split("</header>")[0]
        assert "Green Thumb Gardens" in header and '<img src="https://cdn.shop.test/l.png"' in header, name
    csp = client.get("/signup/nope").headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://cdn.shop.test;" in csp
    # New campaigns start in the language chosen in Settings.
    page = admin.get("/admin/campaigns/new?starter=newsletter").get_data(as_text=True)
    assert 'id="language" name="language" maxlength="35" required value="de"' in page


def test_sent_mail_carries_the_campaign_language(runtime, db_session, make_contacts, make_campaign, outbox,
                                                 run_worker) -> None:
    import lxml.html

    from campaigns.sending import lifecycle as sending

    topic, _contacts = make_contacts(1)
    campaign = make_campaign([topic])
    assert campaign.language == "en"
    campaign.language = "ar"
    db_session.commit()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    (entry,) = outbox.list()
    root = lxml.html.document_fromstring(outbox.get(entry.key).html)
    assert (root.get("lang"), root.get("dir")) == ("ar", "rtl")
    assert "fonts.googleapis.com" not in outbox.get(entry.key).html
