"""The admin on a phone (375 px): every page fits the screen's width, a wide table scrolls inside itself."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser

PAGES = ("/admin/", "/admin/contacts", "/admin/contacts/1", "/admin/segments", "/admin/campaigns", "/admin/campaigns/1",
         "/admin/outbox", "/admin/coupons", "/admin/surveys", "/admin/automations", "/admin/settings",
         "/admin/settings/dkim", "/admin/settings/policy", "/admin/audit", "/admin/contacts/loyalty")


def test_admin_pages_fit_a_phone(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    page.set_viewport_size({"width": 375, "height": 812})
    page.goto(demo_data.path("/admin/campaigns"))
    page.get_by_role("link", name="Report", exact=True).first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Report:")
    for url in (*PAGES, page.url.removeprefix(demo_data.url)):
        page.goto(demo_data.path(url))
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{url} is {width} px wide on a 375 px screen"
    # The campaigns table keeps all its columns: it scrolls sideways within the page.
    page.goto(demo_data.path("/admin/campaigns"))
    table = page.get_by_role("table")
    assert table.evaluate("t => t.scrollWidth > t.clientWidth && getComputedStyle(t).overflowX === 'auto'")
    screenshot(page, "phone-campaigns")
