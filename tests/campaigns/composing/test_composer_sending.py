"""Scheduling in a chosen time zone (started by RQ's scheduler), send now, pause, resume, cancel and the progress JSON,
through the admin and the real worker."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from rq.job import Job
from sqlalchemy import select

from campaigns.composing import editor as campaign_service
from campaigns.composing import starters as starter_service
from campaigns.errors import ValidationError
from campaigns.models import Campaign, CampaignStatus, Send, SendStatus
from campaigns.sending import lifecycle as sending
from campaigns.sending import scheduling
from tests.campaigns.web import test_admin

admin_user, logged_in, csrf = test_admin.admin_user, test_admin.logged_in, test_admin.csrf   # shared fixtures

NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


def test_local_time_in_a_time_zone_becomes_utc_with_clear_errors() -> None:
    when = scheduling.parse_local_time("2026-03-25T09:30", "Europe/Berlin", now=NOW)
    assert when == dt.datetime(2026, 3, 25, 8, 30, tzinfo=dt.UTC)                   # CET, UTC+1
    assert scheduling.parse_local_time("2026-04-01T09:30", "Europe/Berlin", now=NOW).hour == 7   # CEST, UTC+2
    assert scheduling.parse_local_time("2026-03-25 09:30", "America/New_York", now=NOW).hour == 13
    with pytest.raises(ValidationError, match="does not exist"):                    # the clocks skip 02:30
        scheduling.parse_local_time("2026-03-29T02:30", "Europe/Berlin", now=NOW)
    with pytest.raises(ValidationError, match="in the past"):
        scheduling.parse_local_time("2026-03-20T12:30", "Europe/Berlin", now=NOW)
    with pytest.raises(ValidationError, match="unknown time zone"):
        scheduling.parse_local_time("2026-03-25T09:30", "Mars/Olympus", now=NOW)
    with pytest.raises(ValidationError, match="unknown time zone"):
        scheduling.parse_local_time("2026-03-25T09:30", "../../etc/passwd", now=NOW)
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        scheduling.parse_local_time("next tuesday", "UTC", now=NOW)
    with pytest.raises(ValidationError, match="a year ahead"):
        scheduling.parse_local_time("2030-01-01T00:00", "UTC", now=NOW)


def _draft(logged_in, db_session, make_contacts, n: int = 5):
    topic, contacts = make_contacts(n)
    token = csrf(logged_in, "/admin/campaigns/new?starter=blank")
    logged_in.post("/admin/campaigns/new", data={"name": "Spring", "kind": "nurture", "subject": "Hi",
                                                 "mjml": starter_service.BLANK_MJML, "sender": "default",
                                                 "topics": [topic.id], "csrf_token": token})
    return db_session.scalar(select(Campaign)), token, contacts


def _run_scheduled(runtime) -> int:
    """What the worker's scheduler does when the time comes: move due jobs from the registry to the queue."""
    registry = runtime.queue.scheduled_job_registry
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.remove(job_id)
        runtime.queue.enqueue_job(Job.fetch(job_id, connection=runtime.redis))
    return len(ids)


def test_schedule_then_the_scheduler_starts_it_and_the_worker_sends(
        logged_in, runtime, db_session, make_contacts, outbox, run_worker) -> None:
    campaign, token, _ = _draft(logged_in, db_session, make_contacts)
    local = (dt.datetime.now(ZoneInfo("Asia/Tokyo")) + dt.timedelta(days=2)).replace(second=0, microsecond=0)
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/schedule", data={
        "when": local.strftime("%Y-%m-%dT%H:%M"), "timezone": "Asia/Tokyo", "csrf_token": token},
        follow_redirects=True)
    assert "Scheduled for" in r.get_data(as_text=True) and "(Asia/Tokyo)" in r.get_data(as_text=True)
    db_session.rollback()
    db_session.expire_all()
    saved = db_session.get(Campaign, campaign.id)
    assert saved.status == CampaignStatus.SCHEDULED
    assert saved.scheduled_at == local.astimezone(dt.UTC)
    registry = runtime.queue.scheduled_job_registry
    assert registry.get_scheduled_time(registry.get_job_ids()[0]) == local.astimezone(dt.UTC)
    run_worker()                                   # nothing is due yet: nothing goes out
    assert outbox.count() == 0
    progress = logged_in.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress["status"] == "scheduled"

    assert _run_scheduled(runtime) == 1
    run_worker()
    progress = logged_in.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress["status"] == "finished" and progress["sent"] == 5 and progress["remaining"] == 0
    assert outbox.count() == 5


def test_unscheduled_or_rescheduled_campaigns_ignore_the_old_job(
        logged_in, runtime, db_session, make_contacts, outbox, run_worker) -> None:
    campaign, token, _ = _draft(logged_in, db_session, make_contacts)
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    logged_in.post(f"/admin/campaigns/{campaign.id}/schedule", data={"when": when, "timezone": "UTC",
                                                                     "csrf_token": token})
    logged_in.post(f"/admin/campaigns/{campaign.id}/schedule", data={"when": later, "timezone": "UTC",
                                                                     "csrf_token": token})
    registry = runtime.queue.scheduled_job_registry
    first = min(registry.get_job_ids(), key=registry.get_scheduled_time)
    registry.remove(first)                                   # the first (stale) job comes due
    runtime.queue.enqueue_job(Job.fetch(first, connection=runtime.redis))
    run_worker()
    assert outbox.count() == 0
    db_session.rollback()
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.SCHEDULED

    r = logged_in.post(f"/admin/campaigns/{campaign.id}/unschedule", data={"csrf_token": token},
                       follow_redirects=True)
    assert "draft again" in r.get_data(as_text=True)
    _run_scheduled(runtime)
    run_worker()
    assert outbox.count() == 0
    db_session.rollback()
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.DRAFT


def test_bad_schedule_input_keeps_the_draft_with_a_message(logged_in, db_session, make_contacts) -> None:
    campaign, token, _ = _draft(logged_in, db_session, make_contacts, 1)
    for data, message in (({"when": "2001-01-01T10:00", "timezone": "UTC"}, "in the past"),
                          ({"when": "2099-13-45T99:00", "timezone": "UTC"}, "YYYY-MM-DD"),
                          ({"when": "2027-01-01T10:00", "timezone": "Nowhere/City"}, "unknown time zone"),
                          ({}, "YYYY-MM-DD")):
        r = logged_in.post(f"/admin/campaigns/{campaign.id}/schedule", data=dict(data, csrf_token=token),
                           follow_redirects=True)
        assert r.status_code == 200 and message in r.get_data(as_text=True)
    db_session.rollback()
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == CampaignStatus.DRAFT


def test_a_scheduled_campaign_broken_since_is_not_sent_and_says_why(runtime, db_session, make_contacts) -> None:
    topic, _ = make_contacts(1)
    campaign = campaign_service.save_campaign(db_session, {"name": "S", "subject": "S",
                                                           "mjml": starter_service.BLANK_MJML},
                                              topic_ids=[topic.id])
    db_session.commit()
    when = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    scheduling.schedule(db_session, runtime, campaign, when)
    db_session.commit()
    campaign.mjml = "<mjml><mj-body><mj-text>oops</mj-body></mjml>"
    db_session.commit()
    assert scheduling.start_due(runtime, now=when + dt.timedelta(seconds=1)) == 0
    db_session.expire_all()
    assert campaign.status == CampaignStatus.DRAFT and "scheduled start failed" in campaign.status_reason


def test_send_pause_resume_and_progress(logged_in, runtime, db_session, make_contacts, outbox, run_worker) -> None:
    campaign, token, _ = _draft(logged_in, db_session, make_contacts, 30)
    page = logged_in.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-progress-url' in page and 'data-confirm="Send' in page and 'data-count="held"' in page
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token}, follow_redirects=True)
    assert "Sending started" in r.get_data(as_text=True)
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/pause", data={"csrf_token": token}, follow_redirects=True)
    assert "Paused" in r.get_data(as_text=True) and ">Resume</button>" in r.get_data(as_text=True)
    run_worker()                                   # the dispatch job finds the campaign paused
    progress = logged_in.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress["status"] == "paused" and progress["sent"] == 0
    assert set(progress) >= {"sent", "held", "failed", "skipped", "remaining", "recipients"}

    r = logged_in.post(f"/admin/campaigns/{campaign.id}/resume", data={"csrf_token": token}, follow_redirects=True)
    assert "Sending resumed" in r.get_data(as_text=True)
    run_worker()
    progress = logged_in.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress == {**progress, "status": "finished", "sent": 30, "remaining": 0, "recipients": 30}
    assert outbox.count() == 30
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/pause", data={"csrf_token": token}, follow_redirects=True)
    assert "only a running campaign can be paused" in r.get_data(as_text=True)


def test_cancel_skips_everyone_not_reached(logged_in, runtime, db_session, make_contacts, outbox, run_worker) -> None:
    campaign, token, _ = _draft(logged_in, db_session, make_contacts, 8)
    logged_in.post(f"/admin/campaigns/{campaign.id}/send", data={"csrf_token": token})
    sending.dispatch(runtime, campaign.id)          # send rows exist, no batch has run yet
    r = logged_in.post(f"/admin/campaigns/{campaign.id}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "Cancelled" in r.get_data(as_text=True)
    run_worker()
    assert outbox.count() == 0
    db_session.rollback()
    statuses = set(db_session.scalars(select(Send.status).where(Send.campaign_id == campaign.id)))
    assert statuses == {SendStatus.SKIPPED}
    progress = logged_in.get(f"/admin/campaigns/{campaign.id}/progress").get_json()
    assert progress["status"] == "cancelled" and progress["skipped"] == 8 and progress["remaining"] == 0
