"""Colours people rely on: footer links at 4.5:1 or more, focus rings and field borders at 3:1 or more (WCAG 2.2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailer.compose import DEFAULT_FOOTER

STATIC = Path(__file__).resolve().parents[3] / "campaigns" / "static"
# White and the light tints mail templates put behind the footer (the starters' backgrounds).
BACKGROUNDS = ("#ffffff", "#f4f1ea", "#f4f4f5", "#f8fafc")


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_formula_matches_known_values() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#6b7280", "#f4f1ea"), 2) == 4.29          # the old footer grey on a tint: too light


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_the_shared_mail_footer_reads_at_4_5_to_1(background: str) -> None:
    colours = re.findall(r'color[=:]"?(#[0-9a-fA-F]{6})', DEFAULT_FOOTER)
    assert len(colours) == 4                                          # the text and the three links
    assert min(contrast(c, background) for c in colours) >= 4.5


@pytest.mark.parametrize("sheet", ["public.css", "admin.css"])
def test_focus_rings_and_field_borders_reach_3_to_1(sheet: str) -> None:
    css = (STATIC / sheet).read_text()
    rings = re.findall(r":focus-visible[^{]*\{[^}]*outline:\s*\d+px solid (#[0-9a-fA-F]{6})", css)
    borders = re.findall(r"input:not\(\[type=checkbox\]\)[^{]*\{[^}]*border:1px solid (#[0-9a-fA-F]{6})", css)
    assert rings and borders
    for colour in rings + borders:
        assert contrast(colour, "#ffffff") >= 3, colour


def test_saving_preferences_moves_focus_to_an_announced_confirmation(client, runtime, make_contacts) -> None:
    from mailer.tracking import Purpose

    _topic, (contact,) = make_contacts(1)
    url = "/p/" + runtime.tokens.seal(Purpose.PREFERENCES, contact.id)
    page = client.get(url).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    saved = client.post(url, data={"csrf_token": token, "first_name": "New"}).get_data(as_text=True)
    status = re.search(r'<div class="ok"[^>]*>', saved).group(0)
    assert 'role="status"' in status and 'tabindex="-1"' in status and "autofocus" in status
