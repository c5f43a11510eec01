"""Compile a campaign once: MJML -> HTML -> inlined CSS -> sandboxed Jinja templates, link table and text part.

The per-recipient work is then only rendering (see :meth:`CompiledCampaign.render`).

:mod:`.compiler` runs the steps; :mod:`.markup` is the MJML/HTML pipeline, :mod:`.links` decides which links are
tracked, :mod:`.text` derives the plain-text part, :mod:`.campaign` holds the compiled result and renders it, and
:mod:`.webpage` turns a rendered mail into a web page.
"""

from mailer.compose.campaign import (
    COMPILER_VERSION,
    CampaignSource,
    CompiledCampaign,
    EncodedLinks,
    LinkURLs,
    Rendered,
    TemplateError,
)
from mailer.compose.compiler import BASE64_THRESHOLD, compile_campaign
from mailer.compose.links import is_personalised, personalised_link, render_link, tracked_links
from mailer.compose.markup import DEFAULT_FOOTER, TRANSACTIONAL_FOOTER, mjml_to_html, text_direction, valid_language
from mailer.compose.text import html_to_text
from mailer.compose.webpage import web_page

__all__ = [
    "BASE64_THRESHOLD",
    "COMPILER_VERSION",
    "DEFAULT_FOOTER",
    "TRANSACTIONAL_FOOTER",
    "CampaignSource",
    "CompiledCampaign",
    "EncodedLinks",
    "LinkURLs",
    "Rendered",
    "TemplateError",
    "compile_campaign",
    "html_to_text",
    "is_personalised",
    "mjml_to_html",
    "personalised_link",
    "render_link",
    "text_direction",
    "tracked_links",
    "valid_language",
    "web_page",
]
