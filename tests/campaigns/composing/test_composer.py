"""The campaign composer through HTTP and the real worker: starters, live preview with line-numbered problems,
compliance of marketing mail, sender identities (the contact's account owner), test sends as a contact."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from sqlalchemy import select

from campaigns.composing import editor as campaign_service
from campaigns.composing import starters as starter_service
from campaigns.coupons import pools as coupon_service
from campaigns.models import Campaign, CampaignStatus, Contact, Sender
from mailer.compose import CampaignSource, compile_campaign
from tests.campaigns.web import test_admin

admin_user, logged_in, csrf = test_admin.admin_user, test_admin.logged_in, test_admin.csrf   # shared fixtures

OWN_FOOTER_WITHOUT_ADDRESS = """<mjml><mj-body>
<mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}: 20% off this week.</mj-text>
<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
</mj-column></mj-section>
</mj-body></mjml>"""

FOOTER_HIDDEN_BEHIND_A_CONDITION = """<mjml><mj-body>
<mj-section><mj-column>
<mj-text>Big sale {{ sender.postal_address }}</mj-text>
{% if contact.first_name == "nobody" %}<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>{% endif %}
</mj-column></mj-section>
</mj-body></mjml>"""


def form(token: str, **fields) -> dict:
    data = {"name": "Spring", "kind": "nurture", "subject": "Hello {{ contact.first_name }}", "mjml": "",
            "sender": "default", "csrf_token": token}
    data.update(fields)
    return data


def test_every_starter_compiles_to_a_compliant_marketing_mail_with_the_footer() -> None:
    sender = campaign_service.sender_context("Anna Becker", "anna@shop.test", "Green Thumb, Lindenstraße 1, Berlin")
    keys = [s.key for s in starter_service.starters()]
    assert {"blank", "newsletter", "coupon", "event", "survey", "holiday"} <= set(keys)
    # What the coupon and survey starters are attached to (a pool, a survey), as a test message gets them.
    extras = {"coupon": dict(coupon_service.SAMPLE, value="10% off", expires="1 January 2030"),
              "survey_block": lambda: "How are we doing?"}
    for starter in starter_service.starters():
        result = compile_campaign(CampaignSource(mjml=starter.mjml, subject=starter.subject or "Hi",
                                                 preheader=starter.preheader))
        campaign_service.check_compliance("marketing", result, sender, extras)   # raises when not compliant
        links = result.links
        html = result.render({**extras, "contact": {"first_name": "Ana"}, "sender": sender,
                              "unsubscribe_url": "https://u/x", "preferences_url": "https://p/x"},
                             lambda i, links=links: links[i], "").html
        assert "Lindenstraße 1" in html and 'href="https://u/x"' in html, starter.key
        assert "Ana" in html, starter.key


def test_new_campaign_offers_starters_and_prefills_the_editor(logged_in) -> None:
    page = logged_in.get("/admin/campaigns/new").get_data(as_text=True)
    for title in ("Newsletter", "Coupon", "Event invitation", "Survey", "Holiday greeting"):
        assert title in page
    editor = logged_in.get("/admin/campaigns/new?starter=event").get_data(as_text=True)
    assert "Reserve my place" in editor and "you&#39;re invited" in editor
    assert 'data-preview-url="/admin/campaigns/preview"' in editor
    assert re.search(r'<iframe class="desktop" sandbox', editor)
    assert re.search(r'<iframe class="mobile" sandbox', editor)
    r = logged_in.get("/admin/campaigns/new?starter=../../etc/passwd", follow_redirects=True)
    assert r.status_code == 200 and "no such starter" in r.get_data(as_text=True)


def test_live_preview_reports_lines_and_renders_as_the_chosen_contact(logged_in, make_contacts) -> None:
    make_contacts(3)
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    broken = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n<mj-text>Hi</mj-column>\n</mj-section></mj-body></mjml>"
    out = logged_in.post("/admin/campaigns/preview", data=form(token, mjml=broken)).get_json()
    assert not out["ok"] and out["url"] is None
    assert out["errors"][0]["line"] == 5 and "mj-text" in out["errors"][0]["message"]
    bad_jinja = "<mjml><mj-body><mj-section><mj-column>\n\n<mj-text>{{ contact.first_name </mj-text>" \
                "</mj-column></mj-section></mj-body></mjml>"
    out = logged_in.post("/admin/campaigns/preview", data=form(token, mjml=bad_jinja)).get_json()
    assert out["errors"][0]["line"] == 3

    good = broken.replace("<mj-text>Hi</mj-column>", "<mj-text>Hi {{ contact.first_name }}</mj-text></mj-column>")
    out = logged_in.post("/admin/campaigns/preview",
                         data=form(token, mjml=good, contact="PERSON1@example.com")).get_json()
    assert out["ok"] and out["contact"] == "person1@example.com" and out["subject"] == "Hello Jürgen1"
    assert "Hi Jürgen1" in out["text"] and "Unsubscribe" in out["text"]        # the generated plain text
    body = logged_in.get(out["url"])
    assert "sandbox" in body.headers["Content-Security-Policy"] and "script-src" not in body.headers[
        "Content-Security-Policy"]
    assert "Hi Jürgen1" in body.get_data(as_text=True)
    # An edited plain-text part wins over the generated one, and is personalized too.
    out = logged_in.post("/admin/campaigns/preview", data=form(
        token, mjml=good, text_body="Plain {{ contact.first_name }}", contact="person2@example.com")).get_json()
    assert out["text"].strip() == "Plain Ana2"
    # Someone else's (or an expired) preview token shows nothing of the content.
    assert "expired" in logged_in.get("/admin/campaigns/preview/not-a-token").get_data(as_text=True)
    assert logged_in.post("/admin/campaigns/preview", data={"mjml": good}).status_code == 400   # no CSRF token


def test_browser_line_ends_are_accepted_and_stored_as_lf(logged_in, db_session, make_contacts) -> None:
    topic, _ = make_contacts(1)
    token = csrf(logged_in, "/admin/campaigns/new?starter=newsletter")
    crlf = starter_service.starter("newsletter").mjml.replace("\n", "\r\n")   # what a browser's textarea posts
    out = logged_in.post("/admin/campaigns/preview", data=form(token, mjml=crlf)).get_json()
    assert out["ok"], out["errors"]
    r = logged_in.post("/admin/campaigns/new", data=form(token, mjml=crlf, text_body="a\r\nb", topics=[topic.id]),
                       follow_redirects=True)
    assert "Campaign saved." in r.get_data(as_text=True)
    campaign = db_session.scalar(select(Campaign))
    assert "\r" not in campaign.mjml and campaign.text_body == "a\nb"


def test_contact_picker_finds_by_address_or_name_prefix(logged_in, make_contacts) -> None:
    make_contacts(12)
    found = logged_in.get("/admin/campaigns/contacts.json?q=PERSON1").get_json()
    assert {c["email"] for c in found} == {"person1@example.com", "person10@example.com", "person11@example.com"}
    assert [c["email"] for c in logged_in.get("/admin/campaigns/contacts.json?q=zoë8").get_json()] == [
        "person8@example.com"]
    assert logged_in.get("/admin/campaigns/contacts.json?q=%25_%5C").get_json() == []   # LIKE wildcards are literal


@pytest.mark.parametrize("mjml, needs", [(OWN_FOOTER_WITHOUT_ADDRESS, "postal address"),
                                         (FOOTER_HIDDEN_BEHIND_A_CONDITION, "unsubscribe link")])
def test_marketing_without_postal_address_or_unsubscribe_link_is_refused(
        logged_in, db_session, make_contacts, mjml, needs) -> None:
    topic, _ = make_contacts(2)
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    out = logged_in.post("/admin/campaigns/preview", data=form(token, kind="marketing", mjml=mjml)).get_json()
    assert not out["ok"] and needs in out["errors"][0]["message"] and out["url"]   # still previewable
    r = logged_in.post("/admin/campaigns/new", data=form(token, kind="marketing", mjml=mjml, topics=[topic.id]),
                       follow_redirects=True)
    assert "cannot be sent yet" in r.get_data(as_text=True) and needs in r.get_data(as_text=True)
    campaign = db_session.scalar(select(Campaign))
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token}, follow_redirects=True)
    assert needs in r.get_data(as_text=True)
    db_session.rollback()
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.DRAFT
    # The same content as nurture mail is fine: only marketing mail is held to this.
    out = logged_in.post("/admin/campaigns/preview", data=form(token, kind="nurture", mjml=mjml)).get_json()
    assert out["ok"], out["errors"]


def test_marketing_is_refused_without_a_configured_postal_address(runtime, db_session, make_contacts) -> None:
    from dataclasses import replace

    from campaigns.sending import scheduling
    from campaigns.sending.delivery import CampaignMailer  # noqa: F401 - the check runs where the mailer is built

    topic, _ = make_contacts(1)
    campaign = campaign_service.save_campaign(db_session, {"name": "Sale", "kind": "marketing", "subject": "Sale",
                                                           "mjml": (starter_service.STARTER_DIR / "holiday.mjml")
                                                           .read_text()}, topic_ids=[topic.id])
    db_session.commit()
    runtime.settings = replace(runtime.settings, postal_address="")
    with pytest.raises(campaign_service.ValidationError, match="postal address"):
        scheduling.ready_to_send(db_session, runtime, campaign)


def test_survey_and_coupon_campaigns_preview_and_pass_the_marketing_check(
        logged_in, runtime, db_session, make_contacts) -> None:
    import datetime as dt

    from campaigns.models import CouponPool, Survey, SurveyQuestion
    from campaigns.sending import scheduling

    topic, contacts = make_contacts(1)
    survey = Survey(name="How did we do?")
    survey.questions = [SurveyQuestion(position=0, kind="yes_no", prompt="Did the seeds sprout?")]
    pool = CouponPool(name="Spring", value_description="10% off", expires_on=dt.date.today() + dt.timedelta(days=30))
    db_session.add_all([survey, pool])
    db_session.commit()
    mjml = starter_service.BLANK_MJML.replace(
        "Write your message here.", "{{ survey_block() }} Code {{ coupon.code }}, valid until {{ coupon.expires }}")
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    out = logged_in.post("/admin/campaigns/preview", data=form(token, kind="marketing", mjml=mjml, survey_id=str(
        survey.id), coupon_pool_id=str(pool.id))).get_json()
    assert out["ok"], out["errors"]
    html = logged_in.get(out["url"]).get_data(as_text=True)
    assert "Did the seeds sprout?" in html and "/s/" in html and "Code SAMPLE-CODE" in html
    campaign = campaign_service.save_campaign(db_session, {"name": "Q", "kind": "marketing", "subject": "Q",
                                                           "mjml": mjml, "survey_id": str(survey.id),
                                                           "coupon_pool_id": str(pool.id)},
                                              topic_ids=[topic.id])
    db_session.commit()
    scheduling.ready_to_send(db_session, runtime, campaign)      # the sending path's check passes too
    saved = logged_in.get(f"/admin/campaigns/{campaign.id}/preview").get_data(as_text=True)
    assert "Did the seeds sprout?" in saved


def test_mail_from_the_contacts_account_owner(logged_in, db_session, make_contacts, outbox, run_worker) -> None:
    anna = Sender(name="Anna Becker", email="anna@shop.test", title="Customer care", reply_to="care@shop.test")
    ben = Sender(name="Ben Koch", email="ben@shop.test")
    db_session.add_all([anna, ben])
    topic, contacts = make_contacts(3)
    contacts[0].owner_id, contacts[1].owner_id = anna.id, ben.id        # contacts[2] has no owner
    db_session.commit()
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    mjml = starter_service.BLANK_MJML.replace("Write your message here.", "Yours, {{ sender.name }}")
    out = logged_in.post("/admin/campaigns/preview", data=form(token, mjml=mjml, sender="owner",
                                                               contact=contacts[0].email)).get_json()
    assert out["from"] == "Anna Becker <anna@shop.test>" and "Yours, Anna Becker" in out["text"]
    logged_in.post("/admin/campaigns/new", data=form(token, mjml=mjml, sender="owner", topics=[topic.id]))
    campaign = db_session.scalar(select(Campaign))
    assert campaign.from_email == campaign_service.FROM_OWNER
    editor = logged_in.get(f"/admin/campaigns/{campaign.id}/edit").get_data(as_text=True)
    assert re.search(r'<option value="owner" selected', editor)

    r = logged_in.post(f"/admin/campaigns/{campaign.id}/test", data={
        "addresses": "boss@example.com", "as_contact": contacts[1].email, "csrf_token": token}, follow_redirects=True)
    assert f"as {contacts[1].email}" in r.get_data(as_text=True)
    test_msg = email.message_from_bytes(outbox.get(outbox.list()[0].key).raw, policy=email.policy.default)
    assert test_msg["From"] == "Ben Koch <ben@shop.test>" and test_msg["Subject"] == "[Test] Hello Jürgen1"

    logged_in.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token})
    run_worker()
    got = {m.recipients[0]: email.message_from_bytes(m.raw, policy=email.policy.default)
           for m in (outbox.get(e.key) for e in outbox.list()) if m.recipients[0] != "boss@example.com"}
    assert got[contacts[0].email]["From"] == "Anna Becker <anna@shop.test>"
    assert got[contacts[0].email]["Reply-To"] == "care@shop.test"
    assert "Yours, Anna Becker" in got[contacts[0].email].get_body(("plain",)).get_content()
    assert got[contacts[1].email]["From"] == "Ben Koch <ben@shop.test>"
    assert got[contacts[2].email]["From"] == "Green Thumb <news@shop.test>"      # no owner: the default sender


def test_a_named_sender_identity_and_bad_sender_input(logged_in, db_session, make_contacts) -> None:
    anna = Sender(name="Anna Becker", email="anna@shop.test", reply_to="care@shop.test")
    db_session.add(anna)
    db_session.commit()
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    logged_in.post("/admin/campaigns/new", data=form(token, mjml=starter_service.BLANK_MJML,
                                                     sender=f"sender:{anna.id}"))
    campaign = db_session.scalar(select(Campaign))
    assert (campaign.from_name, campaign.from_email, campaign.reply_to) == ("Anna Becker", "anna@shop.test",
                                                                            "care@shop.test")
    editor = logged_in.get(f"/admin/campaigns/{campaign.id}/edit").get_data(as_text=True)
    assert re.search(rf'<option value="sender:{anna.id}" selected', editor)
    r = logged_in.post("/admin/campaigns/new", data=form(token, sender="sender:999", mjml="x", name="Kept name"))
    assert r.status_code == 400 and "no longer exists" in r.get_data(as_text=True)
    assert "Kept name" in r.get_data(as_text=True)                          # nothing typed is lost
    r = logged_in.post("/admin/campaigns/new", data=form(token, sender="custom", from_email="not an address"))
    assert r.status_code == 400 and "not a valid email address" in r.get_data(as_text=True)
    r = logged_in.post("/admin/campaigns/new", data=form(token, name="x" * 300))
    assert r.status_code == 400 and "longer than 200" in r.get_data(as_text=True)


def test_test_send_as_an_unknown_contact_sends_nothing(logged_in, db_session, make_contacts, outbox) -> None:
    topic, _ = make_contacts(1)
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    logged_in.post("/admin/campaigns/new", data=form(token, mjml=starter_service.BLANK_MJML, topics=[topic.id]))
    campaign = db_session.scalar(select(Campaign))
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/test", data={
        "addresses": "boss@example.com", "as_contact": "ghost@example.com", "csrf_token": token}, follow_redirects=True)
    assert "There is no contact ghost@example.com" in r.get_data(as_text=True)
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/test", data={"addresses": ", ".join(
        f"a{i}@example.com" for i in range(11)), "csrf_token": token}, follow_redirects=True)
    assert "at most 10" in r.get_data(as_text=True)
    assert outbox.count() == 0
    assert db_session.scalar(select(Contact).where(Contact.email == "ghost@example.com")) is None


def test_missing_campaigns_are_404_not_500(logged_in) -> None:
    token = csrf(logged_in, "/admin/campaigns")
    for url in ("/admin/campaigns/999", "/admin/campaigns/999/edit", "/admin/campaigns/999/progress",
                "/admin/campaigns/999/report", "/admin/campaigns/999/report.json", "/admin/campaigns/999/preview"):
        assert logged_in.get(url).status_code == 404, url
    for url in ("/admin/campaigns/999/send", "/admin/campaigns/999/test", "/admin/campaigns/999/schedule"):
        assert logged_in.post(url, data={"csrf_token": token}).status_code == 404, url


def test_a_test_sent_as_a_contact_cannot_unsubscribe_or_edit_that_contact(logged_in, db_session, make_contacts,
                                                                         outbox, app) -> None:
    """The test goes to a colleague: its unsubscribe, one-click and preference links must not act for the contact
    whose name and data it borrows."""
    topic, contacts = make_contacts(1)
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    logged_in.post("/admin/campaigns/new", data=form(token, mjml=starter_service.BLANK_MJML, topics=[topic.id]))
    campaign = db_session.scalar(select(Campaign))
    logged_in.post(f"/admin/campaigns/{campaign.id}/test", data={
        "addresses": "boss@example.com", "as_contact": contacts[0].email, "csrf_token": token})
    msg = email.message_from_bytes(outbox.get(outbox.list()[0].key).raw, policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()
    assert "Zoë0" in html                                       # still personalised as the contact
    base = app.extensions["rapport"].settings.base_url
    unsubscribe = re.search(r'href="[^"]*(/u/[^"]+)"', html).group(1)
    preferences = re.search(r'href="[^"]*(/p/[^"]+)"', html).group(1)
    assert msg["List-Unsubscribe"].startswith(f"<{base}{unsubscribe}>")
    recipient = app.test_client()                               # the colleague: not logged in
    page = recipient.get(unsubscribe).get_data(as_text=True)
    assert "This was a test message" in page and contacts[0].email not in page
    assert recipient.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert recipient.post(unsubscribe, data={"scope": "all"}).status_code == 200
    prefs = recipient.get(preferences)
    assert prefs.status_code == 200 and "This was a test message" in prefs.get_data(as_text=True)
    assert contacts[0].email not in prefs.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(Contact, contacts[0].id).status == "subscribed"


def test_a_campaign_without_an_audience_says_so_before_anyone_presses_send(logged_in, db_session) -> None:
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    logged_in.post("/admin/campaigns/new", data=form(token, mjml=starter_service.BLANK_MJML))
    campaign = db_session.scalar(select(Campaign))
    page = logged_in.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Cannot be sent yet: nobody would get it" in page
    assert re.search(r"<button type=\"submit\" disabled>Send now</button>", page)
    assert re.search(r"<button type=\"submit\" disabled>Schedule</button>", page)
