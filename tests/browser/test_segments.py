"""Building a segment in a real browser: rules and an OR group picked with labelled controls, a live count that
matches the data, a clear message for a bad value, and a saved segment whose count stays dynamic."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from campaigns.models import Contact
from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser


def expected_members(db_session) -> set[str]:
    """Berlin contacts who like roses or have ordered at least twice, worked out from the data in Python."""
    return {c.email for c in db_session.scalars(select(Contact))
            if c.city == "Berlin" and ({i.interest for i in c.interests} & {"roses"} or len(c.orders) >= 2)}


def live_count(page: Page) -> int:
    status = page.locator("#segment-count")
    expect(status).to_have_text(re.compile(r"^\d+ contacts? match(es)? now"))
    return int(status.inner_text().split()[0].replace(",", ""))


def test_build_a_segment_with_a_live_count_and_save_it(admin_page: Page, demo_data: LiveServer,
                                                       db_session) -> None:
    page = admin_page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Segments").click()
    page.get_by_role("link", name="New segment").click()
    page.get_by_label("Name", exact=True).fill("Berlin rose lovers and regulars")
    everyone = live_count(page)
    assert everyone == 40                         # no rules yet: every contact of the demo data

    page.get_by_role("button", name="+ Rule").click()
    expect(page.get_by_label("Rule 1 field")).to_be_focused()     # keyboard users land on the new rule
    page.get_by_label("Rule 1 field").select_option(label="City")
    page.get_by_label("Rule 1 condition").select_option(label="is")
    page.get_by_label("Rule 1 value").fill("Berlin")
    berlin = {c.email for c in db_session.scalars(select(Contact).where(Contact.city == "Berlin"))}
    expect(page.locator("#segment-count")).to_have_text(re.compile(rf"^{len(berlin)} contacts? match(es)? now"))

    page.get_by_role("button", name="+ Group (any of)").click()
    page.get_by_label("Rule 2.1 field").select_option(label="Interest")
    page.get_by_label("Rule 2.1 condition").select_option(label="has")
    page.get_by_label("Rule 2.1 value").fill("roses")
    group = page.get_by_role("listitem").filter(has=page.get_by_label("Rule 2.1 field"))
    group.get_by_role("button", name="+ Rule").click()              # the group's own "+ Rule"
    page.get_by_label("Rule 2.2 field").select_option(label="Number of orders")
    page.get_by_label("Rule 2.2 condition").select_option(label="at least")

    # A value that is not a number is explained, not counted.
    page.get_by_label("Rule 2.2 value").fill("two")
    expect(page.locator("#segment-count")).to_contain_text("is not a number")
    page.get_by_label("Rule 2.2 value").fill("2")
    members = expected_members(db_session)
    assert 0 < len(members) < len(berlin), "the demo data should make the OR group matter"
    expect(page.locator("#segment-count")).to_have_text(re.compile(rf"^{len(members)} contacts? match(es)? now"))
    shown = set(page.locator("#segment-sample a").all_inner_texts())
    assert shown and shown <= members                               # the sample lists real members
    screenshot(page, "segment-builder")

    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_text("Segment Berlin rose lovers and regulars saved.")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Segments").click()
    row = page.get_by_role("row", name=re.compile("Berlin rose lovers and regulars"))
    expect(row).to_contain_text("Berlin")
    expect(row.locator("[data-segment-count-url]")).to_have_text(str(len(members)))
    screenshot(page, "segments")

    # Dynamic: a new contact in Berlin who likes roses is counted the next time the segment is looked at.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    page.get_by_role("link", name="Add contact").click()
    page.get_by_label("Email").fill("new.rosa@example.com")
    page.get_by_label("City").fill("Berlin")
    page.get_by_label("Interests").fill("roses")
    page.get_by_role("button", name=re.compile("Save")).click()
    expect(page.get_by_text("Contact saved.")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Segments").click()
    expect(page.get_by_role("row", name=re.compile("Berlin rose lovers and regulars"))
           .locator("[data-segment-count-url]")).to_have_text(str(len(members) + 1))
