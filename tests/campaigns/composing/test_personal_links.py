"""Personalised links are tracked: stored as their template, rendered for the send on click, counted in the report."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import unquote

from sqlalchemy import select

from campaigns.models import Event, Link
from campaigns.sending import lifecycle as sending
from mailer.tracking import Purpose
from tests.campaigns.coupons.test_coupons import make_pool

SHOP_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, your code: CODE[{{ coupon.code }}], valid until {{ coupon.expires }}</mj-text>
<mj-button href="https://shop.test/shop?code={{ coupon.code }}&amp;who={{ contact.first_name }}">Shop now</mj-button>
<mj-text><a href="https://{{ contact.first_name }}.shop.test/">not tracked: the site is templated</a>
<a href="https://shop.test/static">static</a></mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def test_a_coupon_link_is_tracked_and_goes_to_the_recipients_own_url(runtime, client, db_session, make_contacts,
                                                                     outbox, run_worker) -> None:
    from campaigns.composing.editor import save_campaign

    topic, contacts = make_contacts(2)
    pool = make_pool(db_session, ["GT-AAA111", "GT-BBB222"])
    campaign = save_campaign(db_session, {"name": "Coupon", "kind": "nurture", "subject": "A thank-you",
                                          "mjml": SHOP_MJML, "coupon_pool_id": str(pool.id)}, topic_ids=[topic.id])
    db_session.commit()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    links = db_session.scalars(select(Link.url).where(Link.campaign_id == campaign.id).order_by(Link.position)).all()
    assert links == ["https://shop.test/shop?code={{ coupon.code }}&who={{ contact.first_name }}",
                     "https://shop.test/static"]
    for entry in outbox.list():
        msg = outbox.get(entry.key)
        contact = next(c for c in contacts if c.email == msg.recipients[0])
        code = re.search(r"CODE\[([A-Z0-9-]+)\]", msg.html).group(1)
        hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', msg.html)]
        assert not [h for h in hrefs if "shop.test/shop" in h]            # the coupon link is tracked now
        assert f"https://{contact.first_name}.shop.test/" in hrefs         # a templated site is left alone
        button = unescape(re.search(r'<a href="(https://mail\.shop\.test/c/[^"]+)"[^>]*>\s*Shop now',
                                    msg.html).group(1))
        r = client.get("/" + button.split("/", 3)[3])
        assert r.status_code == 302
        assert unquote(r.headers["Location"]) == f"https://shop.test/shop?code={code}&who={contact.first_name}"
    db_session.rollback()   # hold no read snapshot while the worker writes the events
    run_worker()
    clicks = db_session.scalars(select(Event).where(Event.type == "click", Event.campaign_id == campaign.id)).all()
    assert sorted(e.contact_id for e in clicks) == sorted(c.id for c in contacts)


def test_a_test_send_click_goes_to_the_sample_url_and_records_nothing(runtime, client, db_session,
                                                                       make_contacts) -> None:
    from campaigns.composing.editor import save_campaign

    topic, _contacts = make_contacts(1)
    pool = make_pool(db_session, ["GT-AAA111"])
    campaign = save_campaign(db_session, {"name": "Coupon", "subject": "s", "mjml": SHOP_MJML,
                                          "coupon_pool_id": str(pool.id)}, topic_ids=[topic.id])
    db_session.commit()
    from campaigns.composing.editor import compiled, ensure_links

    link_ids = ensure_links(db_session, campaign, compiled(campaign))
    db_session.commit()
    r = client.get(f"/c/{runtime.tokens.seal(Purpose.CLICK, 0, link_ids[0])}")
    assert r.status_code == 302 and r.headers["Location"].startswith("https://shop.test/shop?code=SAMPLE-CODE&who=")
    # A send id that is not of this campaign cannot borrow its link.
    assert client.get(f"/c/{runtime.tokens.seal(Purpose.CLICK, 10**6, link_ids[0])}").status_code == 404


def test_the_composer_lists_which_links_are_tracked() -> None:
    from campaigns.composing.editor import SAMPLE_CONTACT
    from campaigns.composing.preview import preview
    from mailer.compose import CampaignSource

    out = preview(CampaignSource(mjml=SHOP_MJML.replace("</mj-text>\n</mj-column>",
                                                        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>'
                                                        "\n</mj-column>"), subject="s"),
                  "nurture", {"name": "n", "email": "e@shop.test", "postal_address": "1 Main St"},
                  SAMPLE_CONTACT, {"coupon": {"code": "SAMPLE"}})
    report = {item["url"]: item for item in out.as_json()["links"]}
    shop = "https://shop.test/shop?code={{ coupon.code }}&who={{ contact.first_name }}"
    assert report[shop]["tracked"] and "personalised" in report[shop]["note"]
    assert report["https://shop.test/static"] == {"url": "https://shop.test/static", "tracked": True,
                                                  "note": "tracked"}
    assert not report["https://{{ contact.first_name }}.shop.test/"]["tracked"]
    assert "site name" in report["https://{{ contact.first_name }}.shop.test/"]["note"]
    assert not report["{{ unsubscribe_url }}"]["tracked"]
