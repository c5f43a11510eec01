"""An A/B test in a real browser: set it up on a draft (a refused empty form keeps what was typed), preview both
variants, send the test share with the real worker, choose the variant for the rest on the results, and read the
A/B section of the report."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.flows import LiveServer, frame, screenshot

pytestmark = pytest.mark.browser

SUBJECT_B = "Seeds you can sow in March"


def test_set_up_send_pick_and_report(admin_page: Page, demo_data: LiveServer, worker) -> None:
    page = admin_page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="March newsletter").click()
    campaign_id = int(re.search(r"/campaigns/(\d+)", page.url).group(1))
    page.get_by_role("link", name="Set up an A/B test").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("A/B test: March newsletter")

    # Nothing filled in for B: refused with the reason, and what was typed stays.
    page.get_by_label("Test share (% of the audience)").fill("50")
    page.get_by_role("button", name="Save A/B test").click()
    expect(page.get_by_role("alert")).to_contain_text("fill in at least variant B")
    expect(page.get_by_label("Test share (% of the audience)")).to_have_value("50")

    variant_b = page.get_by_role("group", name="Variant B")
    variant_b.get_by_label("Subject").fill(SUBJECT_B)
    page.get_by_label("Winner chosen by").select_option("human_clicks")
    page.get_by_label("Decide after (hours)").fill("6")
    page.get_by_role("button", name="Save A/B test").click()
    expect(page.get_by_text("A/B test saved.")).to_be_visible()
    expect(page.get_by_role("group", name="Variant B").get_by_label("Subject")).to_have_value(SUBJECT_B)
    # Each variant previewed as a recipient sees it.
    for letter in ("A", "B"):
        expect(frame(page, f"Preview of variant {letter}").locator("body")).to_contain_text("Lindenstraße 1")
    screenshot(page, "abtest-setup")

    page.get_by_role("link", name="Back to the campaign").click()
    expect(page.locator("#ab-summary")).to_contain_text("2 variants on 50% of the audience")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_text("Sending started.")).to_be_visible()
    worker.start()
    expect(page.get_by_text("The A/B test share has been sent")).to_be_visible()
    expect(page.locator("#status")).to_have_text("running")       # the rest waits for the decision

    page.goto(demo_data.path(f"/admin/campaigns/{campaign_id}/abtest"))
    table = page.get_by_role("table", name=re.compile("The test share, per variant"))
    expect(table.get_by_role("row")).to_have_count(3)               # header, A, B
    sent_a = int(table.locator("tr[data-variant=A] td").first.inner_text())
    sent_b = int(table.locator("tr[data-variant=B] td").first.inner_text())
    assert sent_a > 0 and sent_b > 0
    screenshot(page, "abtest-results")
    page.get_by_label("Variant for the rest").select_option(label="B")
    page.get_by_role("button", name="Send to the rest now").click()
    expect(page.get_by_text("Variant B goes to the rest of the audience.")).to_be_visible()
    expect(page.locator("#ab-decision")).to_contain_text("B chosen for the rest by")

    page.goto(demo_data.path(f"/admin/campaigns/{campaign_id}"))
    expect(page.locator("#status")).to_have_text("finished")
    page.get_by_role("link", name="Report", exact=True).click()
    section = page.locator("#ab-report")
    expect(section.get_by_role("heading", name="A/B test")).to_be_visible()
    expect(section).to_contain_text("Variant B went to the rest")
    expect(section.locator("tr[data-variant=B]")).to_contain_text("winner")
    expect(section.locator("tr[data-variant=A] td").first).to_have_text(str(sent_a))
    expect(page.locator("#ab-report-decision")).to_contain_text("chosen for the rest by")
    screenshot(page, "abtest-report")
