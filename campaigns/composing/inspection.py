"""Show a sent message to the admin without firing its tracking: no open pixel, clicks go straight to their target.

A marketer looking at a message in the Outbox is not its recipient; an open or click recorded then would count a
person who never read it ("opened (2 people)" when one did).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape, unescape

from campaigns import recipient_urls
from campaigns.errors import NotFound
from mailer.tracking import InvalidToken, Purpose, TokenCodec

# A transparent 1x1 GIF in place of the open pixel, so the layout stays as the recipient sees it.
BLANK_PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
_URL_ATTR = re.compile(r"""(\b(?:href|src)\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def without_tracking(html: str, base_url: str, tokens: TokenCodec, click_target: Callable[[int, int], str],
                     web_version: Callable[[str], str],
                     tx_click_target: Callable[[int, int], str] | None = None) -> str:
    """html with our open pixels blanked, click links pointing at their targets and web-version links at
    web_version(token) (an admin page that records nothing). click_target(send_id, link_id) gives a link's URL,
    tx_click_target(tx_message_id, link_id) a transactional message's."""
    base = base_url.rstrip("/")

    def sub(match: re.Match[str]) -> str:
        url = unescape(match.group(3)).strip()
        found = recipient_urls.purpose_of(url[len(base):]) if url.startswith(base + "/") else None
        purpose, token = found if found is not None else (None, "")
        if purpose in (Purpose.OPEN, Purpose.TX_OPEN):
            new = BLANK_PIXEL
        elif purpose == Purpose.CLICK:
            try:
                new = click_target(*tokens.open(Purpose.CLICK, token))
            except (InvalidToken, NotFound):
                new = "#"
        elif purpose == Purpose.TX_CLICK:
            try:
                new = tx_click_target(*tokens.open(Purpose.TX_CLICK, token)) if tx_click_target else "#"
            except (InvalidToken, NotFound):
                new = "#"
        elif purpose == Purpose.WEB:
            new = web_version(token)
        else:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{escape(new)}{match.group(2)}"

    return _URL_ATTR.sub(sub, html)
