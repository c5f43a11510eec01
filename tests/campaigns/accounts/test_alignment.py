"""DMARC alignment: From domains DKIM does not sign for are refused unless overridden; DNS records per domain."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from campaigns.accounts.alignment import aligned
from campaigns.models import Campaign, CampaignStatus, Sender
from tests.campaigns.accounts.test_settings import admin, flashes, post  # noqa: F401 - the admin fixture
from tests.helpers import csrf


@pytest.mark.parametrize(("from_domain", "dkim_domain", "expected"), [
    ("shop.test", "shop.test", True),
    ("news.shop.test", "shop.test", True),          # relaxed: a subdomain of the signing domain
    ("shop.test", "mail.shop.test", True),
    ("SHOP.test.", "shop.test", True),
    ("othershop.example", "shop.test", False),
    ("gmail.com", "shop.test", False),
    ("evilshop.test", "shop.test", False),           # a suffix match is not a subdomain
    ("", "shop.test", False),
])
def test_relaxed_alignment(from_domain: str, dkim_domain: str, expected: bool) -> None:
    assert aligned(from_domain, dkim_domain) is expected


def test_a_sender_identity_on_another_domain_needs_the_override(admin, db_session) -> None:  # noqa: F811
    r = post(admin, "/admin/settings/senders", {"name": "Someone", "email": "someone@gmail.com"})
    page = html.unescape(r.get_data(as_text=True))
    assert r.status_code == 400 and "signed for shop.test only" in page and "DMARC" in page
    assert db_session.scalars(select(Sender)).all() == []

    r = post(admin, "/admin/settings/senders", {"name": "Someone", "email": "someone@gmail.com",
                                                "allow_unaligned": "1"}, follow_redirects=True)
    assert any("Warning" in m and "DMARC" in m for m in map(html.unescape, flashes(r)))
    db_session.rollback()
    sender = db_session.scalars(select(Sender)).one()
    assert sender.allow_unaligned and sender.email == "someone@gmail.com"

    # Unticking the box on the edit page is refused again.
    r = post(admin, f"/admin/settings/senders/{sender.id}", {"name": "Someone", "email": "someone@gmail.com"})
    assert r.status_code == 400
    r = post(admin, "/admin/settings/senders", {"name": "Anna", "email": "anna@news.shop.test"})
    assert r.status_code == 302


def _composer_form(client, **fields) -> dict:
    from tests.conftest import NEWSLETTER_MJML

    return {"csrf_token": csrf(client, "/admin/campaigns/new?starter=newsletter"), "name": "Autumn", "kind": "nurture",
            "subject": "Autumn", "mjml": NEWSLETTER_MJML, "all_contacts": "1", "language": "en", **fields}


def test_a_campaign_from_another_domain_is_saved_but_not_sent_without_the_override(
        admin, db_session, make_contacts) -> None:  # noqa: F811
    make_contacts(2)
    r = admin.post("/admin/campaigns/new", data=_composer_form(admin, sender="custom", from_name="Other",
                                                                  from_email="news@othershop.example"))
    assert r.status_code == 302
    campaign = db_session.scalars(select(Campaign)).one()
    page = html.unescape(admin.get(r.headers["Location"]).get_data(as_text=True))
    assert "cannot be sent yet" in page and "news@othershop.example is DKIM-signed for shop.test only" in page

    send = f"/admin/campaigns/{campaign.id}/send"
    r = admin.post(send, data={"csrf_token": csrf(admin, f"/admin/campaigns/{campaign.id}")}, follow_redirects=True)
    assert "signed for shop.test only" in html.unescape(r.get_data(as_text=True))
    db_session.rollback()
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.DRAFT

    r = admin.post(f"/admin/campaigns/{campaign.id}/edit", data=_composer_form(
        admin, sender="custom", from_name="Other", from_email="news@othershop.example", allow_unaligned_from="1"))
    assert r.status_code == 302
    page = html.unescape(admin.get(r.headers["Location"]).get_data(as_text=True))
    assert "cannot be sent yet" not in page
    r = admin.post(send, data={"csrf_token": csrf(admin, f"/admin/campaigns/{campaign.id}")})
    db_session.rollback()
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.RUNNING


def test_owner_mode_checks_every_sender_identity(admin, db_session, make_contacts) -> None:  # noqa: F811
    make_contacts(1)
    db_session.add(Sender(name="Ben", email="ben@gmail.com"))
    db_session.commit()
    r = admin.post("/admin/campaigns/new", data=_composer_form(admin, sender="owner"), follow_redirects=True)
    assert "ben@gmail.com is DKIM-signed for shop.test only" in html.unescape(r.get_data(as_text=True))


def test_sending_domains_page_shows_what_dns_has_and_what_to_publish(admin, app, runtime, db_session) -> None:  # noqa: F811
    from campaigns.accounts.dkim_keys import dkim_overview

    db_session.add(Sender(name="Someone", email="someone@gmail.com", allow_unaligned=True))
    db_session.commit()
    (key,), _pending = dkim_overview(db_session, runtime.settings)
    assert key.record_name == "s2026._domainkey.shop.test"
    published = {"shop.test": ["v=spf1 mx -all", "google-site-verification=abc"],
                 "_dmarc.gmail.com": ["v=DMARC1; p=none; rua=mailto:dmarc@gmail.com"]}
    asked: list[str] = []

    def resolve(name: str) -> list[str]:
        asked.append(name)
        if name not in published:
            raise LookupError(name)
        return published[name]

    def sections() -> dict[str, str]:
        page = html.unescape(admin.get("/admin/settings/domains").get_data(as_text=True))
        parts = page.split('<section class="card domain-report"')[1:]
        return {part.split("<code>")[1].split("</code>")[0]: part for part in parts}

    app.config["RAPPORT_DNS_TXT_RESOLVER"] = resolve
    found = sections()
    assert set(found) == {"shop.test", "gmail.com"}
    assert {"shop.test", key.record_name, "_dmarc.shop.test", "_dmarc.gmail.com"} <= set(asked)
    shop = found["shop.test"]
    assert "v=spf1 mx -all" in shop and "google-site-verification" not in shop
    assert f'{key.record_name}. IN TXT "{key.txt_value}"' in shop           # not published yet: what to publish
    assert '_dmarc.shop.test. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@shop.test"' in shop
    assert "records missing" in shop.split("</h2>")[0]
    gmail = found["gmail.com"]
    assert "DMARC fails" in gmail and "v=DMARC1; p=none; rua=mailto:dmarc@gmail.com" in gmail

    published[key.record_name] = [key.txt_value]
    published["_dmarc.shop.test"] = ["v=DMARC1; p=quarantine"]
    shop = sections()["shop.test"]
    assert "ready" in shop.split("</h2>")[0] and "Publish:" not in shop
