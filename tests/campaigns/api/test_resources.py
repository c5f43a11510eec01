"""Campaigns (draft, schedule, pause, cancel, stats, events), segments, coupons and survey answers through the API."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from campaigns.accounts.audit import Action
from campaigns.contacts import segments
from campaigns.models import AuditEntry, Campaign, CampaignStatus, CouponCode
from tests.campaigns.api.conftest import auth
from tests.campaigns.coupons.test_coupons import make_pool
from tests.conftest import NEWSLETTER_MJML
from tests.helpers import fresh


def test_campaign_draft_schedule_cancel_and_stats(client, db_session, make_contacts, make_key) -> None:
    topic, _contacts = make_contacts(3)
    h = auth(make_key())
    r = client.post("/api/v1/campaigns", json={"name": "May news", "subject": "Hello {{ contact.first_name }}",
                                               "mjml": NEWSLETTER_MJML, "topic_ids": [topic.id]}, headers=h)
    assert r.status_code == 201, r.get_json()
    draft = r.get_json()
    assert draft["status"] == "draft" and draft["topic_ids"] == [topic.id] and draft["kind"] == "nurture"
    cid = draft["id"]
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(microsecond=0)
    r = client.post(f"/api/v1/campaigns/{cid}/schedule", json={"at": when.isoformat()}, headers=h)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "scheduled" and dt.datetime.fromisoformat(r.get_json()["scheduled_at"]) == when
    past = client.post(f"/api/v1/campaigns/{cid}/schedule", json={"at": "2020-01-01T00:00:00+00:00"}, headers=h)
    assert past.status_code == 422
    naive = client.post(f"/api/v1/campaigns/{cid}/schedule", json={"at": "2030-01-01T00:00:00"}, headers=h)
    assert naive.status_code == 422
    r = client.post(f"/api/v1/campaigns/{cid}/pause", headers=h)
    assert r.status_code == 409 and "running" in r.get_json(force=True)["detail"]
    r = client.post(f"/api/v1/campaigns/{cid}/cancel", headers=h)
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert client.post(f"/api/v1/campaigns/{cid}/cancel", headers=h).status_code == 409
    stats = client.get(f"/api/v1/campaigns/{cid}/stats", headers=h).get_json()
    assert stats["status"] == "cancelled" and stats["report"]["recipients"] == 0
    listed = client.get("/api/v1/campaigns", query_string={"status": "cancelled"}, headers=h).get_json()
    assert [c["id"] for c in listed["data"]] == [cid]
    actions = fresh(db_session).scalars(select(AuditEntry.action).where(AuditEntry.actor == "api: Shop")).all()
    assert set(actions) == {Action.CAMPAIGN_SCHEDULE, Action.CAMPAIGN_CANCEL}


def test_pause_a_running_campaign_and_read_its_events(client, db_session, make_contacts, make_campaign,
                                                      make_key, runtime) -> None:
    from campaigns.sending import lifecycle

    topic, contacts = make_contacts(2)
    campaign = make_campaign([topic])
    lifecycle.start(db_session, runtime, campaign)
    h = auth(make_key())
    r = client.post(f"/api/v1/campaigns/{campaign.id}/pause", headers=h)
    assert r.status_code == 200 and r.get_json()["status"] == "paused"
    assert fresh(db_session).get(Campaign, campaign.id).status == CampaignStatus.PAUSED
    events = client.get(f"/api/v1/contacts/{contacts[0].id}/events", headers=h)
    assert events.status_code == 200 and events.get_json()["next_cursor"] is None
    assert client.get(f"/api/v1/campaigns/{campaign.id}/events", query_string={"type": "open"},
                      headers=h).status_code == 200
    assert client.get(f"/api/v1/campaigns/{campaign.id}/events", query_string={"type": "nonsense"},
                      headers=h).status_code == 422


def test_segments_list_count_and_members(client, db_session, make_contacts, make_key) -> None:
    make_contacts(4)
    definition = {"match": "all", "rules": [{"field": "email", "op": "contains", "value": "person1"}]}
    seg = segments.save_segment(db_session, {"name": "Ones", "definition": json.dumps(definition)})
    db_session.commit()
    h = auth(make_key("segments:read"))
    assert [s["name"] for s in client.get("/api/v1/segments", headers=h).get_json()["data"]] == ["Ones"]
    assert client.get(f"/api/v1/segments/{seg.id}/count", headers=h).get_json()["count"] == 1
    members = client.get(f"/api/v1/segments/{seg.id}/members", headers=h).get_json()["data"]
    assert [m["email"] for m in members] == ["person1@example.com"]
    assert client.get("/api/v1/segments/999/count", headers=h).status_code == 404


def test_coupons_issue_and_redeem_with_scoped_keys(client, db_session, make_contacts, make_key) -> None:
    _topic, contacts = make_contacts(1)
    pool = make_pool(db_session, ["API-ONE1", "API-TWO2"])
    shop = auth(make_key("coupons:redeem", name="Checkout"))
    crm = auth(make_key("coupons:issue", name="CRM"))
    r = client.post("/api/v1/coupons/issue", json={"pool_id": pool.id, "contact_id": contacts[0].id}, headers=crm)
    assert r.status_code == 201 and r.get_json()["code"] == "API-ONE1"
    assert client.post("/api/v1/coupons/issue", json={"pool_id": pool.id, "contact_id": contacts[0].id},
                       headers=shop).status_code == 403
    r = client.post("/api/v1/coupons/redeem", json={"code": "api-one1", "reference": "#1001"}, headers=shop)
    assert r.status_code == 200 and r.get_json()["status"] == "redeemed"
    again = client.post("/api/v1/coupons/redeem", json={"code": "API-ONE1"}, headers=shop)
    assert again.status_code == 409 and again.get_json(force=True)["code_status"]["reference"] == "#1001"
    assert client.post("/api/v1/coupons/redeem", json={"code": "NOPE-1"}, headers=shop).status_code == 404
    assert client.get("/api/v1/coupons/API-TWO2", headers=shop).get_json()["status"] == "free"
    code = fresh(db_session).scalar(select(CouponCode).where(CouponCode.code == "API-ONE1"))
    assert code.redeemed_by == "api: Checkout" and code.contact_id == contacts[0].id
    client.post("/api/v1/coupons/issue", json={"pool_id": pool.id, "contact_id": contacts[0].id}, headers=crm)
    empty = client.post("/api/v1/coupons/issue", json={"pool_id": pool.id, "contact_id": contacts[0].id}, headers=crm)
    assert empty.status_code == 409


def test_survey_answers_are_listed(client, db_session, runtime, make_contacts, make_campaign, make_key) -> None:
    from tests.campaigns.surveys.test_surveys import send_survey

    survey, _campaign, _contacts = send_survey(runtime, db_session, make_contacts, make_campaign)
    h = auth(make_key("contacts:read"))
    r = client.get(f"/api/v1/surveys/{survey.id}/answers", headers=h)
    assert r.status_code == 200 and r.get_json() == {"data": [], "next_cursor": None}
    assert client.get("/api/v1/surveys/4242/answers", headers=h).status_code == 404


def test_a_draft_delivered_in_local_time(client, make_contacts, make_key) -> None:
    topic, _contacts = make_contacts(1)
    h = auth(make_key())
    body = {"name": "Morning", "subject": "Hello", "mjml": NEWSLETTER_MJML, "topic_ids": [topic.id],
            "local_time": "09:00", "local_zone": "Asia/Kolkata", "best_time": True, "best_from": 7, "best_to": 11}
    r = client.post("/api/v1/campaigns", json=body, headers=h)
    assert r.status_code == 201, r.get_json()
    got = r.get_json()
    assert (got["local_time"], got["local_zone"], got["local_late"], got["best_time"], got["best_from"],
            got["best_to"]) == ("09:00", "Asia/Kolkata", "next_day", True, 7, 11)
    for wrong in ({"local_time": "9am"}, {"local_zone": "Asia/Nowhere"}, {"best_from": 10, "best_to": 9},
                  {"local_time": "12:00"},    # outside the best-time window
                  {"local_time": ""}):        # best time needs a local time (its fallback)
        r = client.post("/api/v1/campaigns", json={**body, **wrong}, headers=h)
        assert r.status_code == 422, (wrong, r.get_json())
