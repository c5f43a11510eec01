"""Coupon pools: CSV import and generation, one unique code per recipient at send time, running out, redemption."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from campaigns.coupons import assignment, redemption
from campaigns.coupons import codes as coupon_codes
from campaigns.coupons import pools as coupon_service
from campaigns.coupons import reports as coupon_reports
from campaigns.errors import ValidationError
from campaigns.models import Campaign, CampaignStatus, CouponCode, CouponPool, Send, SendStatus
from campaigns.sending import lifecycle as sending
from tests.helpers import csrf, fresh

COUPON_MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ contact.first_name }}, your code: <b>CODE[{{ coupon.code }}]</b> worth {{ coupon.value }},
valid until {{ coupon.expires }}.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
CODE_IN = re.compile(r"CODE\[([A-Z0-9-]+)\]")


def make_pool(session, codes=(), *, name="Autumn", expires=None) -> CouponPool:
    pool = coupon_service.save_pool(session, {"name": name, "value_description": "15% off",
                                              "expires_on": dt.date.today() + dt.timedelta(days=30)})
    if expires is not None:
        pool.expires_on = expires       # a past date only as a pool that expired since (new ones are refused)
    session.commit()
    if codes:
        coupon_codes.import_codes(session, pool.id, ("code\n" + "\n".join(codes)).encode())
        session.commit()
    return pool


def coupon_campaign(db_session, make_campaign, topic, pool, *, kind="nurture"):
    """A campaign showing {{ coupon.code }}, drawing from pool (as the campaign form saves it)."""
    from campaigns.composing.editor import save_campaign

    campaign = save_campaign(db_session, {"name": "Test campaign", "kind": kind, "subject": "A thank-you",
                                          "mjml": COUPON_MJML, "coupon_pool_id": str(pool.id)},
                             topic_ids=[topic.id])
    db_session.commit()
    return campaign


def codes_in(outbox) -> dict[str, str]:
    """recipient -> code, from the delivered messages (HTML and text must agree)."""
    out = {}
    for entry in outbox.list(limit=10_000):
        msg = outbox.get(entry.key)
        html_code = CODE_IN.search(msg.html).group(1)
        assert CODE_IN.search(msg.text).group(1) == html_code
        out[msg.recipients[0]] = html_code
    return out



# ------------------------------------------------------------------ import and generate

def test_csv_import_finds_the_code_column_and_refuses_bad_files_whole(db_session) -> None:
    pool = make_pool(db_session)
    shop_export = "\ufeffGutscheincode;Wert;Gültig bis\r\nGT-AAA111;15%;2026-12-31\r\nGT-BBB222;15%;2026-12-31\r\n"
    assert coupon_codes.import_codes(db_session, pool.id, shop_export.encode()).added == 2
    db_session.commit()

    # Duplicates inside the file and against the pool, a bad code, an empty cell: every problem named, nothing added.
    bad = "code,note\nGT-CCC333,a\nGT-CCC333,b\nGT-AAA111,c\nno spaces allowed,d\n,e\nGT-DDD444,f\n"
    with pytest.raises(ValidationError) as err:
        coupon_codes.import_codes(db_session, pool.id, bad.encode())
    message = str(err.value)
    assert "line 3: GT-CCC333 repeats line 2" in message
    assert "line 5" in message and "not a code" in message and "nothing was imported" in message
    fresh(db_session)
    assert db_session.scalar(select(func.count()).select_from(CouponCode)) == 2

    with pytest.raises(ValidationError, match="already in this pool"):
        coupon_codes.import_codes(db_session, pool.id, b"code\nGT-AAA111\nGT-EEE555\n")
    result = coupon_codes.import_codes(db_session, pool.id, b"code\nGT-AAA111\nGT-EEE555\n",
                                         skip_existing_in_pool=True)
    assert (result.added, result.already_in_pool) == (1, 1)
    db_session.commit()

    # A code already in another pool is refused (the shop's redemption call must name exactly one code).
    other = make_pool(db_session, name="Spring")
    with pytest.raises(ValidationError, match="already in another pool"):
        coupon_codes.import_codes(db_session, other.id, b"gt-aaa111\n")
    for junk, reason in [(b"", "empty"), (b"\x00\x01\x02PK\x03\x04" * 50, "binary"),
                         (b"name,email\nAnna,anna@example.com\n", "no column of codes")]:
        with pytest.raises(ValidationError, match=reason):
            coupon_codes.import_codes(db_session, other.id, junk)
    fresh(db_session)
    assert coupon_service.pool_counts(db_session)[pool.id]["total"] == 3


def test_generated_codes_are_unique_prefixed_and_without_look_alikes(db_session) -> None:
    pool = make_pool(db_session)
    assert coupon_codes.generate_codes(db_session, pool.id, 500, length=8, prefix="gt-") == 500
    db_session.commit()
    codes = list(db_session.scalars(select(CouponCode.code)))
    assert len(set(codes)) == 500
    assert all(c.startswith("GT-") and len(c) == 11 and not set(c[3:]) & set("0O1IL") for c in codes)
    with pytest.raises(ValidationError, match="too few"):
        coupon_codes.generate_codes(db_session, pool.id, 100_000, length=6)
    with pytest.raises(ValidationError, match="prefix"):
        coupon_codes.generate_codes(db_session, pool.id, 5, prefix="<script>")


# ------------------------------------------------------------------ sending

def test_every_recipient_gets_one_unique_code_and_a_retry_gets_the_same(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(15)
    pool = make_pool(db_session, [f"GT-{i:04d}X" for i in range(20)])
    campaign = coupon_campaign(db_session, make_campaign, topic, pool)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()

    got = codes_in(outbox)
    assert set(got) == {c.email for c in contacts}
    assert len(set(got.values())) == 15
    msg = outbox.get(outbox.list(limit=1)[0].key)
    assert "worth 15% off" in msg.text and f"{pool.expires_on.year}" in msg.text
    fresh(db_session)
    assigned = {c.contact_id: c.code for c in db_session.scalars(
        select(CouponCode).where(CouponCode.campaign_id == campaign.id))}
    assert {c.email: assigned[c.id] for c in contacts} == got
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED

    # A retried message (same campaign and contact) gets its code again; no new code is used.
    sends = [(s.id, s.contact_id) for s in db_session.scalars(select(Send).where(Send.campaign_id == campaign.id))]
    again, missing = assignment.assign_codes(db_session, pool.id, campaign.id, sends)
    assert again == assigned and missing == []
    assert coupon_service.free_count(db_session, pool.id) == 5
    stats = coupon_reports.campaign_stats(db_session, campaign.id)
    assert (stats["issued"], stats["delivered"], stats["redeemed"]) == (15, 15, 0)


def test_running_out_pauses_before_anyone_gets_a_mail_without_a_code(
        runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    topic, contacts = make_contacts(12)
    pool = make_pool(db_session, [f"GT-{i:04d}Y" for i in range(5)])
    campaign = coupon_campaign(db_session, make_campaign, topic, pool)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()

    got = codes_in(outbox)            # every delivered message has a code: codes_in fails otherwise
    assert len(got) == 5 and len(set(got.values())) == 5
    fresh(db_session)
    paused = db_session.get(Campaign, campaign.id)
    assert paused.status == CampaignStatus.PAUSED
    assert "ran out of codes" in paused.status_reason and "Autumn" in paused.status_reason
    waiting = db_session.scalar(select(func.count()).select_from(Send).where(
        Send.campaign_id == campaign.id, Send.status == SendStatus.QUEUED))
    assert waiting == 7

    # Add codes and resume: the rest get codes, nobody gets a second one, no code goes to two people.
    coupon_codes.import_codes(db_session, pool.id, ("\n".join(f"GT-{i:04d}Z" for i in range(10))).encode())
    db_session.commit()
    sending.start(db_session, runtime, db_session.get(Campaign, campaign.id))
    db_session.commit()
    run_worker()
    got = codes_in(outbox)
    assert set(got) == {c.email for c in contacts} and len(set(got.values())) == 12
    fresh(db_session)
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.FINISHED


def test_an_expired_pool_pauses_the_campaign(runtime, db_session, make_contacts, make_campaign, outbox,
                                             run_worker) -> None:
    topic, _ = make_contacts(3)
    pool = make_pool(db_session, ["GT-OLD1", "GT-OLD2", "GT-OLD3"])
    campaign = coupon_campaign(db_session, make_campaign, topic, pool)
    pool.expires_on = dt.date.today() - dt.timedelta(days=1)      # it expired after the campaign was written
    db_session.commit()
    with pytest.raises(ValidationError, match="expired on .*: choose another pool"):
        sending.start(db_session, runtime, campaign)               # refused before sending, naming the fix
    pool.expires_on = dt.date.today()
    db_session.commit()
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    pool.expires_on = dt.date.today() - dt.timedelta(days=1)      # and if it expires while the campaign runs
    db_session.commit()
    run_worker()
    assert outbox.count() == 0
    fresh(db_session)
    assert "expired on" in db_session.get(Campaign, campaign.id).status_reason


def test_content_with_a_coupon_needs_a_pool(db_session, make_contacts) -> None:
    from campaigns.composing.editor import save_campaign

    with pytest.raises(ValidationError, match="no coupon pool is chosen"):
        save_campaign(db_session, {"name": "x", "subject": "s", "mjml": COUPON_MJML, "coupon_pool_id": ""})


# ------------------------------------------------------------------ redemption





def test_shop_api_redeems_once_with_a_valid_token_and_clear_errors(client, db_session) -> None:
    pool = make_pool(db_session, ["GT-RED1", "GT-RED2"])
    old = make_pool(db_session, ["GT-OLD9"], name="Old", expires=dt.date.today() - dt.timedelta(days=3))
    token = redemption.create_api_token(db_session, "shop")
    db_session.commit()
    url = "/admin/api/coupons/redeem"
    auth = {"Authorization": f"Bearer {token}"}

    assert client.post(url, json={"code": "GT-RED1"}).status_code == 401
    r = client.post(url, json={"code": "GT-RED1"}, headers={"Authorization": "Bearer " + token[:-1] + "x"})
    assert r.status_code == 401 and "token" in r.get_json()["error"]
    assert client.post(url, data="not json", headers=auth, content_type="application/json").status_code == 400
    assert client.post(url, json=["GT-RED1"], headers=auth).status_code == 400
    assert client.post(url, json={"code": 12}, headers=auth).status_code == 400

    r = client.post(url, json={"code": " gt-red1 ", "reference": "order 1001"}, headers=auth)
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["status"] == "redeemed" and body["code"] == "GT-RED1" and body["reference"] == "order 1001"
    r = client.post(url, json={"code": "GT-RED1"}, headers=auth)
    assert r.status_code == 409 and "already redeemed" in r.get_json()["error"]
    r = client.post(url, json={"code": "NOPE-123"}, headers=auth)
    assert r.status_code == 404 and r.get_json()["error"] == "no code NOPE-123 is known"
    r = client.post(url, json={"code": "GT-OLD9"}, headers=auth)
    assert r.status_code == 410 and "expired" in r.get_json()["error"]
    r = client.get("/admin/api/coupons/GT-RED2", headers=auth)
    assert r.status_code == 200 and r.get_json()["status"] == "free"
    fresh(db_session)
    code = db_session.scalar(select(CouponCode).where(CouponCode.code == "GT-RED1"))
    assert code.redeemed_at is not None and code.redeemed_by == "api: shop"
    assert old.id != pool.id


def test_admin_creates_pool_imports_marks_redeemed_and_sees_the_report(
        editor, runtime, db_session, make_contacts, make_campaign, outbox, run_worker) -> None:
    client = editor
    token = csrf(client, "/admin/coupons")
    r = client.post("/admin/coupons", data={"csrf_token": token, "name": "Winter", "value_description": "€10 off",
                                            "expires_on": "not a date"})
    assert r.status_code == 400 and "is not a date" in r.get_data(as_text=True)
    assert 'value="Winter"' in r.get_data(as_text=True)          # what was typed stays in the form
    r = client.post("/admin/coupons", data={"csrf_token": token, "name": "Winter", "value_description": "€10 off",
                                            "expires_on": (dt.date.today() + dt.timedelta(days=9)).isoformat()})
    assert r.status_code == 302
    pool_url = r.headers["Location"]
    pool_id = int(pool_url.rstrip("/").rsplit("/", 1)[1])

    import io
    r = client.post(f"/admin/coupons/{pool_id}/import", data={
        "csrf_token": token, "file": (io.BytesIO(b"code\nW-1111\nW-1111\n"), "codes.csv")},
        content_type="multipart/form-data", follow_redirects=True)
    assert "line 3: W-1111 repeats line 2" in r.get_data(as_text=True)
    r = client.post(f"/admin/coupons/{pool_id}/import", data={
        "csrf_token": token, "file": (io.BytesIO(b"code\nW-1111\nW-2222\nW-3333\n"), "codes.csv")},
        content_type="multipart/form-data", follow_redirects=True)
    assert "3 codes imported" in r.get_data(as_text=True)
    r = client.post(f"/admin/coupons/{pool_id}/generate", data={"csrf_token": token, "count": "abc"},
                    follow_redirects=True)
    assert "must be a whole number" in r.get_data(as_text=True)

    topic, _ = make_contacts(3)
    pool = db_session.get(CouponPool, pool_id)
    campaign = coupon_campaign(db_session, make_campaign, topic, pool)
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    issued = sorted(codes_in(outbox).values())
    r = client.post(f"/admin/coupons/{pool_id}/redeem", data={"csrf_token": token, "code": issued[0].lower(),
                                                               "reference": "till 3"}, follow_redirects=True)
    assert f"Code {issued[0]} marked redeemed" in r.get_data(as_text=True)
    stats = coupon_reports.campaign_stats(db_session, campaign.id)
    assert (stats["issued"], stats["redeemed"], stats["redemption_rate"]) == (3, 1, 0.3333)
    page = client.get(pool_url).get_data(as_text=True)
    assert "Test campaign" in page and "33.3%" in page
    assert client.get("/admin/coupons/99999").status_code == 404
    edit = client.get("/admin/campaigns/new?starter=blank").get_data(as_text=True)
    assert "Winter — 0 free" in edit


def test_the_campaign_report_shows_its_coupon_figures(editor, runtime, db_session, make_contacts, make_campaign,
                                                      outbox, run_worker) -> None:
    topic, _ = make_contacts(4)
    pool = make_pool(db_session, [f"R-{i:04d}" for i in range(10)])
    campaign = coupon_campaign(db_session, make_campaign, topic, pool)
    plain = make_campaign([topic])
    sending.start(db_session, runtime, campaign)
    db_session.commit()
    run_worker()
    sending.start(db_session, runtime, plain)
    db_session.commit()
    run_worker()
    # The shop redeems the code of one recipient (counted at the receiving end: the codes in the delivered mail).
    delivered = sorted({code for code in codes_in_campaign(outbox, campaign.subject)})
    assert len(delivered) == 4
    redemption.redeem(db_session, delivered[0], reference="order 1")
    db_session.commit()
    page = editor.get(f"/admin/campaigns/{campaign.id}/report").get_data(as_text=True)
    issued = re.search(r'id="coupon-issued"><strong>(\d+)</strong>', page)
    redeemed = re.search(r'id="coupon-redeemed"><strong>(\d+)</strong><span>coupons redeemed \(([\d.]+)%\)', page)
    assert issued and issued.group(1) == "4"
    assert redeemed and redeemed.groups() == ("1", "25.0")
    assert "Coupons issued" in page
    # A campaign without coupons has no coupon figures.
    other = editor.get(f"/admin/campaigns/{plain.id}/report").get_data(as_text=True)
    assert "coupon-issued" not in other and "Coupons issued" not in other


def codes_in_campaign(outbox, subject: str) -> list[str]:
    """The coupon codes in the delivered messages with this subject."""
    out = []
    for entry in outbox.list(limit=10_000):
        msg = outbox.get(entry.key)
        if msg.subject == subject:
            out.append(CODE_IN.search(msg.html).group(1))
    return out


def test_old_shop_endpoints_say_they_are_deprecated_and_name_their_successor(client, db_session) -> None:
    make_pool(db_session, ["GT-DEP1"], name="Deprecation")
    token = redemption.create_api_token(db_session, "shop")
    db_session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    redeemed = client.post("/admin/api/coupons/redeem", json={"code": "GT-DEP1"}, headers=auth)
    refused = client.post("/admin/api/coupons/redeem", json={"code": "GT-DEP1"})
    status = client.get("/admin/api/coupons/GT DEP1", headers=auth)
    for response in (redeemed, refused, status):
        assert response.headers["Deprecation"].startswith("@") and response.headers["Deprecation"][1:].isdigit()
    assert redeemed.status_code == 200 and refused.status_code == 401
    assert redeemed.headers["Link"] == '</api/v1/coupons/redeem>; rel="successor-version"'
    assert status.headers["Link"] == '</api/v1/coupons/GT%20DEP1>; rel="successor-version"'
