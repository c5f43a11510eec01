"""The Replies inbox in a real browser, on the demo's replies: listed, read, answered through the worker;
accessible, and screenshots to look at."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.a11y import assert_accessible
from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser


def test_the_replies_inbox_lists_reads_and_answers(admin_page: Page, demo_data: LiveServer, worker) -> None:
    page = admin_page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Replies").click()
    table = page.locator("#replies")
    expect(table).to_contain_text("Könnten Sie mir die Einladung auch als PDF schicken?")
    expect(table).not_to_contain_text("schrieb")                 # the quoted history is cut off
    views = page.get_by_role("navigation", name="Reply views")
    expect(views).to_contain_text("Open (3)")
    expect(views).to_contain_text("Auto-replies (1)")
    assert_accessible(page, "replies inbox")
    screenshot(page, "admin-replies")
    table.get_by_role("link", name=re.compile("Könnten Sie")).click()
    expect(page.locator(".reply-text")).to_have_text("Könnten Sie mir die Einladung auch als PDF schicken?")
    assert_accessible(page, "one reply")
    page.get_by_label(re.compile("Your answer to")).fill("Gern! Der Kalender kommt gleich als PDF.")
    page.get_by_role("button", name="Send answer").click()
    expect(page.locator(".flash, [role=status]").first).to_contain_text("Answer queued")
    worker.start()
    for _ in range(300):          # the worker sends it; the page shows the outcome when reloaded
        if page.locator("#reply-status").inner_text() == "answered":
            break
        page.wait_for_timeout(100)
        page.reload()
    expect(page.locator("#reply-status")).to_have_text("answered")
    expect(page.locator("#answer")).to_contain_text("Sent")
    screenshot(page, "admin-reply-answered")
    page.get_by_role("link", name="← Replies").click()
    expect(views).to_contain_text("Open (2)")
