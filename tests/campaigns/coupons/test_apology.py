"""Personal apology mail from a contact's page: sent at once from a named person, with a refund note and an
optional coupon, logged on the timeline, never to bounced or suppressed addresses, never interpreted as template."""

from __future__ import annotations

import datetime as dt
import email
import re
from email import policy

import pytest
from sqlalchemy import select

from campaigns.contacts.records import save_contact
from campaigns.contacts.suppression import email_hash
from campaigns.coupons import codes as coupon_codes
from campaigns.coupons import pools as coupon_service
from campaigns.models import Campaign, CampaignKind, Contact, Event, EventType, Sender, Suppression
from tests.helpers import csrf


@pytest.fixture()
def anna(db_session) -> Sender:
    s = Sender(name="Anna Becker", email="anna@shop.test", title="Customer care", reply_to="care@shop.test")
    db_session.add(s)
    db_session.commit()
    return s


def _message(outbox):
    (entry,) = outbox.list()
    return entry, email.message_from_bytes(outbox.get(entry.key).raw, policy=policy.default)


def test_apology_is_sent_at_once_from_the_person_with_refund_and_coupon(
        editor, db_session, anna, run_worker, outbox) -> None:
    contact = save_contact(db_session, {"email": "upset@example.com", "first_name": "Jonas"})
    contact.status = "unsubscribed"     # transactional: an unsubscribe from newsletters does not stop it
    db_session.commit()
    pool = coupon_service.save_pool(db_session, {"name": "Sorry", "value_description": "20% off",
                                                 "expires_on": dt.date.today() + dt.timedelta(days=60)})
    db_session.commit()
    coupon_codes.import_codes(db_session, pool.id, b"code\nSORRY-0001\n")
    db_session.commit()
    url = f"/admin/contacts/{contact.id}/personal-mail"
    page = editor.get(url).get_data(as_text=True)
    assert "I&#39;m sorry, Jonas" in page and "Anna Becker" in page
    token = csrf(editor, url)
    r = editor.post(url, data={"csrf_token": token, "sender_id": str(anna.id), "subject": "Sorry about order 1001",
                               "message": "Your parcel arrived broken.\n\nWe {{ will }} make it right {% now %}.",
                               "refund_note": "We refunded 24.90 EUR <today>.", "coupon_pool_id": str(pool.id)})
    assert r.status_code == 302, re.findall(r"flash error[^>]*>([^<]*)", r.get_data(as_text=True))
    assert r.location.endswith(f"/admin/contacts/{contact.id}#timeline")
    run_worker()
    entry, msg = _message(outbox)
    assert list(entry.recipients) == ["upset@example.com"]
    assert msg["From"].addresses[0].addr_spec == "anna@shop.test" and "Anna Becker" in msg["From"]
    assert msg["Reply-To"].addresses[0].addr_spec == "care@shop.test"
    assert msg["Subject"] == "Sorry about order 1001"
    assert msg["List-Unsubscribe"] is None            # transactional
    html = msg.get_body(("html",)).get_content()
    assert "Dear Jonas" in html and "Your parcel arrived broken." in html
    assert "{{ will }}" in msg.get_body(("plain",)).get_content()     # the marketer's words, verbatim
    assert "24.90 EUR &lt;today&gt;" in html and "SORRY-0001" in html and "Customer care" in html
    db_session.commit()
    event = db_session.scalar(select(Event).where(Event.contact_id == contact.id,
                                                  Event.type == EventType.PERSONAL_MAIL))
    assert event is not None and event.data["subject"] == "Sorry about order 1001"
    timeline = editor.get(f"/admin/contacts/{contact.id}").get_data(as_text=True)
    assert "personal mail" in timeline and "Anna Becker, written by Mara Klein" in timeline
    campaign = db_session.get(Campaign, event.campaign_id)
    assert campaign.kind == CampaignKind.TRANSACTIONAL and campaign.sent == 1


def test_bounced_suppressed_and_bad_input_are_refused_clearly(editor, db_session, anna, outbox) -> None:
    bounced = save_contact(db_session, {"email": "gone@example.com"})
    bounced.status = "bounced"
    listed = save_contact(db_session, {"email": "listed@example.com"})
    db_session.add(Suppression(email_hash=email_hash("listed@example.com"), reason="manual"))
    ok = save_contact(db_session, {"email": "ok@example.com"})
    db_session.commit()
    for contact, text in ((bounced, "is bounced"), (listed, "suppression list")):
        url = f"/admin/contacts/{contact.id}/personal-mail"
        assert text in editor.get(url).get_data(as_text=True)
        r = editor.post(url, data={"csrf_token": csrf(editor, url), "sender_id": str(anna.id), "subject": "Sorry",
                                   "message": "Hello"})
        assert r.status_code == 400 and text in r.get_data(as_text=True)
    url = f"/admin/contacts/{ok.id}/personal-mail"
    for data, text in (({"sender_id": "", "subject": "x", "message": "y"}, "who the message comes from"),
                       ({"sender_id": str(anna.id), "subject": "", "message": "y"}, "write a subject"),
                       ({"sender_id": str(anna.id), "subject": "x", "message": " "}, "write the message"),
                       ({"sender_id": str(anna.id), "subject": "x", "message": "y", "coupon_pool_id": "99"},
                        "does not exist"),
                       ({"sender_id": "9" * 40, "subject": "x", "message": "y" * 20000}, "who the message")):
        r = editor.post(url, data={"csrf_token": csrf(editor, url), **data})
        assert r.status_code == 400 and text in r.get_data(as_text=True), text
    assert editor.get("/admin/contacts/999999/personal-mail").status_code == 404
    db_session.commit()
    assert db_session.scalar(select(Event).where(Event.type == EventType.PERSONAL_MAIL)) is None
    assert outbox.list() == []
    assert db_session.scalar(select(Contact.status).where(Contact.id == ok.id)) == "subscribed"


def test_pickers_leave_out_expired_and_empty_pools_and_a_past_valid_until_is_refused(
        editor, db_session, anna) -> None:
    contact = save_contact(db_session, {"email": "upset@example.com", "first_name": "Jonas"})
    db_session.commit()
    url = "/admin/coupons"
    yesterday = dt.date.today() - dt.timedelta(days=1)
    r = editor.post(url, data={"csrf_token": csrf(editor, url), "name": "Too late", "value_description": "5% off",
                               "expires_on": yesterday.isoformat()})
    assert r.status_code == 400 and "that day has passed" in r.get_data(as_text=True)
    assert db_session.scalar(select(coupon_service.CouponPool).where(
        coupon_service.CouponPool.name == "Too late")) is None

    def pool(name: str, codes: int) -> coupon_service.CouponPool:
        made = coupon_service.save_pool(db_session, {"name": name, "value_description": "10% off",
                                                     "expires_on": dt.date.today() + dt.timedelta(days=9)})
        db_session.commit()
        if codes:
            coupon_codes.import_codes(db_session, made.id, ("code\n" + "\n".join(
                f"{name.upper()}-{i:03d}" for i in range(codes))).encode())
            db_session.commit()
        return made

    usable, empty, expired = pool("Usable", 2), pool("Empty", 0), pool("Lapsed", 2)
    expired.expires_on = yesterday          # expired since it was made: editing it keeps its date
    db_session.commit()
    r = editor.post(f"/admin/coupons/{expired.id}", data={
        "csrf_token": csrf(editor, f"/admin/coupons/{expired.id}"), "name": "Lapsed", "value_description": "12% off",
        "expires_on": yesterday.isoformat()})
    assert r.status_code == 302
    page = editor.get(f"/admin/contacts/{contact.id}/personal-mail").get_data(as_text=True)
    picker = page[page.index('id="coupon_pool_id"'):page.index("</select>", page.index('id="coupon_pool_id"'))]
    assert f'value="{usable.id}"' in picker
    assert f'value="{empty.id}"' not in picker and f'value="{expired.id}"' not in picker
    assert "expired" in editor.get("/admin/coupons").get_data(as_text=True)
    composer = editor.get("/admin/campaigns/new?starter=coupon").get_data(as_text=True)
    assert "Lapsed — EXPIRED on" in composer and "Empty — 0 free (empty)" in composer


def test_transactional_mail_offers_preferences_but_no_unsubscribe_link(
        editor, db_session, anna, run_worker, outbox) -> None:
    contact = save_contact(db_session, {"email": "upset@example.com", "first_name": "Jonas"})
    db_session.commit()
    url = f"/admin/contacts/{contact.id}/personal-mail"
    r = editor.post(url, data={"csrf_token": csrf(editor, url), "sender_id": str(anna.id), "subject": "Sorry",
                               "message": "Your parcel arrived broken."})
    assert r.status_code == 302
    run_worker()
    _entry, msg = _message(outbox)
    assert msg["List-Unsubscribe"] is None
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "Manage your mail preferences" in html and "Manage your mail preferences" in text
    assert "/p/" in html and "unsubscribe" not in html.lower() and "unsubscribe" not in text.lower()
