"""axe-core over every public page and the main admin pages: no serious or critical WCAG 2.x A/AA violation."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.a11y import assert_accessible
from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser

ADMIN_PAGES = [
    "/admin/", "/admin/contacts", "/admin/contacts/new", "/admin/contacts/import", "/admin/segments",
    "/admin/segments/new", "/admin/topics", "/admin/campaigns", "/admin/campaigns/new",
    "/admin/campaigns/new?starter=newsletter", "/admin/coupons", "/admin/surveys", "/admin/automations",
    "/admin/signups", "/admin/outbox", "/admin/settings", "/admin/settings/senders", "/admin/settings/dkim",
    "/admin/settings/brand", "/admin/settings/postal-address", "/admin/settings/relays", "/admin/settings/users",
    "/admin/settings/policy", "/admin/contacts/loyalty",
]


def test_the_main_admin_pages_have_no_serious_violations(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    failures = []
    for path in ADMIN_PAGES:
        page.goto(demo_data.path(path))
        page.wait_for_load_state("networkidle")
        try:
            assert_accessible(page, path)
        except AssertionError as exc:
            failures.append(str(exc))
    # Pages reached through the data: a contact, a campaign, its report.
    page.goto(demo_data.path("/admin/contacts"))
    page.locator("table a[href^='/admin/contacts/']").first.click()
    for link in (None, "March newsletter"):
        if link:
            page.goto(demo_data.path("/admin/campaigns"))
            page.get_by_role("link", name=link).click()
        page.wait_for_load_state("networkidle")
        try:
            assert_accessible(page, page.url)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def test_the_public_pages_have_no_serious_violations(page: Page, demo_data: LiveServer, runtime) -> None:
    from sqlalchemy import select

    from campaigns.models import Campaign, Contact, SignupForm
    from mailer.tracking import Purpose

    with runtime.session_factory() as session:
        contact_id = session.scalar(select(Contact.id).order_by(Contact.id))
        campaign_id = session.scalar(select(Campaign.id).order_by(Campaign.id))
        form_id = session.scalar(select(SignupForm.public_id))
    seal = runtime.tokens.seal
    failures = []

    def check(path: str, name: str) -> None:
        page.goto(demo_data.path(path))
        try:
            assert_accessible(page, name)
        except AssertionError as exc:
            failures.append(str(exc))
        screenshot(page, f"public-{name}")

    check(f"/u/{seal(Purpose.UNSUBSCRIBE, contact_id, campaign_id)}", "unsubscribe")
    check(f"/p/{seal(Purpose.PREFERENCES, contact_id)}", "preferences")
    # Saving moves the focus to the confirmation, which announces itself.
    page.get_by_role("button", name=re.compile("Save")).click()
    expect(page.get_by_role("status")).to_be_focused()
    try:
        assert_accessible(page, "preferences-saved")
    except AssertionError as exc:
        failures.append(str(exc))
    screenshot(page, "public-preferences-saved")
    check(f"/signup/{form_id}", "signup")
    check("/u/not-a-token", "not-found")
    assert not failures, "\n\n".join(failures)


def test_navigation_fits_one_line_shows_where_you_are_and_can_be_skipped(admin_page: Page,
                                                                          demo_data: LiveServer) -> None:
    page = admin_page
    page.goto(demo_data.path("/admin/campaigns"))
    nav = page.get_by_role("navigation", name="Main")
    tops = nav.get_by_role("link").evaluate_all("links => links.map(a => Math.round(a.getBoundingClientRect().top))")
    assert len(tops) == 12 and len(set(tops)) == 1, tops                 # one line at 1,280 px
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    expect(nav.get_by_role("link", name="Campaigns")).to_have_attribute("aria-current", "page")
    expect(nav.locator("[aria-current=page]")).to_have_count(1)
    page.goto(demo_data.path("/admin/settings/senders"))
    expect(nav.locator("[aria-current=page]")).to_have_text("Settings")
    # The first Tab reaches "Skip to content", which moves the focus past the navigation.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("/static/favicon.svg")
    assert page.request.get(demo_data.path("/static/favicon.svg")).ok
    screenshot(page, "navigation")


def test_policy_settings_have_the_tab_bar_and_a_readable_rule_and_automations_breathe(
        admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    page.goto(demo_data.path("/admin/settings/policy"))
    tabs = page.get_by_role("navigation", name="Settings")
    expect(tabs.get_by_role("link", name="Sending policy")).to_have_attribute("aria-current", "page")
    expect(page.locator(".policy-rule")).to_have_text(
        "A contact gets at most 1 marketing mail for every 3 nurture mails they received in the last 30 days.")
    screenshot(page, "policy-settings")
    page.goto(demo_data.path("/admin/automations"))
    button = page.get_by_role("link", name="New automation").bounding_box()
    link = page.get_by_role("link", name=re.compile("cadence report")).bounding_box()
    assert button and link and link["x"] - (button["x"] + button["width"]) >= 8    # not touching
    screenshot(page, "automations")
