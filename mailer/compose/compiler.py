"""Compile a campaign once: MJML -> HTML -> inlined CSS -> sandboxed Jinja templates, link table and text part.

The per-recipient work is then only rendering (see :meth:`CompiledCampaign.render`). Where the text allows, the
quoted-printable wire form of each part is compiled too, so a message needs no encoding pass per recipient.
"""

from __future__ import annotations

from html import unescape as html_unescape

from jinja2 import Template, TemplateSyntaxError

from mailer import qp
from mailer.compose.campaign import CampaignSource, CompiledCampaign, TemplateError
from mailer.compose.links import is_tracked, tracked_links, untracked_web_links
from mailer.compose.markup import (
    MJMLStructure,
    check_jinja,
    collapse_spaces,
    mjml_to_html,
    with_footer,
    with_language,
    with_preheader,
    with_title_and_scheme,
    without_unasked_fonts,
)
from mailer.compose.text import html_to_text
from mailer.personalize import html_env, text_env, wire_env
from mailer.sourcemap import mark_lines
from mailer.tracking import rewrite_links

BASE64_THRESHOLD = 1 / 6     # non-ASCII share of static text above which base64 is shorter than QP
_OPEN_PIXEL = (
    '<img src="{{ _open_url }}" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0;overflow:hidden">'
)


def compile_campaign(src: CampaignSource) -> CompiledCampaign:
    """Compile once per campaign content; raises TemplateError for invalid MJML or template code."""
    check_jinja(src.subject, "subject")
    check_jinja(src.preheader, "preheader")
    check_jinja(src.mjml, "template")
    # Structure is checked on the marketer's own source, before the footer is added, so lines match the editor.
    if "<mjml" not in src.mjml.lower():
        raise TemplateError("the document must start with <mjml>", 1)
    MJMLStructure().check(src.mjml)
    if src.text_body:
        check_jinja(src.text_body, "plain-text part")
    source = with_language(with_footer(src.mjml, src.transactional), src.lang)
    html = with_title_and_scheme(without_unasked_fonts(mjml_to_html(source), source))
    html = collapse_spaces(with_preheader(html, src.preheader))
    links = tracked_links(html)
    untracked = untracked_web_links(html)
    index = {url: i for i, url in enumerate(links)}
    html = rewrite_links(
        html, lambda url: f"{{{{ _links[{index[html_unescape(url.strip())]}] }}}}" if is_tracked(url) else None
    )
    idx = html.lower().rfind("</body>")
    html = html[:idx] + _OPEN_PIXEL + html[idx:] if idx >= 0 else html + _OPEN_PIXEL
    text_source = src.text_body or html_to_text(html)
    html_wire, text_wire = _wire_template(html, html=True), _wire_template(text_source, html=False)
    html_source, html_lines = mark_lines(html, src.mjml)
    try:
        return CompiledCampaign(
            content_hash=src.content_hash(),
            subject=text_env().from_string(src.subject),
            html=html_env().from_string(html_source),
            text=text_env().from_string(text_source),
            links=tuple(links),
            html_wire=html_wire[0] if html_wire else None,
            text_wire=text_wire[0] if text_wire else None,
            sources={"mjml": src.mjml, "html": html_source, "text": text_source, "text_body": src.text_body,
                     "html_wire": html_wire[1] if html_wire else "", "text_wire": text_wire[1] if text_wire else ""},
            html_lines=html_lines,
            untracked=tuple(untracked),
        )
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message, exc.lineno) from None


def _wire_template(source: str, *, html: bool) -> tuple[Template, str] | None:
    """A template rendering the QP-encoded part and its source, or None when per-message encoding is better."""
    if qp.non_ascii_share(source) > BASE64_THRESHOLD:
        return None          # mostly non-Latin text: base64 is shorter, chosen per message by encode_part
    try:
        wire = qp.compile_source(source)
        return wire_env(html).from_string(wire), wire
    except qp.Unsupported:
        return None
