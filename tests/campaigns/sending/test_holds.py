"""Held sends show the rule that holds them back now, and when they can go: the campaign page and the contact page,
after mail sent since changed which rule applies (the real worker sends both campaigns)."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from campaigns.models import PolicyLedger, Send, SendStatus
from campaigns.sending import lifecycle as sending
from tests.campaigns.sending import test_policy
from tests.helpers import fresh

admin_client, login = test_policy.admin_client, test_policy.login   # shared fixtures
history, days, set_policy, sends_of = (test_policy.history, test_policy.days, test_policy.set_policy,
                                       test_policy.sends_of)


def held_rows(page: str) -> dict[str, int]:
    """reason code -> sends, from the campaign page's "held now" rows."""
    return {code: int(n) for code, n in re.findall(
        r"<tr data-reason=\"([a-z-]+)\"><td>held now</td><td>.*?</td><td class=\"num\">(\d+)<", page, re.DOTALL)}


def test_ratio_held_contacts_made_eligible_by_a_nurture_mail_show_the_daily_limit_and_when(
        admin_client, runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(8)
    almost, far = contacts[:5], contacts[5:]
    for c in almost:
        history(db_session, c, "nurture", *days(4, 8))      # one short of the three a promotion needs
    set_policy(db_session, messages_per_day=1)               # the defaults: 3 nurture first, 1 mail a day
    coupon = make_campaign([topic], kind="marketing")
    sending.start(db_session, runtime, coupon)
    db_session.commit()
    run_worker()
    assert set(sends_of(db_session, coupon.id).values()) == {("held", "ratio")} and outbox.count() == 0
    page = admin_client.get(f"/admin/campaigns/{coupon.id}").get_data(as_text=True)
    assert held_rows(page) == {"ratio": 8}

    news = make_campaign([topic], kind="nurture")
    sending.start(fresh(db_session), runtime, news)
    db_session.commit()
    run_worker()
    assert outbox.count() == 8          # the nurture mail reached everyone; the coupon is still held for all 8
    assert set(sends_of(db_session, coupon.id).values()) == {("held", "ratio")}    # the stored reason is stale
    nurture_at = {c.id: fresh(db_session).scalar(select(PolicyLedger.sent_at).join(
        Send, Send.id == PolicyLedger.send_id).where(Send.campaign_id == news.id, Send.contact_id == c.id))
        for c in contacts}

    page = html.unescape(admin_client.get(f"/admin/campaigns/{coupon.id}").get_data(as_text=True))
    # Five now have three nurture mails: only the daily limit holds them, until a day after today's nurture mail.
    assert held_rows(page) == {"daily-total": 5, "ratio": 3}
    by = max(nurture_at[c.id] for c in almost) + test_policy.dt.timedelta(days=1)
    assert f"waiting for the daily limit: can go by {by:%a %d %b %Y, %H:%M} UTC" in page
    assert "each goes once the contact has had enough nurture mail" in page

    contact_page = html.unescape(admin_client.get(f"/admin/contacts/{almost[0].id}").get_data(as_text=True))
    held = contact_page[contact_page.index("Held for this contact"):]
    own_by = nurture_at[almost[0].id] + test_policy.dt.timedelta(days=1)
    # In words, as the report and the campaign page say it, and counted right ("1 mail", not a code or "mail(s)").
    assert "<strong>daily limit</strong> — held: already 1 mail in the last 24 hours" in held
    assert f"can go by {own_by:%a %d %b %Y, %H:%M} UTC" in held and "needs more nurture mail" not in held
    other = html.unescape(admin_client.get(f"/admin/contacts/{far[0].id}").get_data(as_text=True))
    assert ("<strong>not enough nurture mail yet for another promotion</strong> — held: needs more nurture mail first"
            in other[other.index("Held for this contact"):])

    # A day later the limit has passed for the five: the page says they are no longer held by any rule.
    later = max(nurture_at.values()) + test_policy.dt.timedelta(days=1, minutes=1)
    from campaigns.sending import holds

    groups = {g.reason: g.count for g in holds.campaign_holds(
        fresh(db_session), db_session.get(test_policy.Campaign, coupon.id),
        test_policy.policy.load(db_session, runtime.settings.policy), later)}
    assert groups == {"ready": 5, "ratio": 3}
    assert db_session.scalar(select(test_policy.func.count()).select_from(Send).where(
        Send.campaign_id == coupon.id, Send.status == SendStatus.HELD)) == 8
