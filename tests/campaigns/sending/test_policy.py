"""The marketing-to-nurture policy through the real worker, database, queue and SMTP server; its forecast; admin."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from campaigns.config import PolicySettings
from campaigns.models import (
    AdminUser,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    ContactStatus,
    Frequency,
    PolicyConfig,
    PolicyLedger,
    Send,
    SendStatus,
    utcnow,
)
from campaigns.sending import delivery, outlook, policy, release
from campaigns.sending import lifecycle as sending
from tests.helpers import fresh

DEFAULTS = {f: getattr(PolicySettings(), f) for f in ("window_days", "ratio_marketing", "ratio_nurture",
                                                       "min_nurture_before_marketing", "marketing_per_week",
                                                       "messages_per_day", "hold_days")}


def set_policy(session, **values) -> PolicySettings:
    """Store the policy as the admin would (enabled unless told otherwise)."""
    data = {**DEFAULTS, "enabled": "1", **values}
    if not data["enabled"]:
        data.pop("enabled")
    saved = policy.save(session, {k: str(v) for k, v in data.items()}, updated_by="test")
    session.commit()
    return saved


def history(session, contact: Contact, kind: str, *ages: dt.timedelta) -> None:
    """Mail this contact got in the past: one finished campaign per message, with its send and ledger rows."""
    for age in ages:
        at = utcnow() - age
        c = Campaign(name=f"past {kind}", kind=kind, subject="s", mjml="<mjml></mjml>",
                     status=CampaignStatus.FINISHED)
        session.add(c)
        session.flush()
        send = Send(campaign_id=c.id, contact_id=contact.id, status=SendStatus.SENT, sent_at=at)
        session.add(send)
        session.flush()
        if kind != CampaignKind.TRANSACTIONAL:
            session.add(PolicyLedger(send_id=send.id, contact_id=contact.id, kind=kind, sent_at=at))
    session.commit()


def days(*n: float) -> list[dt.timedelta]:
    return [dt.timedelta(days=x) for x in n]



def sends_of(session, campaign_id: int) -> dict[int, tuple[str, str]]:
    return {s.contact_id: (s.status, s.reason) for s in fresh(session).scalars(
        select(Send).where(Send.campaign_id == campaign_id))}


@pytest.fixture()
def people(db_session, make_contacts):
    """Contacts with different histories, each exercising one rule of the default policy (1:3 in 30 days, 1 marketing
    per 7 days, 1 mail per 24 hours, 3 nurture first)."""
    topic, contacts = make_contacts(10)
    names = ["earned", "fresh", "two_nurture", "marketing_this_week", "ratio_used", "ratio_regained",
             "mailed_today", "paused", "weekly_reader", "old_nurture"]
    p = dict(zip(names, contacts, strict=True))
    history(db_session, p["earned"], "nurture", *days(2, 5, 9))
    history(db_session, p["two_nurture"], "nurture", *days(2, 5))
    history(db_session, p["marketing_this_week"], "nurture", *days(2, 5, 9, 12, 15, 18))
    history(db_session, p["marketing_this_week"], "marketing", *days(3))
    history(db_session, p["ratio_used"], "nurture", *days(2, 5, 9))
    history(db_session, p["ratio_used"], "marketing", *days(10))
    history(db_session, p["ratio_regained"], "nurture", *days(2, 5, 9, 12, 15, 18))
    history(db_session, p["ratio_regained"], "marketing", *days(10))
    history(db_session, p["mailed_today"], "nurture", *days(0.1, 5, 9))
    history(db_session, p["paused"], "nurture", *days(2, 5, 9))
    p["paused"].paused_until = utcnow() + dt.timedelta(weeks=2)
    history(db_session, p["weekly_reader"], "nurture", *days(3, 9, 12))
    p["weekly_reader"].frequency = Frequency.WEEKLY
    history(db_session, p["old_nurture"], "nurture", *days(31, 35, 40))   # outside the 30-day window
    history(db_session, p["earned"], "transactional", *days(0.1))           # receipts never count
    db_session.commit()
    return topic, p


EXPECTED = {"earned": ("sent", ""), "fresh": ("held", "ratio"), "two_nurture": ("held", "ratio"),
            "marketing_this_week": ("held", "weekly-marketing"), "ratio_used": ("held", "ratio"),
            "ratio_regained": ("sent", ""), "mailed_today": ("held", "daily-total"), "paused": ("held", "paused"),
            "weekly_reader": ("held", "preference"), "old_nurture": ("held", "ratio")}


def test_each_rule_holds_marketing_with_its_reason_and_the_forecast_agrees(
        runtime, db_session, people, make_campaign, outbox, run_worker) -> None:
    topic, p = people
    set_policy(db_session)
    coupon = make_campaign([topic], kind="marketing")
    forecast = outlook.forecast(db_session, coupon, policy.load(db_session, runtime.settings.policy))
    expected_held: dict[str, int] = {}
    for status, reason in EXPECTED.values():
        if status == "held":
            expected_held[reason] = expected_held.get(reason, 0) + 1
    assert (forecast.audience, forecast.send, forecast.held) == (10, 2, expected_held)

    sending.start(db_session, runtime, coupon)
    db_session.commit()
    run_worker()
    got = sends_of(db_session, coupon.id)
    assert {name: got[c.id] for name, c in p.items()} == EXPECTED
    assert sorted(m.recipients[0] for m in outbox.list()) == sorted([p["earned"].email, p["ratio_regained"].email])
    held = fresh(db_session).scalars(select(Send).where(Send.campaign_id == coupon.id, Send.reason == "ratio")).first()
    assert "needs more nurture mail first" in held.last_error and held.attempts == 0
    c = db_session.get(Campaign, coupon.id)
    # Held recipients keep the campaign running: they are retried until its validity ends.
    assert (c.status, c.sent, c.held, c.skipped) == (CampaignStatus.RUNNING, 2, 8, 0)
    assert outlook.send_reasons(db_session, coupon.id)["held"] == expected_held


def test_nurture_is_held_only_by_daily_cap_pause_and_preference(
        runtime, db_session, people, make_campaign, outbox, run_worker) -> None:
    topic, p = people
    set_policy(db_session)
    news = make_campaign([topic], kind="nurture")
    sending.start(db_session, runtime, news)
    db_session.commit()
    run_worker()
    got = sends_of(db_session, news.id)
    assert got[p["mailed_today"].id] == ("held", "daily-total")
    assert got[p["paused"].id] == ("held", "paused")
    assert got[p["weekly_reader"].id] == ("held", "preference")
    assert sum(1 for s, _r in got.values() if s == "sent") == 7 == outbox.count()


def test_transactional_mail_is_exempt_but_never_goes_to_bounced_or_complained(
        runtime, db_session, people, make_campaign, outbox, run_worker) -> None:
    topic, p = people
    set_policy(db_session)
    receipt = make_campaign([topic], kind="transactional")
    sending.start(db_session, runtime, receipt)
    db_session.commit()
    sending.dispatch(runtime, receipt.id)
    runtime.queue.empty()
    # After the send rows exist, one address complains: the worker re-checks at send time.
    fresh(db_session).get(Contact, p["fresh"].id).status = ContactStatus.COMPLAINED
    db_session.commit()
    delivery.send_batch(runtime, receipt.id, 0, 10**9)
    got = sends_of(db_session, receipt.id)
    assert got.pop(p["fresh"].id) == ("skipped", "suppressed")
    assert set(got.values()) == {("sent", "")} and outbox.count() == 9     # paused, capped, weekly: all get it
    assert fresh(db_session).scalar(select(func.count()).select_from(PolicyLedger).where(
        PolicyLedger.send_id.in_(select(Send.id).where(Send.campaign_id == receipt.id)))) == 0


def test_held_marketing_is_released_after_the_next_nurture_mail_reaches_the_contact(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(4)
    for c in contacts:
        history(db_session, c, "nurture", *days(4, 8))      # one short of the three a promotion needs
    set_policy(db_session, messages_per_day=2)
    coupon = make_campaign([topic], kind="marketing")
    sending.start(db_session, runtime, coupon)
    db_session.commit()
    run_worker()
    assert set(sends_of(db_session, coupon.id).values()) == {("held", "ratio")} and outbox.count() == 0

    news = make_campaign([topic], kind="nurture")
    sending.start(db_session, runtime, news)
    db_session.commit()
    run_worker()     # the nurture batch re-checks these contacts' held sends and re-queues them at once
    assert set(sends_of(db_session, coupon.id).values()) == {("sent", "")}
    assert outbox.count() == 8
    c = fresh(db_session).get(Campaign, coupon.id)
    assert (c.status, c.sent, c.held) == (CampaignStatus.FINISHED, 4, 0)


def test_periodic_release_retries_paused_contacts_and_expires_after_valid_until(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(3)
    for c in contacts:
        history(db_session, c, "nurture", *days(2, 5, 9))
        c.paused_until = utcnow() + dt.timedelta(days=3)
    db_session.commit()
    set_policy(db_session)
    coupon = make_campaign([topic], kind="marketing")
    coupon.valid_until = utcnow() + dt.timedelta(days=10)
    later = make_campaign([topic], kind="marketing")
    later.valid_until = utcnow() + dt.timedelta(days=1)
    db_session.commit()
    for c in (coupon, later):
        sending.start(db_session, runtime, c)
        db_session.commit()
    run_worker()
    assert set(sends_of(db_session, coupon.id).values()) == {("held", "paused")}
    assert release.release_held(runtime) == 0           # still paused: nothing to retry

    # Two days on, the pauses are over (for two contacts); the second coupon has expired by then.
    fresh(db_session)
    for c in contacts[:2]:
        db_session.get(Contact, c.id).paused_until = utcnow() - dt.timedelta(minutes=1)
    db_session.commit()
    assert release.release_held(runtime, now=utcnow() + dt.timedelta(days=2)) == 2
    run_worker()
    got = sends_of(db_session, coupon.id)
    assert sorted(got.values()) == [("held", "paused"), ("sent", ""), ("sent", "")]
    assert set(sends_of(db_session, later.id).values()) == {("skipped", "expired")}
    c2 = fresh(db_session).get(Campaign, later.id)
    assert (c2.status, c2.held, c2.skipped) == (CampaignStatus.FINISHED, 0, 3)
    assert outbox.count() == 2

    # The first coupon's window closes too: its last held send expires and the campaign finishes.
    release.release_held(runtime, now=utcnow() + dt.timedelta(days=11))
    assert sorted(sends_of(db_session, coupon.id).values()) == [("sent", ""), ("sent", ""), ("skipped", "expired")]
    assert fresh(db_session).get(Campaign, coupon.id).status == CampaignStatus.FINISHED


def test_a_campaign_past_its_validity_cannot_start_and_sends_nothing_late(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(3)
    for c in contacts:
        history(db_session, c, "nurture", *days(2, 5, 9))
    set_policy(db_session)
    coupon = make_campaign([topic], kind="marketing")
    coupon.valid_until = utcnow() + dt.timedelta(hours=1)
    db_session.commit()
    sending.start(db_session, runtime, coupon)
    db_session.commit()
    sending.dispatch(runtime, coupon.id)
    runtime.queue.empty()
    fresh(db_session).get(Campaign, coupon.id).valid_until = utcnow() - dt.timedelta(seconds=1)
    db_session.commit()
    delivery.send_batch(runtime, coupon.id, 0, 10**9)
    assert set(sends_of(db_session, coupon.id).values()) == {("skipped", "expired")} and outbox.count() == 0
    other = make_campaign([topic], kind="marketing")
    other.valid_until = utcnow() - dt.timedelta(days=1)
    db_session.commit()
    with pytest.raises(Exception, match="valid until"):
        sending.start(db_session, runtime, other)


def test_without_valid_until_held_sends_expire_after_hold_days(runtime, db_session, make_contacts, make_campaign,
                                                             run_worker) -> None:
    topic, _ = make_contacts(2)
    set_policy(db_session, hold_days=5)
    coupon = make_campaign([topic], kind="marketing")
    sending.start(db_session, runtime, coupon)
    db_session.commit()
    run_worker()
    assert release.release_held(runtime, now=utcnow() + dt.timedelta(days=4)) == 0
    assert set(sends_of(db_session, coupon.id).values()) == {("held", "ratio")}
    release.release_held(runtime, now=utcnow() + dt.timedelta(days=5, minutes=1))
    assert set(sends_of(db_session, coupon.id).values()) == {("skipped", "expired")}


def test_cancel_turns_held_sends_into_skipped(runtime, db_session, make_contacts, make_campaign, run_worker) -> None:
    topic, _ = make_contacts(3)
    set_policy(db_session)
    coupon = make_campaign([topic], kind="marketing")
    sending.start(db_session, runtime, coupon)
    db_session.commit()
    run_worker()
    sending.cancel(fresh(db_session), db_session.get(Campaign, coupon.id))
    db_session.commit()
    c = fresh(db_session).get(Campaign, coupon.id)
    assert (c.status, c.held, c.skipped) == (CampaignStatus.CANCELLED, 0, 3)
    assert release.release_held(runtime) == 0


def test_switched_off_caps_still_honour_the_contacts_own_pause(runtime, db_session, people, make_campaign, outbox,
                                                              run_worker) -> None:
    topic, p = people
    set_policy(db_session, enabled="")
    coupon = make_campaign([topic], kind="marketing")
    sending.start(db_session, runtime, coupon)
    db_session.commit()
    run_worker()
    got = sends_of(db_session, coupon.id)
    assert got.pop(p["paused"].id) == ("held", "paused")
    assert set(got.values()) == {("sent", "")}
    # Mail sent while the caps were off still lands in the ledger, so switching them on later counts it.
    assert fresh(db_session).scalar(select(func.count()).select_from(PolicyLedger).where(
        PolicyLedger.send_id.in_(select(Send.id).where(Send.campaign_id == coupon.id)))) == 9


def test_a_send_that_did_not_go_out_frees_its_place(runtime, db_session, make_contacts, make_campaign) -> None:
    topic, contacts = make_contacts(1)
    history(db_session, contacts[0], "nurture", *days(2, 5, 9))
    pol = set_policy(db_session)
    a, b = make_campaign([topic], kind="marketing"), make_campaign([topic], kind="marketing")
    rows = []
    for c in (a, b):
        s = Send(campaign_id=c.id, contact_id=contacts[0].id, status=SendStatus.SENDING)
        db_session.add(s)
        db_session.flush()
        rows.append(s.id)
    db_session.commit()
    cid = contacts[0].id
    with runtime.session_factory() as session:
        assert policy.decide(session, "marketing", pol, {cid: rows[0]}, {}, utcnow()) == {}
        session.commit()
        assert policy.decide(session, "marketing", pol, {cid: rows[1]}, {}, utcnow()) == {cid: "ratio"}
        session.rollback()
        policy.unreserve(session, [rows[0]])      # e.g. the relay answered 4xx: retried later
        session.commit()
        assert policy.decide(session, "marketing", pol, {cid: rows[1]}, {}, utcnow()) == {}
        session.commit()


def test_ledger_rules_at_a_chosen_moment(runtime, db_session, make_contacts) -> None:
    """The weekly and ratio windows roll: the same history allows a promotion later."""
    _topic, (c,) = make_contacts(1)
    history(db_session, c, "nurture", *days(1, 2, 3, 4, 5, 6))
    history(db_session, c, "marketing", *days(1.5))
    pol = set_policy(db_session)

    def reason(at: dt.datetime) -> str | None:
        stats = policy.stats_query(pol, at, [c.id])
        return fresh(db_session).execute(select(policy.hold_reason("marketing", pol, at, stats))
                                          .select_from(Contact).outerjoin(stats, stats.c.contact_id == Contact.id)
                                          .where(Contact.id == c.id)).scalar()

    now = utcnow()
    assert reason(now) == "weekly-marketing"
    assert reason(now + dt.timedelta(days=6)) is None           # the marketing mail left the 7-day window
    assert reason(now + dt.timedelta(days=26)) == "ratio"       # …and so did 3 of the 6 nurture mails
    assert reason(now + dt.timedelta(days=29)) == "ratio"


# ------------------------------------------------------------------ admin


@pytest.fixture()
def admin_client(client, db_session):
    login(client, "boss@shop.test", "admin", db_session)
    return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, email: str, role: str, session) -> None:
    from werkzeug.security import generate_password_hash

    session.add(AdminUser(email=email, name=role.title(), role=role, password_hash=generate_password_hash("pw-123456")))
    session.commit()
    token = csrf_of(client.get("/admin/login").get_data(as_text=True))
    r = client.post("/admin/login", data={"email": email, "password": "pw-123456", "csrf_token": token})
    assert r.status_code == 302


def test_policy_settings_page_validates_and_saves(admin_client, db_session, runtime) -> None:
    page = admin_client.get("/admin/settings/policy").get_data(as_text=True)
    assert 'name="ratio_nurture"' in page and 'value="3"' in page and "defaults from the configuration" in page
    form = {**{k: str(v) for k, v in DEFAULTS.items()}, "enabled": "1", "csrf_token": csrf_of(page)}
    for field, bad, message in (("ratio_nurture", "abc", "whole number"), ("window_days", "0", "from 1 to 365"),
                                ("messages_per_day", "", "whole number"), ("hold_days", "1e9", "whole number")):
        r = admin_client.post("/admin/settings/policy", data={**form, field: bad, "marketing_per_week": "2"})
        body = r.get_data(as_text=True)
        assert r.status_code == 400 and message in body
        assert 'value="2"' in body                          # what was typed is kept
        assert fresh(db_session).get(PolicyConfig, 1) is None
    r = admin_client.post("/admin/settings/policy", data={**form, "ratio_nurture": "2", "messages_per_day": "3"},
                          follow_redirects=True)
    assert "Policy saved" in r.get_data(as_text=True)
    saved = policy.load(fresh(db_session), runtime.settings.policy)
    assert (saved.enabled, saved.ratio_nurture, saved.messages_per_day) == (True, 2, 3)
    r = admin_client.post("/admin/settings/policy", data={**form, "csrf_token": csrf_of(r.get_data(as_text=True))})
    r = admin_client.post("/admin/settings/policy", data={k: v for k, v in form.items() if k != "enabled"})
    assert policy.load(fresh(db_session), runtime.settings.policy).enabled is False


def test_an_editor_may_look_but_not_change_the_policy(client, db_session) -> None:
    login(client, "ed@shop.test", "editor", db_session)
    page = client.get("/admin/settings/policy").get_data(as_text=True)
    assert "Only administrators" in page
    r = client.post("/admin/settings/policy", data={**{k: str(v) for k, v in DEFAULTS.items()},
                                                    "csrf_token": csrf_of(page)})
    assert r.status_code == 403 and fresh(db_session).get(PolicyConfig, 1) is None


def test_campaign_page_shows_the_forecast_and_contact_page_what_is_allowed_next(
        admin_client, db_session, people, make_campaign, runtime, run_worker) -> None:
    topic, p = people
    set_policy(db_session)
    coupon = make_campaign([topic], kind="marketing")
    page = admin_client.get(f"/admin/campaigns/{coupon.id}").get_data(as_text=True)
    assert "2 of 10 would receive it now, 8 would be held" in page
    # Reasons in words, never as their codes (issue 17, item 8).
    assert re.search(r"<td>not enough nurture mail yet for another promotion</td><td class=\"num\">4<", page)
    assert re.search(r"<td>weekly marketing limit</td><td class=\"num\">1<", page)
    assert "<code>ratio</code>" not in page and "ratio ratio" not in page

    contact = admin_client.get(f"/admin/contacts/{p['two_nurture'].id}").get_data(as_text=True)
    assert "Next marketing mail allowed after 1 more nurture mail " in contact
    assert "<strong>2</strong> nurture" in contact
    week = admin_client.get(f"/admin/contacts/{p['marketing_this_week'].id}").get_data(as_text=True)
    resets = (utcnow() - dt.timedelta(days=3) + dt.timedelta(days=7)).strftime("%d %b %Y")
    assert "Weekly marketing limit reached (1 of 1): resets on" in week and resets in week
    fresh_page = admin_client.get(f"/admin/contacts/{p['fresh'].id}").get_data(as_text=True)
    assert "Next marketing mail allowed after 3 more nurture mails" in fresh_page

    sending.start(fresh(db_session), runtime, db_session.get(Campaign, coupon.id))
    db_session.commit()
    run_worker()
    page = admin_client.get(f"/admin/campaigns/{coupon.id}").get_data(as_text=True)
    assert "Re-check held sends now" in page and "retried automatically until" in page
    held_contact = admin_client.get(f"/admin/contacts/{p['paused'].id}").get_data(as_text=True)
    assert "Held for this contact" in held_contact and "paused their mail until" in held_contact
    r = admin_client.post(f"/admin/campaigns/{coupon.id}/release-held", data={"csrf_token": csrf_of(page)},
                          follow_redirects=True)
    assert "No held contact is eligible yet" in r.get_data(as_text=True)


def test_valid_until_on_the_campaign_form(admin_client, db_session, make_contacts) -> None:
    topic, _ = make_contacts(1)
    page = admin_client.get("/admin/campaigns/new?starter=blank").get_data(as_text=True)
    assert 'name="valid_until"' in page
    form = {"name": "Coupon", "kind": "marketing", "subject": "10 % off", "mjml": "<mjml></mjml>",
            "topics": [str(topic.id)], "csrf_token": csrf_of(page)}
    for bad, message in (("next tuesday", "enter a date like"), ("2001-01-01", "in the future")):
        r = admin_client.post("/admin/campaigns/new", data={**form, "valid_until": bad})
        assert r.status_code == 400 and message in r.get_data(as_text=True) and bad in r.get_data(as_text=True)
    assert fresh(db_session).scalar(select(func.count()).select_from(Campaign)) == 0
    when = (utcnow() + dt.timedelta(days=20)).strftime("%Y-%m-%dT%H:%M")
    admin_client.post("/admin/campaigns/new", data={**form, "valid_until": when})
    saved = fresh(db_session).scalar(select(Campaign))
    assert saved.valid_until.strftime("%Y-%m-%dT%H:%M") == when
    edit = admin_client.get(f"/admin/campaigns/{saved.id}/edit").get_data(as_text=True)
    assert f'value="{when}"' in edit
    admin_client.post(f"/admin/campaigns/{saved.id}/edit", data={**form, "valid_until": ""})
    assert fresh(db_session).get(Campaign, saved.id).valid_until is None


def test_a_campaign_waiting_only_on_held_sends_says_so_and_until_when(runtime, db_session, make_contacts,
                                                                       make_campaign, run_worker, editor) -> None:
    topic, _ = make_contacts(3)
    set_policy(db_session, hold_days=9)
    coupon = make_campaign([topic], kind="marketing")
    sending.start(db_session, runtime, coupon)
    db_session.commit()
    run_worker()
    db_session.expire_all()
    coupon = db_session.get(Campaign, coupon.id)
    assert coupon.status == CampaignStatus.RUNNING     # held sends are retried: not finished yet
    until = coupon.started_at + dt.timedelta(days=9)
    got = editor.get(f"/admin/campaigns/{coupon.id}/progress").get_json()
    assert (got["remaining"], got["held_now"]) == (0, 3)
    assert "3 recipients are held by the contact policy" in got["waiting"]
    assert f"until {until:%Y-%m-%d %H:%M} UTC" in got["waiting"]
    page = editor.get(f"/admin/campaigns/{coupon.id}").get_data(as_text=True)
    assert 'data-count="waiting" >Everyone who may get it now has it. 3 recipients' in page
    # A nurture campaign with nothing held has nothing to wait for.
    news = make_campaign([topic])
    sending.start(db_session, runtime, news)
    db_session.commit()
    run_worker()
    done = editor.get(f"/admin/campaigns/{news.id}/progress").get_json()
    assert (done["status"], done["held_now"], done["waiting"]) == ("finished", 0, "")
