"""Settings → Webhooks: add an endpoint (secret shown once), send a test event that the real worker posts, the
delivery log, replay, rotate, disable/enable, the notice of an auto-disabled endpoint, delete; GET and HEAD on every
action change nothing."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from campaigns.models import AuditEntry, DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from campaigns.webhooks import delivery as webhook_delivery
from tests.campaigns.sending.test_policy import login
from tests.helpers import csrf, fresh

PAGE = "/admin/settings/webhooks"


@pytest.fixture()
def admin(client, db_session):
    login(client, "boss@shop.test", "admin", db_session)
    return client


def add(admin, db_session, receiver, **extra) -> tuple[WebhookEndpoint, str]:
    data = {"url": receiver.url, "description": "CRM", "event_types": ["order.recorded", "contact.created"],
            "csrf_token": csrf(admin, PAGE), **extra}
    r = admin.post(PAGE, data=data)
    assert r.status_code == 200, r.get_data(as_text=True)
    secret = re.search(r'id="new-secret">(whsec_[^<]+)<', r.get_data(as_text=True)).group(1)
    return fresh(db_session).scalar(select(WebhookEndpoint).order_by(WebhookEndpoint.id.desc())), secret


def test_add_test_log_replay_rotate_and_delete(admin, db_session, receiver, run_worker) -> None:
    endpoint, secret = add(admin, db_session, receiver)
    receiver.secret = secret
    assert endpoint.event_types == ["contact.created", "order.recorded"] and not endpoint.include_machine
    assert secret not in admin.get(PAGE).get_data(as_text=True)                  # shown once
    one = f"{PAGE}/{endpoint.id}"
    assert secret not in admin.get(one).get_data(as_text=True)
    r = admin.post(f"{one}/test", data={"csrf_token": csrf(admin, one)})
    assert r.status_code == 302
    run_worker()
    (got,) = receiver.received
    assert got.valid and got.type == "webhook.test"
    html = admin.get(one).get_data(as_text=True)
    assert "webhook.test" in html and "HTTP 200" in html and "delivered" in html
    delivery = fresh(db_session).scalar(select(WebhookDelivery))
    r = admin.post(f"{one}/deliveries/{delivery.id}/replay", data={"csrf_token": csrf(admin, one)})
    assert r.status_code == 302
    admin.post(one, data={"url": receiver.url, "description": "CRM v2", "csrf_token": csrf(admin, one),
                          "event_types": ["order.recorded"], "include_machine": "1"})
    webhook_delivery.route(admin.application.extensions["rapport"])
    run_worker()
    assert len(receiver.received) == 2 and receiver.received[1].valid
    changed = fresh(db_session).get(WebhookEndpoint, endpoint.id)
    assert (changed.description, changed.event_types, changed.include_machine) == ("CRM v2", ["order.recorded"], True)
    # Rotate: the new secret is shown once and signs from now on.
    r = admin.post(f"{one}/rotate", data={"csrf_token": csrf(admin, one)})
    new_secret = re.search(r'id="new-secret">(whsec_[^<]+)<', r.get_data(as_text=True)).group(1)
    assert new_secret != secret
    receiver.secret = new_secret
    admin.post(f"{one}/test", data={"csrf_token": csrf(admin, one)})
    run_worker()
    assert receiver.received[-1].valid and receiver.received[-1].type == "webhook.test"
    actions = set(fresh(db_session).scalars(select(AuditEntry.action)))
    assert {"webhook.create", "webhook.test", "webhook.replay", "webhook.edit", "webhook.rotate_secret"} <= actions
    r = admin.post(f"{one}/delete", data={"csrf_token": csrf(admin, one)})
    assert r.status_code == 302
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    assert admin.get(one).status_code == 404


def test_bad_input_is_refused_clearly_and_keeps_the_form(admin, db_session, receiver) -> None:
    r = admin.post(PAGE, data={"url": "ftp://x.test/", "description": "Mine", "event_types": ["order.recorded"],
                               "csrf_token": csrf(admin, PAGE)})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "http:// or https://" in html and 'value="Mine"' in html and 'aria-invalid="true"' in html
    r = admin.post(PAGE, data={"url": receiver.url, "csrf_token": csrf(admin, PAGE)})
    assert r.status_code == 400 and "at least one event" in r.get_data(as_text=True)
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
    r = admin.post(PAGE, data={"url": receiver.url, "event_types": ["order.recorded"], "csrf_token": "forged"})
    assert r.status_code == 400 and fresh(db_session).scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_auto_disabled_endpoint_shows_a_notice_until_enabled(admin, db_session, receiver) -> None:
    endpoint, _secret = add(admin, db_session, receiver)
    row = db_session.get(WebhookEndpoint, endpoint.id)
    row.enabled, row.disabled_reason = False, "Disabled by Rapport after 12 failed attempts in a row."
    db_session.commit()
    html = admin.get("/admin/").get_data(as_text=True)
    assert "Disabled by Rapport after 12 failed attempts" in html and receiver.url in html
    one = f"{PAGE}/{endpoint.id}"
    admin.post(f"{one}/enable", data={"enabled": "1", "csrf_token": csrf(admin, one)})
    assert "Disabled by Rapport" not in admin.get("/admin/").get_data(as_text=True)
    assert fresh(db_session).get(WebhookEndpoint, endpoint.id).enabled


def test_get_and_head_never_change_state(admin, db_session, receiver, run_worker) -> None:
    endpoint, receiver.secret = add(admin, db_session, receiver)
    one = f"{PAGE}/{endpoint.id}"
    admin.post(f"{one}/test", data={"csrf_token": csrf(admin, one)})
    run_worker()
    delivery = fresh(db_session).scalar(select(WebhookDelivery))
    before = (fresh(db_session).get(WebhookEndpoint, endpoint.id).secret,
              fresh(db_session).scalar(select(func.count()).select_from(WebhookEvent)))
    for action in ("test", "rotate", "delete", "enable", "replay-failed", f"deliveries/{delivery.id}/replay"):
        for method in (admin.get, admin.head):
            assert method(f"{one}/{action}").status_code == 405
    assert admin.head(one).status_code == 200 and admin.head(PAGE).status_code == 200
    endpoint = fresh(db_session).get(WebhookEndpoint, endpoint.id)
    assert endpoint.enabled and (endpoint.secret, fresh(db_session).scalar(
        select(func.count()).select_from(WebhookEvent))) == before
    assert fresh(db_session).get(WebhookDelivery, delivery.id).status == DeliveryStatus.DELIVERED


def test_editors_cannot_see_or_change_webhooks(editor, db_session) -> None:
    assert editor.get(PAGE).status_code in (302, 403)
    assert editor.post(PAGE, data={"url": "http://127.0.0.1/x", "event_types": ["order.recorded"],
                                   "csrf_token": csrf(editor, "/admin/")}).status_code in (302, 403)
    assert fresh(db_session).scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
