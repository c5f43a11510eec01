"""The post-purchase automation in a browser: the demo's "After an order" shows the order filters and the steps'
delays after the order (the welcome and calendar fields hidden), and the starter form is on the Automations page."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.flows import LiveServer, screenshot


def test_the_order_automation_form_shows_its_own_fields(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    page.goto(demo_data.path("/admin/automations"))
    expect(page.get_by_role("button", name="Create post-purchase automation")).to_be_visible()
    expect(page.get_by_label("Your review page")).to_be_visible()
    page.get_by_role("link", name="After an order").click()
    expect(page.get_by_label("Minimum amount")).to_be_visible()
    expect(page.get_by_label("Product tag")).to_be_visible()
    expect(page.get_by_label("A customer's first order only")).to_be_visible()
    expect(page.get_by_label("Step 2: after the order")).to_have_value("3d")
    expect(page.get_by_label("Step 3: after the order")).to_have_value("14d")
    expect(page.get_by_label("Step 1: day")).to_be_hidden()          # the welcome series' day
    expect(page.get_by_label("Cron expression")).to_be_hidden()
    expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    screenshot(page, "post-purchase-automation")
    page.get_by_label("Welcome series").check()                       # another trigger: its fields instead
    expect(page.get_by_label("Minimum amount")).to_be_hidden()
    expect(page.get_by_label("Step 1: day")).to_be_visible()
