"""Every recipient URL that campaigns.recipient_urls builds lands on a route of the public blueprint."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from werkzeug.exceptions import NotFound

from campaigns import recipient_urls
from mailer.tracking import Purpose, TokenCodec

BASE = "https://news.shop.test"


def _endpoint(app, url: str, method: str = "GET") -> str:
    parts = urlsplit(url)
    adapter = app.url_map.bind(parts.netloc, url_scheme=parts.scheme)
    endpoint, _args = adapter.match(parts.path, method=method)
    return endpoint


@pytest.mark.parametrize("purpose", list(recipient_urls.PATHS))
def test_the_public_blueprint_has_a_rule_for_every_recipient_path(app, purpose: Purpose) -> None:
    codec = TokenCodec("k" * 32)
    ids = {Purpose.CLICK: (1, 2), Purpose.TX_CLICK: (1, 2), Purpose.UNSUBSCRIBE: (1, 0), Purpose.CONFIRM: (1, 20000),
           Purpose.SURVEY: (1, 0, 1), Purpose.EVENT: (1, 1), Purpose.DRAW: (1, 2, 0)}.get(purpose, (1,))
    url = recipient_urls.sealed(BASE, codec, purpose, *ids)
    assert url.startswith(recipient_urls.prefix(BASE, purpose))
    assert _endpoint(app, url).startswith("public.")


def test_the_signup_form_page_is_a_public_rule(app) -> None:
    assert _endpoint(app, recipient_urls.signup_form(BASE, "AbC123")).startswith("public.")


def test_a_draws_public_page_is_a_public_rule(app) -> None:
    assert _endpoint(app, recipient_urls.draw_page(BASE, "AbC123")) == "public.draw_page"


def test_a_path_nobody_builds_has_no_rule(app) -> None:
    with pytest.raises(NotFound):
        _endpoint(app, f"{BASE}/x/token")


def test_an_event_calendar_file_is_a_public_rule(app) -> None:
    url = recipient_urls.sealed(BASE, TokenCodec("k" * 32), Purpose.EVENT, 1, 0) + recipient_urls.CALENDAR
    assert _endpoint(app, url) == "public.event_calendar"
