"""A campaign in a real browser: preview it at desktop and mobile width, send a test and find it in the Outbox,
send it, watch the progress bar reach 100% while the real worker sends, and open its report."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.browser.flows import LiveServer, frame, frame_eval, screenshot, viewport_width

pytestmark = pytest.mark.browser


def open_campaign(page: Page, name: str) -> int:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    return int(re.search(r"/campaigns/(\d+)", page.url).group(1))


def test_preview_at_desktop_and_mobile_width(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    open_campaign(page, "March newsletter")
    # The email is laid out at the widths a reader sees: 600 px on a desktop client, 375 px on a phone.
    assert viewport_width(page, "Desktop preview") == 600
    assert viewport_width(page, "Mobile preview") == 375
    for title in ("Desktop preview", "Mobile preview"):
        body = frame(page, title).locator("body")
        expect(body).to_contain_text("what to sow")
        # Personalized like a real recipient's copy, with the footer every marketing mail must carry.
        expect(body).not_to_contain_text("{{")
        expect(body).to_contain_text("Lindenstraße 1")
    # MJML's columns stack on the phone: the mobile layout is no wider than its frame.
    assert frame_eval(page, "Mobile preview", "e => e.scrollWidth") <= 375
    screenshot(page, "campaign-preview")


def test_test_send_arrives_in_the_outbox(admin_page: Page, demo_data: LiveServer) -> None:
    page = admin_page
    open_campaign(page, "March newsletter")
    page.get_by_label(re.compile("^Send to")).fill("not an address")
    page.get_by_role("button", name="Send test").click()
    expect(page.locator(".flash.error")).to_be_visible()          # refused with a message, nothing sent
    page.get_by_label(re.compile("^Send to")).fill("proof@example.com, boss@example.com")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_text("Test sent to proof@example.com, boss@example.com.")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Outbox").click()
    expect(page.get_by_role("heading", name=re.compile("Outbox"))).to_contain_text("2 captured")
    screenshot(page, "outbox")
    row = page.get_by_role("row", name=re.compile("proof@example.com"))
    expect(row.locator(".badge")).to_have_text("test")                # a test send, marked as one
    row.get_by_role("link", name=re.compile("what to sow")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("what to sow this month")
    expect(frame(page, "Message").locator("body")).to_contain_text("Lindenstraße 1")
    headers = page.get_by_role("table").filter(has_text="DKIM-Signature")
    expect(headers).to_contain_text("List-Unsubscribe-Post")
    expect(headers).to_contain_text(f"{demo_data.url}/")           # recipient links point at this server
    screenshot(page, "outbox-message")


def test_send_watch_progress_reach_100_and_open_the_report(admin_page: Page, demo_data: LiveServer,
                                                           worker) -> None:
    page = admin_page
    campaign_id = open_campaign(page, "March newsletter")
    audience = int(re.search(r"\((\d+) now\)", page.locator("main").inner_text()).group(1))
    assert audience > 10
    page.on("dialog", lambda dialog: dialog.accept())               # "Send … to N contacts now?" — yes
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_text("Sending started.")).to_be_visible()
    bar = page.get_by_role("progressbar", name="Sending progress")
    expect(bar).to_have_attribute("aria-valuenow", "0")             # no worker yet: nothing has gone out
    page.evaluate("window.__sameDocument = true")
    worker.start()
    expect(bar).to_have_attribute("aria-valuenow", "100")
    progress = page.locator("#progress-text")
    expect(progress).to_contain_text(re.compile(rf"\b{audience} sent\b"))
    expect(progress).to_contain_text(re.compile(r"\b0 remaining\b"))
    expect(page.locator("#status")).to_have_text("finished")
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded instead of updating itself"
    screenshot(page, "campaign-sent")
    # Once a run ends the page reloads itself once (its buttons depend on the status): let it, before moving on,
    # or the reload can overtake the next click on a loaded machine.
    deadline = time.monotonic() + 20
    while True:
        try:
            if not page.evaluate("window.__sameDocument === true"):
                break
        except PlaywrightError:      # the reload destroyed the context the check ran in
            pass
        assert time.monotonic() < deadline, "the finished campaign's page never reloaded"
        page.wait_for_timeout(100)
    page.wait_for_load_state()
    expect(page.locator("#status")).to_have_text("finished")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Outbox").click()
    # Every recipient's copy is there (the demo's worker also forwards the seeded customer replies: not counted).
    page.get_by_label("Campaign", exact=True).select_option(str(campaign_id))
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(audience)

    page.goto(demo_data.path(f"/admin/campaigns/{campaign_id}"))
    page.get_by_role("link", name="Report", exact=True).click()
    expect(page).to_have_url(demo_data.path(f"/admin/campaigns/{campaign_id}/report"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Report: March newsletter")
    expect(page.get_by_role("row", name=re.compile(r"^Recipients"))).to_contain_text(str(audience))
    expect(page.get_by_role("row", name=re.compile(r"^Delivered"))).to_contain_text(f"{audience} of {audience} sent")
    # Just sent: nobody has opened or clicked yet. Those charts say so in a sentence instead of an empty plot.
    expect(page.get_by_text("Nothing to chart yet: no opens or clicks recorded.")).to_be_visible()
    expect(page.get_by_text("No clicks yet: its links are listed")).to_be_visible()
    expect(page.get_by_text("No send was held or skipped.")).to_be_visible()
    expect(page.get_by_role("img", name="Delivery")).to_be_visible()
    screenshot(page, "report-just-sent")

    # A report with history (the demo's earlier campaigns, opened and clicked).
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    reports = [a.get_attribute("href") for a in page.get_by_role("link", name="Report", exact=True).all()]
    for href in reports:
        page.goto(demo_data.path(href))
        if int(page.get_by_role("row", name=re.compile(r"^Clicked \(people\)")).locator("td").inner_text()
               .split()[0]) > 0:
            break
    else:
        raise AssertionError("no demo campaign with clicks to chart")
    # Every chart is a canvas drawn by the chart library served by the app (no CDN), with its accessible name.
    for name in ("Opens and clicks over time", "Clicks per link", "Delivery"):
        expect(page.get_by_role("img", name=name)).to_be_visible()
    for name in ("Opens and clicks over time", "Clicks per link", "Delivery"):
        chart = page.get_by_role("img", name=name)
        chart.evaluate("""c => new Promise((resolve, reject) => {
            const until = Date.now() + 15000;
            (function check() {
              const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
              for (let i = 3; i < d.length; i += 4) if (d[i]) return resolve(true);
              if (Date.now() > until) return reject(new Error("the chart stayed blank"));
              requestAnimationFrame(check);
            })();
        })""")
        assert chart.evaluate("c => !!window.Chart && !!window.Chart.getChart(c)"), f"{name}: not a Chart.js chart"
    # Every series is on at first (a legend entry struck through reads as "switched off"), and link labels are
    # whole: at most two lines of 30 characters, every link labelled.
    hidden = page.get_by_role("img", name="Opens and clicks over time").evaluate(
        "c => Chart.getChart(c).data.datasets.filter((d, i) => !Chart.getChart(c).isDatasetVisible(i)).length")
    assert hidden == 0
    labels = page.get_by_role("img", name="Clicks per link").evaluate("c => Chart.getChart(c).data.labels")
    lines = [line for label in labels for line in (label if isinstance(label, list) else [label])]
    assert labels and all(len(line) <= 30 for line in lines), labels
    ticks = page.get_by_role("img", name="Clicks per link").evaluate("c => Chart.getChart(c).scales.y.ticks.length")
    assert ticks == len(labels)
    screenshot(page, "report")
