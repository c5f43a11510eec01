"""Starter mails in Chromium, light and dark: the declared colour scheme holds the designed colours (issue 17 item 26).

Screenshots of each (artifacts/screenshots/mail-<starter>-<scheme>.png) are for a person to look at.
"""

from __future__ import annotations

import pytest

from tests.browser.flows import screenshot
from tests.campaigns.composing.test_mail_head import delivered_html


@pytest.mark.parametrize("key", ["coupon", "newsletter", "blank"])
def test_starter_mails_keep_their_design_in_dark_mode(key, browser, editor, db_session, make_contacts,
                                                      outbox) -> None:
    html = delivered_html(editor, db_session, make_contacts, outbox, key)
    looks = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(color_scheme=scheme, viewport={"width": 640, "height": 900})
        page.route("**/*", lambda route: route.abort())      # a mail viewer loads no remote images here
        page.set_content(html)
        assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is (scheme == "dark")
        looks[scheme] = page.evaluate("""() => {
            const bg = el => getComputedStyle(el).backgroundColor;
            const cells = [...document.querySelectorAll('td, div')].map(bg).filter(c => c !== 'rgba(0, 0, 0, 0)');
            return {scheme: getComputedStyle(document.documentElement).colorScheme, title: document.title,
                    backgrounds: cells.slice(0, 40)};
        }""")
        screenshot(page, f"mail-{key}-{scheme}")
        page.close()
    assert looks["light"]["scheme"] == looks["dark"]["scheme"] == "light"
    assert looks["dark"]["title"].strip()
    assert looks["dark"]["backgrounds"] == looks["light"]["backgrounds"]
    if key == "coupon":
        assert "rgb(120, 53, 15)" in looks["dark"]["backgrounds"]      # the brand header
