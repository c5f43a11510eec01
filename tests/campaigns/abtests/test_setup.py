"""Setting up an A/B test in the admin (bad input refused with the reason, nothing lost), each variant's own
sender, preview and test send, and the per-variant figures (machine opens apart, coupon redemptions)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from campaigns.abtests import figures
from campaigns.models import (
    AbTest,
    AdminUser,
    CouponCode,
    CouponPool,
    Event,
    EventType,
    Link,
    Reply,
    Send,
    SendStatus,
    utcnow,
)
from mailer.tracking import Purpose
from tests.helpers import csrf, fresh

MJML_B = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, variant B speaking. <a href="https://shop.test/b">B's link</a></mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def post(editor, campaign, **fields):
    data = {"csrf_token": csrf(editor, f"/admin/campaigns/{campaign.id}/abtest"), "test_percent": "20",
            "criterion": "human_clicks", "wait_hours": "4", "auto_send": "1", "default_variant": "0", **fields}
    return editor.post(f"/admin/campaigns/{campaign.id}/abtest", data=data)


def test_bad_setups_are_refused_with_the_reason_and_keep_what_was_typed(editor, db_session, make_contacts,
                                                                        make_campaign) -> None:
    topic, _ = make_contacts(2)
    campaign = make_campaign([topic])
    cases = [
        ({}, "fill in at least variant B"),
        ({"subject_1": "B", "test_percent": "95"}, "test share (%): choose between 2 and 90"),
        ({"subject_1": "B", "wait_hours": "soon"}, "decide after (hours): enter a number"),
        ({"subject_1": "B", "criterion": "machine_opens"}, "unknown criterion"),
        ({"subject_1": "B", "criterion": "coupon_redemptions"}, "coupon redemptions can only judge"),
        ({"subject_1": "B", "default_variant": "3"}, "default variant: choose between 0 and 1"),
        ({"mjml_1": "<mjml><mj-body><mj-text>{{ contact.first_name </mj-text></mj-body></mjml>"}, "variant B:"),
        ({"subject_1": "B", "from_name_1": "Shop"}, "variant B: a sender name needs its address too"),
        ({"subject_1": "B", "from_email_1": "not an address"}, "not an address"),
    ]
    for fields, message in cases:
        r = post(editor, campaign, **fields)
        page = r.get_data(True)
        assert r.status_code == 422 and message in page, (fields, page[:3000])
        for value in fields.values():   # what was typed is still in the form
            assert value.replace("<", "&lt;").replace(">", "&gt;") in page or value in page
    assert fresh(db_session).scalar(select(AbTest)) is None


def test_removing_variants_or_the_test_forgets_their_links(editor, db_session, make_contacts, make_campaign) -> None:
    topic, _ = make_contacts(2)
    campaign = make_campaign([topic])
    assert post(editor, campaign, subject_1="B", mjml_1=MJML_B, subject_2="C", mjml_2=MJML_B).status_code == 302

    def positions():
        return sorted(fresh(db_session).scalars(select(Link.position).where(Link.campaign_id == campaign.id)))

    assert positions() == [10_000, 20_000]              # B's and C's one link each (A's are stored at start)
    assert post(editor, campaign, subject_1="B", mjml_1=MJML_B).status_code == 302
    assert positions() == [10_000]
    token = csrf(editor, f"/admin/campaigns/{campaign.id}/abtest")
    assert editor.post(f"/admin/campaigns/{campaign.id}/abtest/remove", data={"csrf_token": token}).status_code == 302
    assert positions() == [] and fresh(db_session).scalar(select(AbTest)) is None


def test_viewers_cannot_set_up_and_a_started_campaign_cannot_change(app, editor, db_session, make_contacts,
                                                                    make_campaign, work) -> None:
    topic, _ = make_contacts(3)
    campaign = make_campaign([topic])
    assert post(editor, campaign, subject_1="B").status_code == 302
    token = csrf(editor, f"/admin/campaigns/{campaign.id}")
    assert editor.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token}).status_code == 302
    r = post(editor, campaign, subject_1="Changed")
    assert r.status_code == 422 and "can no longer be changed" in r.get_data(True)
    assert fresh(db_session).scalar(select(AbTest)).variants[0].subject == "B"
    client = app.test_client()
    db_session.add(AdminUser(email="vic@shop.test", name="Vic", role="viewer",
                             password_hash=generate_password_hash("correct horse battery")))
    db_session.commit()
    client.post("/admin/login", data={"email": "vic@shop.test", "password": "correct horse battery",
                                      "csrf_token": csrf(client, "/admin/login")})
    assert client.get(f"/admin/campaigns/{campaign.id}/abtest").status_code == 200
    token = csrf(client, f"/admin/campaigns/{campaign.id}/abtest")
    r = client.post(f"/admin/campaigns/{campaign.id}/abtest/pick", data={"csrf_token": token, "variant": "1"})
    assert r.status_code == 403
    r = client.post(f"/admin/campaigns/{campaign.id}/abtest", data={"csrf_token": token, "subject_1": "X"})
    assert r.status_code == 403 and fresh(db_session).scalar(select(AbTest)).variants[0].subject == "B"


def test_a_variant_with_its_own_sender_and_content_previews_and_test_sends(runtime, editor, db_session,
                                                                         make_contacts, make_campaign, outbox,
                                                                         work) -> None:
    topic, contacts = make_contacts(20)
    campaign = make_campaign([topic], subject="Plain A")
    r = post(editor, campaign, subject_1="Bold B", mjml_1=MJML_B, from_name_1="Garden Team",
             from_email_1="team@shop.test", test_percent="90")
    assert r.status_code == 302
    preview = editor.get(f"/admin/campaigns/{campaign.id}/abtest/preview/1").get_data(True)
    assert "variant B speaking" in preview and "Content-Security-Policy" not in preview
    assert "variant B speaking" not in editor.get(f"/admin/campaigns/{campaign.id}/abtest/preview/0").get_data(True)
    assert "Cannot preview" in editor.get(f"/admin/campaigns/{campaign.id}/abtest/preview/3").get_data(True)
    token = csrf(editor, f"/admin/campaigns/{campaign.id}/abtest")
    editor.post(f"/admin/campaigns/{campaign.id}/abtest/test",
                data={"csrf_token": token, "variant": "1", "addresses": "proof@example.com"})
    (entry,) = outbox.list()
    test_msg = outbox.get(entry.key)
    assert test_msg.subject == "[Test] Bold B" and "team@shop.test" in dict(test_msg.headers)["From"]

    token = csrf(editor, f"/admin/campaigns/{campaign.id}")
    editor.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token})
    work()
    sends = {s.contact_id: s.variant for s in fresh(db_session).scalars(select(Send))}
    email_of = {c.id: c.email for c in contacts}
    for m in outbox.list(limit=1000):
        msg = outbox.get(m.key)
        if msg.subject.startswith("[Test]"):
            continue
        variant = next(v for cid, v in sends.items() if email_of[cid] == m.recipients[0])
        if variant == 1:
            assert msg.subject == "Bold B" and "Garden Team" in dict(msg.headers)["From"] and "variant B" in msg.html
            assert "https://mail.shop.test/c/" in msg.html      # B's own link, tracked
        else:
            assert msg.subject == "Plain A" and "Anna Becker" in dict(msg.headers)["From"]
            assert "variant B" not in msg.html
    # The web version of a send (a digest's "Read it", the Outbox) shows the variant the contact got.
    for send in fresh(db_session).scalars(select(Send)):
        html = editor.get(f"/m/{runtime.tokens.seal(Purpose.WEB, send.id)}").get_data(True)
        assert ("variant B speaking" in html) == (send.variant == 1)


def test_a_variant_sender_on_a_foreign_domain_stops_the_send_unless_allowed(editor, db_session, make_contacts,
                                                                           make_campaign, outbox) -> None:
    topic, _ = make_contacts(3)
    campaign = make_campaign([topic])
    assert post(editor, campaign, subject_1="B", from_email_1="news@elsewhere.example").status_code == 302
    page = editor.get(f"/admin/campaigns/{campaign.id}").get_data(True)
    assert "Cannot be sent yet: variant B:" in page and "elsewhere.example" in page
    token = csrf(editor, f"/admin/campaigns/{campaign.id}")
    editor.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token})
    assert fresh(db_session).get(type(campaign), campaign.id).status == "draft" and outbox.list() == []


def test_figures_count_people_apart_from_machines_and_redeemed_coupons(db_session, make_contacts,
                                                                        make_campaign) -> None:
    topic, contacts = make_contacts(6)
    campaign = make_campaign([topic])
    pool = CouponPool(name="Spring", value_description="10% off", expires_on=dt.date.today() + dt.timedelta(days=9))
    db_session.add(pool)
    db_session.flush()
    sends = []
    for i, c in enumerate(contacts):
        s = Send(campaign_id=campaign.id, contact_id=c.id, status=SendStatus.SENT, variant=i % 2, sent_at=utcnow())
        db_session.add(s)
        sends.append(s)
    db_session.flush()

    def event(send, type_, machine=False):
        db_session.add(Event(contact_id=send.contact_id, campaign_id=campaign.id, send_id=send.id, type=type_,
                             machine=machine))

    event(sends[0], EventType.OPEN, machine=True)                    # A: a proxy only
    event(sends[2], EventType.OPEN, machine=True)                    # A: a proxy, then the person
    event(sends[2], EventType.OPEN)
    event(sends[2], EventType.CLICK)
    event(sends[2], EventType.CLICK)                                 # the same person twice: one
    event(sends[1], EventType.CLICK, machine=True)                   # B: a scanner
    event(sends[3], EventType.OPEN)                                  # B: a person
    for s, redeemed in ((sends[1], True), (sends[3], False), (sends[4], True)):
        db_session.add(CouponCode(pool_id=pool.id, code=f"C{s.id}", campaign_id=campaign.id,
                                  contact_id=s.contact_id, send_id=s.id, assigned_at=utcnow(),
                                  redeemed_at=utcnow() if redeemed else None))
    for s, auto, key in ((sends[0], True, "ooo"), (sends[3], False, "r1"), (sends[3], False, "r2")):
        db_session.add(Reply(contact_id=s.contact_id, campaign_id=campaign.id, send_id=s.id, auto=auto,
                             dedupe_key=key))                        # A: an out-of-office; B: a person, twice
    db_session.commit()
    a, b = figures.per_variant(db_session, campaign.id, 2)
    assert (a.sent, a.human_opens, a.human_clicks, a.machine_opens, a.coupon_redemptions) == (3, 1, 1, 1, 1)
    assert (b.sent, b.human_opens, b.human_clicks, b.machine_opens, b.coupon_redemptions) == (3, 1, 0, 0, 1)
    assert a.rate("human_clicks") == 1 / 3 and b.count("coupon_redemptions") == 1
    assert (a.count("replies"), b.count("replies")) == (0, 1)


def test_an_ab_test_and_local_time_delivery_refuse_each_other(editor, db_session, make_contacts,
                                                              make_campaign) -> None:
    """The test share goes out at once and is judged after a set time: it cannot also wait for each reader's 09:00."""
    topic, _ = make_contacts(2)
    local = make_campaign([topic])
    local.local_time = "09:00"
    db_session.commit()
    r = post(editor, local, subject_1="B")
    assert r.status_code == 422 and "local time" in r.get_data(True)
    assert fresh(db_session).scalar(select(AbTest)) is None

    tested = make_campaign([topic])
    assert post(editor, tested, subject_1="B").status_code in (200, 302)
    form = {"name": "Tested", "subject": "Hi", "kind": "nurture", "mjml": tested.mjml, "topics": str(topic.id),
            "from_name": "Anna Becker", "local_time": "09:00", "local_zone": "Europe/Berlin", "local_late": "now",
            "csrf_token": csrf(editor, f"/admin/campaigns/{tested.id}/edit")}
    r = editor.post(f"/admin/campaigns/{tested.id}/edit", data=form)
    assert "has an A/B test" in r.get_data(True)
    assert fresh(db_session).get(type(tested), tested.id).local_time == ""
