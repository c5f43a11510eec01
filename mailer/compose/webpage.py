"""A rendered mail shown as a web page ("view in browser"): a ``<main>`` landmark and one level-one heading."""

from __future__ import annotations

import re

from mailer.compose.markup import BODY_OPEN

_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_H1 = re.compile(r"<h1[\s>]", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)

# Hidden from view, read by screen readers: the page's one level-one heading when the mail has none of its own.
_VISUALLY_HIDDEN = ("position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;"
                    "clip:rect(0 0 0 0);white-space:nowrap;border:0")


def web_page(html: str) -> str:
    """A rendered mail as a web page: its content in a <main> landmark, with a level-one heading (the title)."""
    opening = BODY_OPEN.search(html)
    closing = _BODY_CLOSE.search(html, opening.end()) if opening else None
    if opening is None or closing is None:
        return html
    heading = ""
    if not _H1.search(html, opening.end(), closing.start()):
        title = _TITLE.search(html)
        text = title.group(1).strip() if title else ""
        heading = f'<h1 style="{_VISUALLY_HIDDEN}">{text}</h1>' if text else ""
    return (html[:opening.end()] + "<main>" + heading + html[opening.end():closing.start()] + "</main>"
            + html[closing.start():])
