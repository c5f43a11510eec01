"""Which links are tracked: static http(s) links and personalised links on a fixed site; links made entirely by
template code are left alone. Personalised links are stored as templates and rendered per click.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from html import unescape as html_unescape
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError

from mailer.compose.campaign import TemplateError
from mailer.personalize import text_env
from mailer.sandbox import render_budget
from mailer.tracking import rewrite_links, trackable

# A personalised link is tracked when its scheme and host are plain text: template code only from the path on,
# so no value can change which site the click goes to.
_FIXED_SITE = re.compile(r"\s*https?://[^/?#{}%\s]+[/?#]", re.IGNORECASE)


def is_personalised(url: str) -> bool:
    """Whether a link contains template code (rendered per recipient)."""
    return "{{" in url or "{%" in url


def personalised_link(url: str) -> bool:
    """A link with template code after a fixed http(s) site: stored as its template, rendered per click."""
    return is_personalised(url) and bool(_FIXED_SITE.match(url))


def is_tracked(url: str) -> bool:
    return trackable(url) or personalised_link(url)


def tracked_links(html: str) -> list[str]:
    """The links of html that get tracked (entity-decoded, first-seen order, each once): static http(s) links and
    personalised links on a fixed site. Links made entirely by template code (unsubscribe_url, survey_url())
    are left as they are."""
    seen: dict[str, None] = {}

    def collect(url: str) -> None:
        if is_tracked(url):
            seen.setdefault(html_unescape(url.strip()), None)

    rewrite_links(html, collect)
    return list(seen)


def untracked_web_links(html: str) -> list[str]:
    """http(s) links and template-made links that are not tracked, each once (mailto:, tel: and anchors aside)."""
    seen: dict[str, None] = {}

    def collect(url: str) -> None:
        url = html_unescape(url.strip())
        if not is_tracked(url) and (url.lower().startswith(("http://", "https://")) or url.startswith(("{{", "{%"))):
            seen.setdefault(url, None)

    rewrite_links(html, collect)
    return list(seen)


@lru_cache(maxsize=256)
def _link_template(source: str) -> Template:
    return text_env().from_string(source)


def render_link(source: str, context: Mapping[str, Any]) -> str:
    """A personalised link's URL for one recipient, as a browser would follow it from the mail."""
    try:
        template = _link_template(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message) from None
    with render_budget():
        try:
            return template.render(context).strip()
        except SecurityError as exc:        # LimitExceeded too
            raise TemplateError(f"link: {exc}") from None
        except (JinjaTemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError,
                RecursionError) as exc:
            raise TemplateError(f"link: {exc}") from None
