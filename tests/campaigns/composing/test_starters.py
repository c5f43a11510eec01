"""Starters use what they are attached to, and a campaign that does not show its coupon or survey cannot be sent:
through the composer, test sends, the campaign page and the real worker."""

from __future__ import annotations

import datetime as dt
import html
import re
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from campaigns.composing import starters as starter_service
from campaigns.coupons import codes, redemption
from campaigns.coupons import pools as coupon_service
from campaigns.models import Campaign, CampaignStatus, CouponCode, Survey
from campaigns.surveys import service as survey_service
from tests.helpers import csrf, fresh

STARTERS = [s.key for s in starter_service.starters()]
SURVEY_LINK = re.compile(r"https?://[^\s\"'<>]+/s/[A-Za-z0-9_-]+")


def make_pool(session, n: int = 10, name: str = "Autumn thank-you"):
    pool = coupon_service.save_pool(session, {"name": name, "value_description": "15% off your next order",
                                              "expires_on": dt.date.today() + dt.timedelta(days=40)})
    session.commit()
    codes.import_codes(session, pool.id, ("code\n" + "\n".join(f"GT-{i:04d}Q" for i in range(n))).encode())
    session.commit()
    return pool


def make_survey(session) -> Survey:
    survey = survey_service.save_survey(session, {"name": "How was your order?"}, [
        {"prompt": "How happy are you with your last order?", "kind": "rating"},
        {"prompt": "Anything we could do better?", "kind": "text"}])
    session.commit()
    return survey


def composer_form(client, starter: starter_service.Starter, topic_id: int, **fields: str) -> dict:
    """The composer's form as it comes filled from a starter."""
    data = {"name": f"From the {starter.key} starter", "kind": starter.kind, "subject": starter.subject or "Hello",
            "preheader": starter.preheader, "mjml": starter.mjml, "text_body": "", "sender": "default",
            "topics": str(topic_id), "csrf_token": csrf(client, "/admin/campaigns/new?starter=blank")}
    data.update(fields)
    return data


def save(client, data: dict):
    """Post the composer; returns (campaign id, the page it leads to)."""
    r = client.post("/admin/campaigns/new", data=data)
    assert r.status_code == 302, r.get_data(as_text=True)
    campaign_id = int(r.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    return campaign_id, client.get(r.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize("key", STARTERS)
def test_every_starter_sent_as_a_test_renders_the_pool_and_survey_it_supports(
        key, editor, db_session, make_contacts, outbox) -> None:
    starter = starter_service.starter(key)
    topic, _ = make_contacts(1)
    pool, survey = make_pool(db_session), make_survey(db_session)
    uses_pool, uses_survey = "coupon." in starter.mjml, "survey_" in starter.mjml
    # Fresh from the chooser nothing is attached yet: the composer names what to choose.
    out = editor.post("/admin/campaigns/preview", data=composer_form(editor, starter, topic.id)).get_json()
    messages = " ".join(e["message"] for e in out["errors"])
    assert ("no coupon pool is chosen: choose the pool" in messages) == uses_pool, messages
    assert ("no survey is chosen: choose the survey" in messages) == uses_survey, messages
    # ... and only that, not a second error of the template engine, while the preview shows the rest of the mail.
    assert "undefined" not in messages and out["url"], out
    fields = {"coupon_pool_id": str(pool.id) if uses_pool else "", "survey_id": str(survey.id) if uses_survey else ""}
    campaign_id, page = save(editor, composer_form(editor, starter, topic.id, **fields))
    assert "cannot be sent yet" not in page, page
    r = editor.post(f"/admin/campaigns/{campaign_id}/test", data={
        "addresses": "boss@example.com", "csrf_token": csrf(editor, f"/admin/campaigns/{campaign_id}")},
        follow_redirects=True)
    assert "Test sent to boss@example.com" in r.get_data(as_text=True)
    msg = outbox.get(outbox.list(limit=1)[0].key)
    expires = f"{pool.expires_on.day} {pool.expires_on:%B %Y}"
    for part in (msg.html, msg.text):
        assert ("SAMPLE-CODE" in part and expires in part) == uses_pool, (key, part)
        assert bool(SURVEY_LINK.search(part)) == uses_survey, (key, part)
    assert "AUTUMN15" not in msg.html + msg.text and "greenthumb.example/feedback" not in msg.html
    if uses_pool:
        assert "15% off your next order" in msg.html
    if uses_survey:
        assert "How happy are you with your last order?" in msg.html and "How happy" in msg.text

    # The same starter attached to what it does not show is refused before sending, naming the fix.
    if not uses_pool:
        campaign = db_session.get(Campaign, campaign_id)
        campaign.coupon_pool_id = pool.id
        db_session.commit()
        token = csrf(editor, f"/admin/campaigns/{campaign_id}")
        assert "{{ coupon.code }}" in html.unescape(editor.get(f"/admin/campaigns/{campaign_id}").get_data(
            as_text=True))
        r = editor.post(f"/admin/campaigns/{campaign_id}/send", data={"csrf_token": token}, follow_redirects=True)
        assert "add {{ coupon.code }}" in html.unescape(r.get_data(as_text=True))
        assert fresh(db_session).get(Campaign, campaign_id).status == CampaignStatus.DRAFT


def test_coupon_starter_gives_each_recipient_their_own_code_through_the_worker(
        editor, db_session, make_contacts, outbox, work) -> None:
    topic, contacts = make_contacts(5)
    pool = make_pool(db_session, 8)
    campaign_id, page = save(editor, composer_form(editor, starter_service.starter("coupon"), topic.id,
                                                   coupon_pool_id=str(pool.id)))
    assert "cannot be sent yet" not in page
    r = editor.post(f"/admin/campaigns/{campaign_id}/send",
                    data={"csrf_token": csrf(editor, f"/admin/campaigns/{campaign_id}")})
    assert r.status_code == 302
    work()
    fresh(db_session)
    assigned = {c.contact_id: c.code for c in db_session.scalars(
        select(CouponCode).where(CouponCode.campaign_id == campaign_id))}
    by_email = {c.email: assigned[c.id] for c in contacts}
    assert len(set(by_email.values())) == 5
    expires = f"{pool.expires_on.day} {pool.expires_on:%B %Y}"
    entries = outbox.list(limit=50)
    assert len(entries) == 5
    for entry in entries:
        msg = outbox.get(entry.key)
        code = by_email[msg.recipients[0]]
        assert msg.subject == "A thank-you: 15% off your next order"
        for part in (msg.html, msg.text):
            assert code in part and expires in part
        # The button takes the recipient's own code to the shop, through the click redirect (a personalised link
        # on a fixed site is tracked: the redirect renders it for this recipient).
        buttons = [html.unescape(h) for h in re.findall(r'href="([^"]+/c/[^"]+)"', msg.html)]
        targets = {unquote(editor.get("/" + b.split("/", 3)[3]).headers.get("Location", "")) for b in buttons}
        assert f"https://greenthumb.example/shop?code={code}" in targets
        assert redemption.find_code(db_session, code)[0].contact_id is not None


def test_a_pool_or_survey_the_content_never_shows_is_named_in_the_composer_and_stops_the_send(
        editor, db_session, make_contacts, outbox) -> None:
    topic, _ = make_contacts(2)
    pool, survey = make_pool(db_session), make_survey(db_session)
    newsletter = starter_service.starter("newsletter")
    # The live preview lists the problem with its fix.
    data = composer_form(editor, newsletter, topic.id, coupon_pool_id=str(pool.id), survey_id=str(survey.id))
    out = editor.post("/admin/campaigns/preview", data=data).get_json()
    messages = " ".join(e["message"] for e in out["errors"])
    assert not out["ok"]
    assert "coupon pool “Autumn thank-you”" in messages and "add {{ coupon.code }}" in messages
    assert "survey “How was your order?”" in messages and "add {{ survey_block() }}" in messages
    # Saving keeps the draft and says why it cannot be sent; sending and test sends refuse with the fix.
    campaign_id, page = save(editor, data)
    page = html.unescape(page)
    assert "Saved, but it cannot be sent yet" in page and "{{ coupon.code }}" in page
    token = csrf(editor, f"/admin/campaigns/{campaign_id}")
    r = editor.post(f"/admin/campaigns/{campaign_id}/send", data={"csrf_token": token}, follow_redirects=True)
    assert "add {{ survey_block() }}" in html.unescape(r.get_data(as_text=True))
    r = editor.post(f"/admin/campaigns/{campaign_id}/test", data={"addresses": "boss@example.com",
                                                                  "csrf_token": token}, follow_redirects=True)
    assert "add {{ coupon.code }}" in html.unescape(r.get_data(as_text=True))
    assert outbox.count() == 0
    assert fresh(db_session).get(Campaign, campaign_id).status == CampaignStatus.DRAFT

    # A code without its expiry in the own plain-text part is named too.
    mjml = newsletter.mjml.replace("Happy gardening,", "Your code {{ coupon.code }}, valid until {{ coupon.expires }}."
                                   "{{ survey_block() }} Happy gardening,")
    data = composer_form(editor, newsletter, topic.id, mjml=mjml, coupon_pool_id=str(pool.id),
                         survey_id=str(survey.id),
                         text_body="Hello! Your code: {{ coupon.code }}\n{{ survey_block() }}")
    out = editor.post("/admin/campaigns/preview", data=data).get_json()
    assert [e["message"] for e in out["errors"]] == [
        "this campaign draws a code per recipient from the coupon pool “Autumn thank-you”, but its plain-text part "
        "does not show the recipient's expiry date: add {{ coupon.code }} and “valid until {{ coupon.expires }}” to "
        "the plain-text part (or choose no pool)"]


def test_a_template_that_fails_for_the_sample_contact_cannot_be_sent(
        editor, db_session, make_contacts, outbox) -> None:
    topic, _ = make_contacts(2)     # every real contact has a first name: only the sample contact has none
    mjml = starter_service.BLANK_MJML.replace("Write your message here.",
                                               "{{ 100 // contact.first_name|length }} points for you.")
    campaign_id, page = save(editor, composer_form(editor, starter_service.starter("blank"), topic.id, mjml=mjml))
    assert "fails for a sample contact" in html.unescape(page)
    r = editor.post(f"/admin/campaigns/{campaign_id}/send",
                    data={"csrf_token": csrf(editor, f"/admin/campaigns/{campaign_id}")}, follow_redirects=True)
    assert "fails for a sample contact" in r.get_data(as_text=True)
    assert fresh(db_session).get(Campaign, campaign_id).status == CampaignStatus.DRAFT
    assert outbox.count() == 0


def test_a_pool_that_has_expired_is_named_in_the_composer_and_refuses_the_send(
        editor, db_session, make_contacts, outbox) -> None:
    topic, _ = make_contacts(1)
    pool = make_pool(db_session)
    campaign_id, _page = save(editor, composer_form(editor, starter_service.starter("coupon"), topic.id,
                                                    coupon_pool_id=str(pool.id)))
    pool.expires_on = dt.date.today() - dt.timedelta(days=2)
    db_session.commit()
    data = composer_form(editor, starter_service.starter("coupon"), topic.id, coupon_pool_id=str(pool.id))
    messages = [e["message"] for e in editor.post("/admin/campaigns/preview", data=data).get_json()["errors"]]
    assert messages == [f"the codes of the coupon pool “Autumn thank-you” expired on {pool.expires_on}: choose "
                        "another pool, or give this one a later “valid until” on its page"]
    r = editor.post(f"/admin/campaigns/{campaign_id}/send",
                    data={"csrf_token": csrf(editor, f"/admin/campaigns/{campaign_id}")}, follow_redirects=True)
    assert "choose another pool" in html.unescape(r.get_data(as_text=True))
    assert fresh(db_session).get(Campaign, campaign_id).status == CampaignStatus.DRAFT and outbox.count() == 0
