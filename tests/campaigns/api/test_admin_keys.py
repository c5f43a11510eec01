"""Settings → API keys: an admin creates a key (the secret is on that one answer only), sees prefix, scopes and
last use, and revokes it; both are in the audit log. Editors cannot reach the page. The reference and its
document are served without any other origin."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from campaigns.models import ApiKey, AuditEntry
from tests.campaigns.api.conftest import auth
from tests.campaigns.sending.test_policy import login
from tests.helpers import csrf, fresh

PAGE = "/admin/settings/api-keys"


@pytest.fixture()
def admin(client, db_session):
    login(client, "boss@shop.test", "admin", db_session)
    return client


def test_admin_creates_lists_and_revokes_a_key(admin, db_session) -> None:
    r = admin.post(PAGE, data={"name": "Shop", "scopes": ["contacts:read", "orders:write"], "rate_limit": "120",
                               "csrf_token": csrf(admin, PAGE)})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    secret = re.search(r'id="new-key">(rk_[^<]+)<', html).group(1)
    key = fresh(db_session).scalar(select(ApiKey))
    assert key.scopes == ["contacts:read", "orders:write"] and key.rate_limit == 120 and key.created_by == \
        "boss@shop.test"
    assert secret not in admin.get(PAGE).get_data(as_text=True)          # shown once
    assert admin.get("/api/v1/topics", headers=auth(secret)).status_code == 200
    listing = admin.get(PAGE).get_data(as_text=True)
    assert f"rk_{key.prefix}_…" in listing and "orders:write" in listing and "never" not in listing
    r = admin.post(f"{PAGE}/{key.id}/revoke", data={"csrf_token": csrf(admin, PAGE)})
    assert r.status_code == 302
    assert admin.get("/api/v1/topics", headers=auth(secret)).status_code == 401
    actions = fresh(db_session).scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions[-2:] == ["settings.api_key_create", "settings.api_key_revoke"]


def test_bad_key_forms_are_refused_with_the_field(admin, db_session) -> None:
    r = admin.post(PAGE, data={"name": "Shop", "rate_limit": "60", "csrf_token": csrf(admin, PAGE)})
    assert r.status_code == 400 and "at least one scope" in r.get_data(as_text=True)
    r = admin.post(PAGE, data={"name": "", "scopes": ["contacts:read"], "csrf_token": csrf(admin, PAGE)})
    assert r.status_code == 400
    assert fresh(db_session).scalar(select(ApiKey)) is None


def test_editors_cannot_manage_keys(editor) -> None:
    assert editor.get(PAGE).status_code == 403


def test_reference_page_and_document_are_self_hosted(client) -> None:
    r = client.get("/api/docs")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "https://" not in html and "http://" not in html
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert client.get(src).status_code == 200, src
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0" and "/api/v1/contacts" in doc["paths"]
    ops = [(path, method) for path, item in doc["paths"].items() for method in item]
    assert len(ops) >= 28
    assert doc["paths"]["/api/v1/contacts"]["post"]["x-scope"] == "contacts:write"


def test_the_document_is_valid_openapi_3_1_with_every_reference_resolved(client) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/api/v1/openapi.json").get_json()
    validate(doc)      # raises on any schema error or dangling $ref
    statuses = doc["paths"]["/api/v1/campaigns"]["get"]["parameters"][2]["schema"]
    assert statuses["anyOf"][0]["$ref"] == "#/components/schemas/CampaignStatus"
    assert doc["components"]["schemas"]["CampaignStatus"]["enum"][0] == "draft"
    assert "    " not in doc["paths"]["/api/v1/orders"]["post"]["description"]
