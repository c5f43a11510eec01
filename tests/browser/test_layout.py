"""Layout at desktop width: a row of filters (text field, selects, date pickers) lines up at one height."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.flows import LiveServer

pytestmark = pytest.mark.browser

CONTROLS = "main select, main input:not([type=hidden]):not([type=checkbox]):not([type=radio]):not([type=file])"


@pytest.mark.parametrize("url", ["/admin/audit", "/admin/outbox", "/admin/contacts"])
def test_filter_controls_share_one_height(admin_page: Page, demo_data: LiveServer, url: str) -> None:
    page = admin_page
    page.goto(demo_data.path(url))
    heights = page.locator(CONTROLS).evaluate_all("els => els.map(e => Math.round(e.getBoundingClientRect().height))")
    assert len(heights) >= 3 and len(set(heights)) == 1, heights
