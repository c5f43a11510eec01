"""Notes on the contact page and the demo's printed card, in a real browser: accessible, and screenshots to look at."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.a11y import assert_accessible
from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser


def test_a_note_is_added_pinned_and_shown_with_the_key_facts(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    page.goto(demo_data.path("/admin/contacts?order=oldest"))
    page.locator("table.contacts a[href^='/admin/contacts/']").first.click()
    facts = page.locator("#notes")
    expect(facts).to_contain_text("Allergic to lilies")          # the demo's pinned note
    page.get_by_label("Add a note").fill("Wants a reminder when the sweet peas arrive.")
    facts.get_by_label("Pin as a key fact").check()
    facts.get_by_role("button", name="Add note").click()
    expect(page.locator(".flash, [role=status]").first).to_contain_text("Note added")
    expect(facts).to_contain_text("Wants a reminder when the sweet peas arrive.")
    expect(page.locator("table.timeline")).to_contain_text("Wants a reminder")
    assert_accessible(page, "contact with notes")
    screenshot(page, "admin-contact-notes")


def test_the_printed_card_run_and_its_files(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    page.goto(demo_data.path("/admin/campaigns"))
    page.get_by_role("link", name="Thank-you card (post)").click()
    page.get_by_role("link", name="Print runs").click()
    assert_accessible(page, "campaign post page")
    page.locator("table a[href^='/admin/post/']").first.click()
    expect(page.get_by_role("status")).to_contain_text("Done")
    assert_accessible(page, "print run")
    screenshot(page, "admin-print-run")
    pdf = page.request.get(demo_data.path(page.get_by_role("link", name="Print file (PDF)").get_attribute("href")))
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf" and pdf.body().startswith(b"%PDF")
