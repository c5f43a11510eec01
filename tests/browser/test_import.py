"""Importing contacts in a real browser: upload a CSV with bad rows, map the columns, watch the progress bar move
without reloading while the real worker runs, and download the error report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser

CSV = """Email,First name,Last name,Birthday,Country,Shoe size,Interests
new.anna@example.com,Anna,Becker,1990-04-23,DE,38,roses; herbs
new.ben@example.com,Ben,Otto,23.04.1985,AT,44,
no-at-sign,Carl,Bad,,DE,40,
new.dora@example.com,Dora,Date,1990-13-45,DE,39,
new.eve@example.com,Eve,Country,,Germany,37,
new.fred@example.com,Fred,Fine,,,,
"""


def test_import_a_csv_with_bad_rows_and_download_the_error_report(admin_page: Page, demo_data: LiveServer,
                                                                   worker, tmp_path: Path) -> None:
    page = admin_page
    source = tmp_path / "spring-fair.csv"
    source.write_text(CSV)

    page.get_by_role("link", name="Contacts").click()
    page.get_by_role("link", name="Import").click()
    expect(page.get_by_role("heading", name="Import contacts")).to_be_visible()
    page.get_by_role("button", name="Upload").click()             # nothing chosen: the browser asks for a file
    expect(page).to_have_url(demo_data.path("/admin/contacts/import"))
    page.get_by_label("CSV file").set_input_files(str(source))
    screenshot(page, "import-upload")
    page.get_by_role("button", name="Upload").click()

    # The mapping page guesses the fields from the header and shows the first rows.
    expect(page.get_by_role("heading", name="Map the columns of spring-fair.csv")).to_be_visible()
    expect(page.get_by_label("Import Email as")).to_have_value("email")
    expect(page.get_by_label("Import Birthday as")).to_have_value("birthday")
    expect(page.get_by_label("Import Shoe size as")).to_have_value("attribute")
    expect(page.get_by_label("Attribute name for Shoe size")).to_have_value("shoe_size")
    # The attribute name is asked for only where a column becomes a custom attribute.
    expect(page.get_by_label("Attribute name for Email")).to_be_hidden()
    expect(page.get_by_label("Attribute name for Country")).to_be_hidden()
    page.get_by_label("Import Country as").select_option(label="Custom attribute…")
    expect(page.get_by_label("Attribute name for Country")).to_be_visible()
    page.get_by_label("Import Country as").select_option(label="Country (2 letters)")
    expect(page.get_by_label("Attribute name for Country")).to_be_hidden()
    expect(page.get_by_role("cell", name="no-at-sign")).to_be_visible()
    page.get_by_label("Import Interests as").select_option(label="Interests (list)")
    page.get_by_label("Update them with the file's values").check()
    # The mapping fits the 1,280 px window and every "Import as" choice can be read whole.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    widths = page.locator("select[id^=col-]").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    assert widths and min(widths) >= 150, widths
    screenshot(page, "import-map")
    page.get_by_role("button", name="Start import").click()

    # Queued: the worker is not running yet. The page then follows the import without a reload.
    bar = page.get_by_role("progressbar", name="Import progress")
    expect(bar).to_be_visible()
    expect(page.get_by_text("queued · 0 rows read")).to_be_visible()
    page.evaluate("window.__sameDocument = true")
    worker.start()
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_text("finished · 6 rows read · 3 created · 0 updated · 0 skipped · 3 failed")).to_be_visible()
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded instead of updating itself"
    report_link = page.get_by_role("link", name="Download the error report")
    expect(report_link).to_be_visible()
    screenshot(page, "import-progress")

    with page.expect_download() as download_info:
        report_link.click()
    download = download_info.value
    assert download.suggested_filename.startswith("import-errors-") and download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["Email", "First name", "Last name", "Birthday", "Country", "Shoe size", "Interests", "error"]
    reasons = {row[0]: row[-1] for row in rows[1:]}
    assert set(reasons) == {"no-at-sign", "new.dora@example.com", "new.eve@example.com"}
    assert "not a valid email" in reasons["no-at-sign"]
    assert "not a date" in reasons["new.dora@example.com"]
    assert "two-letter code" in reasons["new.eve@example.com"]
    assert rows[1][:3] == ["no-at-sign", "Carl", "Bad"]            # the row comes back as it was, to fix

    # The good rows are in the contact list, with what the file said.
    page.get_by_role("link", name="Back to contacts").click()
    search = page.get_by_label("Search", exact=True)
    search.fill("new.")
    search.press("Enter")
    for email in ("new.anna@example.com", "new.ben@example.com", "new.fred@example.com"):
        expect(page.get_by_role("link", name=email)).to_be_visible()
    expect(page.get_by_role("link", name="new.dora@example.com")).to_have_count(0)
    page.get_by_role("link", name="new.anna@example.com").click()
    expect(page.get_by_label("First name")).to_have_value("Anna")
    screenshot(page, "contact")
