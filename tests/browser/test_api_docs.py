"""The API reference at /api/docs in a real browser: the vendored Swagger UI renders the OpenAPI document under
its strict CSP (no inline script, nothing from another origin), and an admin creates and revokes a key."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.a11y import assert_accessible
from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser


def test_reference_renders_every_tag_without_csp_errors(page: Page, live_server: LiveServer) -> None:
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    page.goto(live_server.path("/api/docs"))
    expect(page.get_by_role("heading", name="Rapport API")).to_be_visible()
    for tag in ("Contacts", "Orders", "Campaigns", "Coupons", "Shop webhooks"):
        expect(page.locator(f"#operations-tag-{tag.replace(' ', '_')}")).to_be_visible()
    page.locator("#operations-Contacts-contact_upsert").click()
    expect(page.get_by_text("Create or update a contact by email").first).to_be_visible()
    screenshot(page, "api-docs")
    assert all(url.startswith(live_server.url) for url in requested), [u for u in requested
                                                                       if not u.startswith(live_server.url)]
    assert not page.problems.console_errors, page.problems.console_errors


def test_admin_creates_and_revokes_a_key(admin_page: Page, demo_data: LiveServer) -> None:
    admin_page.goto(demo_data.path("/admin/settings/api-keys"))
    assert_accessible(admin_page, "/admin/settings/api-keys")
    admin_page.get_by_label("Name").fill("Shop")
    admin_page.get_by_label("contacts:read").check()
    admin_page.get_by_label("orders:write").check()
    admin_page.get_by_role("button", name="Create key").click()
    expect(admin_page.get_by_role("status")).to_contain_text("Copy the new key now")
    secret = admin_page.locator("#new-key").inner_text()
    assert secret.startswith("rk_")
    screenshot(admin_page, "api-keys")
    assert_accessible(admin_page, "/admin/settings/api-keys (new key shown)")
    admin_page.get_by_role("button", name="Revoke key Shop").click()
    expect(admin_page.get_by_text("revoked", exact=False).first).to_be_visible()
