"""Loyalty tiers through the real app and worker: exact after an order arrives over the API, demotion when a period
rolls on (nightly), the admin page (edit → recompute job, report), segments by tier, {{ contact.tier }} in mail,
tier-only coupon pools, and the "reached a new tier" automation sending once."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from campaigns import queueing
from campaigns.automations import runs as auto
from campaigns.composing.editor import save_campaign
from campaigns.contacts import segment_rules, segment_sql
from campaigns.contacts.records import save_contact
from campaigns.coupons import assignment, codes
from campaigns.coupons import pools as coupon_service
from campaigns.errors import InvalidState, ValidationError
from campaigns.models import AuditEntry, Contact, LoyaltyTier, Order, TierChange, utcnow
from campaigns.orders import tiers
from campaigns.sending import lifecycle as sending
from tests.campaigns.api.conftest import auth
from tests.helpers import csrf, fresh

UTC = dt.UTC


@pytest.fixture()
def programme(db_session) -> dict[str, LoyaltyTier]:
    """Member: one order ever; Silver: 100.00 in a year; Gold: 500.00 and 3 orders in a year."""
    made = {}
    for name, rank, value, orders, days in (("Member", 1, "0", "1", "0"), ("Silver", 2, "100", "0", "365"),
                                            ("Gold", 3, "500.00", "3", "365")):
        made[name] = tiers.save_tier(db_session, {"name": name, "rank": str(rank), "min_value": value,
                                                  "min_orders": orders, "period_days": days})
    db_session.commit()
    return made


def tier_of(db_session, email: str) -> str:
    return fresh(db_session).scalar(select(Contact.tier).where(Contact.email == email))


def changes(db_session, email: str) -> list[tuple[str, str, str]]:
    s = fresh(db_session)
    cid = s.scalar(select(Contact.id).where(Contact.email == email))
    return [(c.from_tier, c.to_tier, c.reason) for c in s.scalars(
        select(TierChange).where(TierChange.contact_id == cid).order_by(TierChange.id))]


def test_tier_is_exact_after_each_order_over_the_api(client, db_session, make_key, programme) -> None:
    h = auth(make_key())
    expected = ["Member", "Silver", "Silver", "Gold"]
    for i, (amount, tier) in enumerate(zip(["40.00", "60.00", "0.01", "399.99"], expected, strict=True)):
        r = client.post("/api/v1/orders", json={"email": "ana@example.com", "amount": amount,
                                                "external_id": f"T-{i}"}, headers=h)
        assert r.status_code == 201 and r.get_json()["tier"] == tier, r.get_json()
        assert tier_of(db_session, "ana@example.com") == tier, (i, amount)
    # 40 + 60 + 0.01 + 399.99 = 500.00 exactly, the fourth order: Gold (3 orders and 500.00 in the year).
    # A replayed order changes nothing, and records no change.
    r = client.post("/api/v1/orders", json={"email": "ana@example.com", "amount": "399.99", "external_id": "T-3"},
                    headers=h)
    assert r.status_code == 200 and r.get_json()["created"] is False
    cid = r.get_json()["order"]["contact_id"]
    assert client.get(f"/api/v1/contacts/{cid}", headers=h).get_json()["tier"] == "Gold"
    assert changes(db_session, "ana@example.com") == [("", "Member", "order"), ("Member", "Silver", "order"),
                                                      ("Silver", "Gold", "order")]
    # One cent short of Gold stays Silver: the sums are exact decimals, never floats.
    for i, amount in enumerate(["100.00", "100.00", "299.99"]):
        client.post("/api/v1/orders", json={"email": "bo@example.com", "amount": amount, "external_id": f"B-{i}"},
                    headers=h)
    assert tier_of(db_session, "bo@example.com") == "Silver"
    # A shop whose clock runs a little ahead: its order counts at once.
    ahead = (utcnow() + dt.timedelta(hours=2)).isoformat()
    r = client.post("/api/v1/orders", json={"email": "cy@example.com", "amount": "150.00", "external_id": "C-1",
                                            "ordered_at": ahead}, headers=h)
    assert r.status_code == 201 and r.get_json()["tier"] == "Silver"


def test_nightly_recompute_demotes_when_the_period_rolls_on(client, db_session, make_key, programme, runtime,
                                                            run_worker) -> None:
    h = auth(make_key())
    placed = utcnow() - dt.timedelta(days=360)
    for i in range(3):
        r = client.post("/api/v1/orders", json={"email": "cem@example.com", "amount": "200.00", "external_id": f"C{i}",
                                                "ordered_at": (placed + dt.timedelta(days=i)).isoformat()}, headers=h)
        assert r.status_code == 201, r.get_json()
    assert tier_of(db_session, "cem@example.com") == "Gold"
    # Nothing happens at night while the orders are in the period.
    assert tiers.recompute_all(runtime, now=utcnow())["demoted"] == 0
    # Six days on, the first order has left the year: 400.00 in two orders is Silver.
    assert tiers.recompute_all(runtime, now=utcnow() + dt.timedelta(days=6))["demoted"] == 1
    assert tier_of(db_session, "cem@example.com") == "Silver"
    # A year and more on, only the all-time Member tier is left.
    tiers.recompute_all(runtime, now=utcnow() + dt.timedelta(days=400))
    assert tier_of(db_session, "cem@example.com") == "Member"
    assert [c[1:] for c in changes(db_session, "cem@example.com")][-2:] == [("Silver", "nightly"),
                                                                           ("Member", "nightly")]
    # The periodic task is the job the worker runs: with the real clock, today's figures come back (Gold).
    assert queueing.PERIODIC["loyalty-tiers"].job == queueing.Job.RECOMPUTE_TIERS
    queueing.enqueue(runtime.queue, queueing.Job.RECOMPUTE_TIERS)
    run_worker()
    assert tier_of(db_session, "cem@example.com") == "Gold"


def test_admin_defines_tiers_the_worker_recomputes_and_the_report_shows_changes(
        editor, db_session, make_contacts, work) -> None:
    _topic, (ana,) = make_contacts(1)
    db_session.add(Order(contact_id=ana.id, ordered_at=utcnow(), amount=Decimal("120.00"), currency="EUR"))
    db_session.commit()
    token = csrf(editor, "/admin/contacts/loyalty")
    r = editor.post("/admin/contacts/loyalty", data={"csrf_token": token, "name": "Silver", "rank": "2",
                                                     "min_value": "100", "min_orders": "1", "period_days": "365"})
    assert r.status_code == 302
    bad = editor.post("/admin/contacts/loyalty", data={"csrf_token": token, "name": "Gold", "rank": "2",
                                                       "min_value": "1.001"})
    assert bad.status_code == 400
    assert b"minimum order value" in bad.data
    clash = editor.post("/admin/contacts/loyalty", data={"csrf_token": token, "name": "silver", "rank": "3"})
    assert clash.status_code == 400 and b"already a tier called silver" in clash.data
    assert tier_of(db_session, ana.email) == ""          # until the worker has run the recompute job
    work()
    assert tier_of(db_session, ana.email) == "Silver"
    assert changes(db_session, ana.email) == [("", "Silver", "tiers changed")]
    page = editor.get("/admin/contacts/loyalty").get_data(as_text=True)
    assert "Silver" in page and "1 promotion" in page and ana.email in page
    builder = editor.get("/admin/segments/new").get_data(as_text=True)     # the segment builder offers the tiers
    assert "Loyalty tier" in builder and re.search(r"&#34;tiers&#34;: \[&#34;Silver&#34;\]|\"tiers\": \[\"Silver\"\]",
                                                   builder), builder[:200]
    contact_page = editor.get(f"/admin/contacts/{ana.id}").get_data(as_text=True)
    assert "Loyalty tier changes" in contact_page and "tiers changed" in contact_page
    # Renaming a tier renames it on its customers at once.
    tier_id = fresh(db_session).scalar(select(LoyaltyTier.id))
    editor.post(f"/admin/contacts/loyalty/{tier_id}", data={"csrf_token": token, "name": "Argent", "rank": "2",
                                                   "min_value": "100", "min_orders": "1", "period_days": "365"})
    assert tier_of(db_session, ana.email) == "Argent"
    editor.post(f"/admin/contacts/loyalty/{tier_id}/delete", data={"csrf_token": token})
    work()
    assert tier_of(db_session, ana.email) == ""
    assert [(e.action, e.detail.split(":")[0]) for e in fresh(db_session).scalars(
        select(AuditEntry).order_by(AuditEntry.id))] == [("loyalty.tier_save", "Silver"),
                                                         ("loyalty.tier_save", "Argent"),
                                                         ("loyalty.tier_delete", "Argent")]


def test_tier_form_mistakes_are_refused(db_session, programme) -> None:
    for data, field in (({"name": "", "rank": "4"}, "name"), ({"name": "X" * 51, "rank": "4"}, "name"),
                        ({"name": "Platinum", "rank": "0"}, "rank"), ({"name": "Platinum", "rank": "x"}, "rank"),
                        ({"name": "Platinum", "rank": "3"}, "rank"),
                        ({"name": "Platinum", "rank": "4", "min_value": "-1"}, "min_value"),
                        ({"name": "Platinum", "rank": "4", "period_days": "9999"}, "period_days")):
        with pytest.raises(ValidationError) as exc:
            tiers.save_tier(db_session, data)
        assert exc.value.field == field, data
        db_session.rollback()


def test_segment_by_tier_and_contact_tier_in_mail(db_session, runtime, make_contacts, programme, outbox,
                                                  run_worker) -> None:
    topic, contacts = make_contacts(3)
    contacts[0].tier, contacts[1].tier = "Gold", "Silver"
    db_session.commit()
    definition = segment_rules.parse_definition({"match": "all", "rules": [
        {"field": "tier", "op": "is", "value": "gold"}]})
    where = segment_sql.compile_definition(definition, dialect=db_session.get_bind().dialect.name)
    assert list(db_session.scalars(select(Contact.email).where(where))) == [contacts[0].email]
    mjml = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Your tier: {{ contact.tier|default('none yet', true) }}.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
    campaign = save_campaign(db_session, {"name": "Tier news", "kind": "nurture", "subject": "Hello",
                                          "mjml": mjml, "from_name": "Anna"}, topic_ids=[topic.id])
    db_session.commit()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    texts = {m.recipients[0]: outbox.get(m.key).text for m in outbox.list()}
    assert "Your tier: Gold." in texts[contacts[0].email]
    assert "Your tier: Silver." in texts[contacts[1].email]
    assert "Your tier: none yet." in texts[contacts[2].email]


def test_tier_only_pool_refuses_others_with_a_reason(client, db_session, make_contacts, make_key, programme,
                                                     editor) -> None:
    _topic, (gold, silver) = make_contacts(2)
    gold.tier, silver.tier = "Gold", "Silver"
    pool = coupon_service.save_pool(db_session, {"name": "Gold thanks", "value_description": "20% off",
                                                 "expires_on": dt.date.today() + dt.timedelta(days=30),
                                                 "tiers": ["Gold"]})
    db_session.commit()
    codes.import_codes(db_session, pool.id, b"code\nGOLD-1\nGOLD-2\n")
    db_session.commit()
    with pytest.raises(ValidationError, match="no loyalty tier called Bronze"):
        coupon_service.save_pool(db_session, {"name": "X", "value_description": "1", "tiers": ["Bronze"],
                                              "expires_on": dt.date.today()})
    db_session.rollback()
    with pytest.raises(InvalidState, match="only for Gold customers; this contact is in tier Silver"):
        assignment.issue_code(db_session, pool.id, silver.id, "test")
    db_session.rollback()
    h = auth(make_key("coupons:issue"))
    refused = client.post("/api/v1/coupons/issue", json={"pool_id": pool.id, "contact_id": silver.id}, headers=h)
    assert refused.status_code == 409 and "only for Gold" in refused.get_data(as_text=True)
    ok = client.post("/api/v1/coupons/issue", json={"pool_id": pool.id, "contact_id": gold.id}, headers=h)
    assert ok.status_code == 201 and ok.get_json()["code"] == "GOLD-1"
    assert coupon_service.free_count(fresh(db_session), pool.id) == 1
    # The pool's page shows and keeps the restriction.
    page = editor.get(f"/admin/coupons/{pool.id}").get_data(as_text=True)
    assert 'name="tiers" value="Gold" checked' in page


def test_reached_a_new_tier_sends_one_thank_you_through_the_worker(client, db_session, runtime, make_key,
                                                                    programme, run_worker, outbox) -> None:
    tpl = save_campaign(db_session, {"name": "Thanks", "kind": "nurture", "subject": "Welcome to {{ contact.tier }}",
                                     "mjml": "<mjml><mj-body><mj-section><mj-column><mj-text>You are now "
                                             "{{ contact.tier }}.</mj-text></mj-column></mj-section></mj-body></mjml>",
                                     "from_name": "Anna", "all_contacts": "1"})
    tpl.all_contacts = True
    ana = save_contact(db_session, {"email": "ana@example.com", "first_name": "Ana"})
    db_session.commit()
    a = auto.save_automation(db_session, {"name": "Tier thanks", "trigger": "tier"}, [("0", str(tpl.id))])
    auto.set_active(db_session, a, True)
    db_session.commit()
    h = auth(make_key())
    assert auto.run_due(runtime)["queued"] == 0
    client.post("/api/v1/orders", json={"email": ana.email, "amount": "150.00", "external_id": "X1"}, headers=h)
    assert auto.run_due(runtime)["queued"] == 1
    assert auto.run_due(runtime, utcnow() + dt.timedelta(minutes=1))["queued"] == 0   # the next tick: nothing new
    run_worker()
    mails = [outbox.get(m.key) for m in outbox.list()]
    assert [m.recipients for m in mails] == [("ana@example.com",)]
    assert mails[0].subject == "Welcome to Silver" and "You are now Silver." in mails[0].text
    # Another order that keeps the tier sends nothing; a demotion sends nothing.
    client.post("/api/v1/orders", json={"email": ana.email, "amount": "1.00", "external_id": "X2"}, headers=h)
    tiers.recompute_all(runtime, now=utcnow() + dt.timedelta(days=400))
    assert auto.run_due(runtime, utcnow() + dt.timedelta(minutes=2))["queued"] == 0
    run_worker()
    assert outbox.count() == 1
    assert "promotion" in auto.next_run(fresh(db_session).get(type(a), a.id))


def test_two_orders_recorded_at_the_same_moment_both_count(db_session, runtime, programme) -> None:
    """Two orders of one customer in two transactions at once: the second waits for the first (the contact row's
    lock) and sums with its order, so the tier is exact whatever the interleaving (Silver: 60 + 60 ≥ 100)."""
    import threading
    import time

    from campaigns.models import OrderSource
    from campaigns.orders.recording import OrderInput, record_order

    save_contact(db_session, {"email": "duo@example.com"})
    db_session.commit()
    first = runtime.session_factory()
    record_order(first, OrderInput(OrderSource.API, "duo@example.com", "60.00", external_id="D1"))
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with runtime.session_factory() as session:
                record_order(session, OrderInput(OrderSource.API, "duo@example.com", "60.00", external_id="D2"))
                session.commit()
        except BaseException as exc:   # reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    if runtime.engine.dialect.name == "postgresql":      # let the second reach the lock before the first commits
        from sqlalchemy import text
        for _ in range(400):
            with runtime.engine.connect() as conn:
                if conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND wait_event_type = 'Lock'")):
                    break
            time.sleep(0.025)
        else:
            pytest.fail("the second order never waited for the first")
    first.commit()
    first.close()
    thread.join(30)
    assert not errors, errors
    assert tier_of(db_session, "duo@example.com") == "Silver"


def test_gdpr_export_holds_the_tier_and_erasure_removes_its_changes(client, db_session, make_key,
                                                                     programme) -> None:
    from campaigns.contacts.exports import erase_contact, gdpr_export

    h = auth(make_key())
    cid = client.post("/api/v1/orders", json={"email": "eva@example.com", "amount": "120.00", "external_id": "E1"},
                      headers=h).get_json()["order"]["contact_id"]
    data = gdpr_export(fresh(db_session), cid)
    assert data["profile"]["tier"] == "Silver"
    assert [(t["from_tier"], t["to_tier"], t["reason"]) for t in data["tier_changes"]] == [("", "Silver", "order")]
    db_session.rollback()
    erase_contact(db_session, cid)
    db_session.commit()
    assert db_session.scalar(select(TierChange.id).where(TierChange.contact_id == cid)) is None


def test_the_automation_form_offers_reached_a_new_tier(editor, db_session) -> None:
    from campaigns.models import Automation, AutomationTrigger

    tpl = save_campaign(db_session, {"name": "Thanks", "kind": "nurture", "subject": "Thanks",
                                     "mjml": "<mjml><mj-body><mj-section><mj-column><mj-text>Thanks</mj-text>"
                                             "</mj-column></mj-section></mj-body></mjml>", "all_contacts": "1"})
    db_session.commit()
    page = editor.get("/admin/automations/new").get_data(as_text=True)
    assert 'value="tier"' in page and "Reached a new tier" in page
    r = editor.post("/admin/automations/new", data={"csrf_token": csrf(editor, "/admin/automations/new"),
                                                    "name": "Tier thanks", "trigger": "tier",
                                                    "template_0": str(tpl.id)})
    assert r.status_code == 302
    saved = fresh(db_session).scalar(select(Automation))
    assert saved.trigger == AutomationTrigger.TIER and saved.steps[0].template_id == tpl.id
    listing = editor.get("/admin/automations").get_data(as_text=True)
    assert "a contact reaches a higher loyalty tier" in listing


def test_a_campaign_from_a_tier_only_pool_mails_only_that_tier_and_pauses_with_the_reason(
        db_session, runtime, make_contacts, programme, outbox, run_worker) -> None:
    from campaigns.models import Campaign, CampaignStatus, Send, SendStatus

    topic, contacts = make_contacts(4)
    for c, tier in zip(contacts, ["Gold", "Silver", "Gold", ""], strict=True):
        c.tier = tier
    pool = coupon_service.save_pool(db_session, {"name": "Gold thanks", "value_description": "20% off",
                                                 "expires_on": dt.date.today() + dt.timedelta(days=30),
                                                 "tiers": ["Gold"]})
    db_session.commit()
    codes.import_codes(db_session, pool.id, b"code\nG-1\nG-2\nG-3\nG-4\n")
    mjml = ("<mjml><mj-body><mj-section><mj-column><mj-text>Your code {{ coupon.code }}, valid until "
            "{{ coupon.expires }}.</mj-text></mj-column></mj-section></mj-body></mjml>")
    campaign = save_campaign(db_session, {"name": "Gold offer", "kind": "nurture", "subject": "For you",
                                          "mjml": mjml, "coupon_pool_id": str(pool.id)}, topic_ids=[topic.id])
    db_session.commit()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    assert sorted(m.recipients[0] for m in outbox.list()) == sorted([contacts[0].email, contacts[2].email])
    s = fresh(db_session)
    paused = s.get(Campaign, campaign.id)
    assert paused.status == CampaignStatus.PAUSED
    assert "only for Gold customers" in paused.status_reason and "segment by loyalty tier" in paused.status_reason
    held = s.scalars(select(Send.contact_id).where(Send.campaign_id == campaign.id,
                                                   Send.status == SendStatus.QUEUED)).all()
    assert sorted(held) == sorted([contacts[1].id, contacts[3].id])
    assert coupon_service.free_count(s, pool.id) == 2


def test_without_tiers_the_nightly_task_walks_nobody(db_session, runtime, make_contacts) -> None:
    _topic, (ana,) = make_contacts(1)
    db_session.add(Order(contact_id=ana.id, ordered_at=utcnow(), amount=Decimal("10.00"), currency="EUR"))
    db_session.commit()
    assert tiers.recompute_all(runtime) == {"contacts": 0, "promoted": 0, "demoted": 0}
    ana = db_session.get(Contact, ana.id)
    ana.tier = "Gold"                        # a tier whose definition was deleted: the night takes it away
    db_session.commit()
    assert tiers.recompute_all(runtime) == {"contacts": 1, "promoted": 0, "demoted": 1}
    assert tier_of(db_session, ana.email) == ""
