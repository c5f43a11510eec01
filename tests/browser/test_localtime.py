"""Local-time delivery in a real browser: choose it on the edit page, see the schedule zone by zone on the campaign
page; both pages stay accessible."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.a11y import assert_accessible
from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser


def test_choose_local_time_and_see_the_schedule(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    page.goto(demo_data.path("/admin/campaigns"))
    page.get_by_role("link", name="Autumn thank-you coupon").click()
    campaign_id = int(re.search(r"/campaigns/(\d+)", page.url).group(1))
    page.goto(demo_data.path(f"/admin/campaigns/{campaign_id}/edit"))
    page.get_by_label("Deliver at this local time (optional)").fill("09:00")
    page.get_by_label("Time zone of contacts without one").fill("Europe/Berlin")
    page.get_by_label("Where that time has already passed when sending starts").select_option("next_day")
    page.locator("input[name=best_time]").check()
    assert_accessible(page, "campaign edit with delivery time")
    screenshot(page, "campaign-edit-local-time")
    page.get_by_role("button", name=re.compile("^Save")).first.click()
    page.goto(demo_data.path(f"/admin/campaigns/{campaign_id}"))
    expect(page.get_by_role("heading", name="Delivery at 09:00 local time")).to_be_visible()
    table = page.locator("section.local-plan table")
    expect(table).to_contain_text("Europe/Berlin")
    expect(page.locator("section.local-plan")).to_contain_text("between 08:00 and 20:00")
    assert_accessible(page, "campaign page with the local-time schedule")
    screenshot(page, "campaign-local-time-schedule")
