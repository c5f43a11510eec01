"""Logging in and out in a real browser: the right password, a wrong one, and with the keyboard alone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.flows import DEMO_EMAIL, DEMO_PASSWORD, LiveServer, screenshot

pytestmark = pytest.mark.browser


def test_log_in_see_the_dashboard_and_log_out(page: Page, demo_data: LiveServer) -> None:
    page.goto(demo_data.path("/admin/campaigns"))
    # A page behind the login sends the visitor to the form, and back to that page afterwards.
    expect(page).to_have_url(f"{demo_data.url}/admin/login?next=%2Fadmin%2Fcampaigns")
    expect(page.get_by_role("status")).to_have_text("Please log in to continue.")
    screenshot(page, "login")
    page.get_by_label("Email").fill(DEMO_EMAIL.upper())     # addresses are not case-sensitive
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(demo_data.path("/admin/campaigns"))
    expect(page.get_by_role("link", name="March newsletter")).to_be_visible()
    expect(page.get_by_text("Demo Marketer")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    screenshot(page, "dashboard")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_have_text("You are logged out.")
    page.goto(demo_data.path("/admin/contacts"))
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_wrong_password_is_refused_with_a_message(page: Page, demo_data: LiveServer) -> None:
    page.goto(demo_data.path("/admin/login"))
    page.get_by_label("Email").fill(DEMO_EMAIL)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    expect(page.get_by_label("Password")).to_have_value("")      # the password is never sent back
    screenshot(page, "login-wrong-password")


def test_log_in_with_the_keyboard_only(page: Page, demo_data: LiveServer) -> None:
    page.goto(demo_data.path("/admin/login"))
    # The email field has the focus on arrival; Tab moves through the form in reading order; Enter submits.
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(DEMO_EMAIL)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Log in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    # Every control of the page after login can be reached with Tab and shows where the focus is.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Rapport", focused
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused link shows no focus ring"
