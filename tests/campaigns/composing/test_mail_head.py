"""Every mail has a real <title> and declares its colour scheme; the coupon starter carries the sender's brand
(issue 17 item 26). Checked on the messages a test send really delivers."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from campaigns.composing import starters as starter_service
from campaigns.demo.data import SURVEY_MJML
from tests.campaigns.composing.test_starters import composer_form, make_pool, make_survey, save
from tests.helpers import csrf

TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL)
CASES = [s.key for s in starter_service.starters()] + ["demo-survey"]


def delivered_html(editor, db_session, make_contacts, outbox, key: str) -> str:
    """Save the starter (or the demo's survey mail) in the composer, send it as a test, return the delivered HTML."""
    if key == "demo-survey":
        starter = SimpleNamespace(key="demo-survey", kind="nurture", mjml=SURVEY_MJML, preheader="",
                                  subject="{{ contact.first_name|default('Hello', true) }}, one quick question")
    else:
        starter = starter_service.starter(key)
    topic, _ = make_contacts(1)
    fields = {"coupon_pool_id": str(make_pool(db_session).id) if "coupon." in starter.mjml else "",
              "survey_id": str(make_survey(db_session).id) if "survey_" in starter.mjml else ""}
    campaign_id, page = save(editor, composer_form(editor, starter, topic.id, **fields))
    assert "cannot be sent yet" not in page, page
    r = editor.post(f"/admin/campaigns/{campaign_id}/test", data={
        "addresses": "boss@example.com", "csrf_token": csrf(editor, f"/admin/campaigns/{campaign_id}")},
        follow_redirects=True)
    assert "Test sent to boss@example.com" in r.get_data(as_text=True)
    return outbox.get(outbox.list(limit=1)[0].key).html


@pytest.mark.parametrize("key", CASES)
def test_every_mail_has_a_title_and_a_colour_scheme(key, editor, db_session, make_contacts, outbox) -> None:
    html = delivered_html(editor, db_session, make_contacts, outbox, key)
    title = TITLE.search(html)
    assert title and title.group(1).strip(), (key, html[:400])
    assert "{{" not in title.group(1) and "{%" not in title.group(1)
    assert '<meta name="color-scheme" content="light">' in html
    assert "supported-color-schemes" in html


def test_a_mail_without_mj_title_is_titled_by_its_personalised_subject(editor, db_session, make_contacts,
                                                                       outbox) -> None:
    html = delivered_html(editor, db_session, make_contacts, outbox, "blank")
    # The blank starter has no <mj-title>: the subject's fixed text is the title ("Hello" in the composer form).
    assert "<mj-title>" not in starter_service.starter("blank").mjml
    assert TITLE.search(html).group(1) == "Hello"


@pytest.mark.parametrize(("subject", "first_name", "title"), [
    ("{{ contact.first_name|default('Hello', true) }}, one quick question", "Ada", "Ada, one quick question"),
    ("{{ contact.first_name|default('Hello', true) }}, one quick question", "", "Hello, one quick question"),
    ("Tom & Jerry's {% if contact.first_name %}news{% endif %}", "Ada", "Tom & Jerry's news"),
])
def test_the_title_is_the_subject_as_the_recipient_reads_it(subject: str, first_name: str, title: str) -> None:
    import html as html_lib

    from mailer.compose import CampaignSource, compile_campaign

    compiled = compile_campaign(CampaignSource(mjml=starter_service.BLANK_MJML, subject=subject))
    ctx = {"contact": {"first_name": first_name}, "sender": {"name": "Shop", "postal_address": "1 Road"},
           "unsubscribe_url": "#", "preferences_url": "#"}
    out = compiled.render(ctx, lambda i: "#", "").html
    assert html_lib.unescape(TITLE.search(out).group(1)) == title


def test_a_subject_that_fails_is_reported_as_the_subject_not_as_the_html() -> None:
    from mailer.compose import CampaignSource, TemplateError, compile_campaign

    compiled = compile_campaign(CampaignSource(mjml=starter_service.BLANK_MJML,
                                               subject="{{ '{:{w}}'.format('a', w=10**9) }}"))
    with pytest.raises(TemplateError, match="^subject: "):
        compiled.render({"contact": {}, "sender": {}}, lambda i: "#", "")


def test_the_coupon_starter_opens_with_the_senders_brand(editor, db_session, make_contacts, outbox) -> None:
    html = delivered_html(editor, db_session, make_contacts, outbox, "coupon")
    assert TITLE.search(html).group(1).startswith("A thank-you from ")
    body = html[html.index("<body"):]
    brand = body.find("A thank-you to our customers")
    assert 0 < brand < body.find("SAMPLE-CODE")
    assert "#78350f" in body.lower()
