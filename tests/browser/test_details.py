"""The preference center's details form on a phone (375 px): it fits the screen, a mistake is shown next to its field
with everything typed still there, and a corrected form saves (what the database then holds is checked)."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import Page, expect

from tests.browser.a11y import assert_accessible
from tests.browser.flows import LiveServer, screenshot

pytestmark = pytest.mark.browser


def fits(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"{page.url} is {width} px wide on a 375 px screen"


def test_details_form_at_375_px(page: Page, demo_data: LiveServer, runtime) -> None:
    from sqlalchemy import select

    from campaigns.models import Contact, Event, EventType, PostOptOut
    from mailer.tracking import Purpose

    with runtime.session_factory() as session:
        contact_id = session.scalar(select(Contact.id).order_by(Contact.id))
    page.set_viewport_size({"width": 375, "height": 812})
    page.goto(demo_data.path(f"/p/{runtime.tokens.seal(Purpose.PREFERENCES, contact_id)}"))
    page.get_by_role("link", name="Update your details").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your details")
    fits(page)
    assert_accessible(page, "details")

    page.get_by_label("Street and number").fill("Rosenallee 7")
    page.get_by_label("Postal code").fill("14467")
    page.get_by_label("Town or city").fill("Potsdam")
    page.get_by_label("Country").select_option("DE")
    page.get_by_label("Phone number (optional)").fill("12")               # too short to be a number
    page.get_by_label("Day", exact=True).fill("31")
    page.get_by_label("Month", exact=True).select_option(label="April")                # 31 April does not exist
    page.get_by_label("Year (optional)").fill("")                           # day and month only
    page.get_by_label("Where you read your mail").select_option("Europe/Berlin")
    page.get_by_label("What you would like to hear about").fill("roses, herbs")
    page.get_by_label("No post, please").check()
    page.get_by_role("button", name="Save my details").click()

    # Both problems next to their fields, the summary focused, everything typed still there.
    expect(page.get_by_role("alert")).to_be_focused()
    expect(page.locator("#phone-error")).to_contain_text("not a phone number")
    expect(page.locator("#birthday-error")).to_have_text("April has no day 31.")
    expect(page.get_by_label("Phone number (optional)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Street and number")).to_have_value("Rosenallee 7")
    expect(page.get_by_label("Town or city")).to_have_value("Potsdam")
    expect(page.get_by_label("Country")).to_have_value("DE")
    expect(page.get_by_label("What you would like to hear about")).to_have_value("roses, herbs")
    expect(page.get_by_label("No post, please")).to_be_checked()
    fits(page)
    error_box = page.locator("#phone-error").bounding_box()
    field_box = page.get_by_label("Phone number (optional)").bounding_box()
    assert 0 <= field_box["y"] - (error_box["y"] + error_box["height"]) < 40     # the message sits right above
    assert field_box["x"] >= 0 and field_box["x"] + field_box["width"] <= 375
    screenshot(page, "public-details-errors-375")
    with runtime.session_factory() as session:
        assert session.get(Contact, contact_id).address_line1 != "Rosenallee 7"      # nothing saved yet

    # The summary links to the fields.
    expect(page.get_by_role("link", name="April has no day 31.")).to_have_attribute("href", "#birth_day")
    page.get_by_label("Phone number (optional)").fill("0331 2345678")
    page.get_by_label("Day", exact=True).fill("30")
    page.get_by_role("button", name="Save my details").click()
    expect(page.get_by_role("status")).to_contain_text("Your postal address is saved.")
    expect(page.get_by_role("status")).to_be_focused()
    fits(page)
    assert_accessible(page, "details-saved")
    screenshot(page, "public-details-saved-375")
    with runtime.session_factory() as session:
        c = session.get(Contact, contact_id)
        assert (c.address_line1, c.postal_code, c.city, c.country) == ("Rosenallee 7", "14467", "Potsdam", "DE")
        assert c.phone == "+493312345678" and c.timezone == "Europe/Berlin"
        assert c.birthday == dt.date(1904, 4, 30)               # no year given
        assert sorted(i.interest for i in c.interests) == ["herbs", "roses"]
        assert session.get(PostOptOut, contact_id) is not None
        assert session.scalar(select(Event).where(Event.contact_id == contact_id, Event.type == EventType.DETAILS))
