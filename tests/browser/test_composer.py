"""Composing a campaign in a real browser: pick a starter template, see it live in the desktop and mobile previews,
see a template error with its line while typing, fix it, save, and find the campaign ready to send."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.flows import LiveServer, frame, frame_eval, screenshot, viewport_width

pytestmark = pytest.mark.browser


def test_compose_from_a_starter_with_live_preview(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    expect(page.get_by_role("heading", name="Holiday greeting")).to_be_visible()     # the five starters
    for title in ("Newsletter", "Coupon", "Event invitation", "Survey"):
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    screenshot(page, "campaign-starters")
    page.get_by_role("link", name=re.compile(r"^Use this template\W+Event invitation$")).click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Event invitation")
    mjml = page.get_by_label("Content (MJML)")
    expect(mjml).to_have_value(re.compile("<mjml>"))
    page.get_by_label("Name (internal)").fill("Pruning workshop invitation")
    page.get_by_role("checkbox", name="Newsletter").check()
    status = page.locator("#preview-status")
    expect(status).to_have_text("No problems found. Ready to send.")

    # The email is laid out at the widths a reader sees: 600 px on a desktop client, 375 px on a phone.
    assert viewport_width(page, "Desktop preview") == 600
    assert viewport_width(page, "Mobile preview") == 375
    for title in ("Desktop preview", "Mobile preview"):
        expect(frame(page, title).get_by_text("Lindenstraße 1", exact=False).first).to_be_visible()
        expect(frame(page, title).locator("body")).not_to_contain_text("{{")    # personalized, not raw
    assert frame_eval(page, "Mobile preview", "e => e.scrollWidth") <= 375     # no sideways scrolling on a phone
    screenshot(page, "composer")

    # A broken template is reported with its line while typing; the preview keeps the last good version.
    good = mjml.input_value()
    line = good[:good.index("</mj-body>")].count("\n") + 1
    broken = "<mj-section><mj-column><mj-text>{{ contact.first_name ) }}</mj-text></mj-column></mj-section>"
    mjml.fill(good.replace("</mj-body>", broken + "\n</mj-body>", 1))
    expect(status).to_contain_text("problem")
    problem = page.locator("#problem-list li").first
    expect(problem).to_contain_text(re.compile(rf"Line {line}\b.*unexpected '\)'"))
    problem.get_by_role("button", name=f"Line {line}").click()
    expect(mjml).to_be_focused()                                             # the editor jumps to the line
    screenshot(page, "composer-error")
    closing = ("<mj-section><mj-column><mj-text>See you in the garden, {{ contact.first_name }}!</mj-text>"
               "</mj-column></mj-section>\n</mj-body>")
    mjml.fill(good.replace("</mj-body>", closing, 1))
    expect(status).to_have_text("No problems found. Ready to send.")
    expect(frame(page, "Desktop preview").get_by_text("See you in the garden,")).to_be_visible()

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Campaign saved.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Pruning workshop invitation")
    expect(page.get_by_role("button", name="Send now")).to_be_enabled()
    expect(frame(page, "Mobile preview").get_by_text("See you in the garden,")).to_be_visible()
    screenshot(page, "campaign")
