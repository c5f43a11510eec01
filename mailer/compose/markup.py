"""The MJML -> HTML pipeline: structure and Jinja checks on the marketer's source, the footer Rapport adds, the
document language and direction, MJML rendering with Jinja code kept intact, and the HTML touch-ups (preheader,
title, colour scheme, fonts nobody asked for, indentation).
"""

from __future__ import annotations

import logging
import re
from html import escape as html_escape
from html.parser import HTMLParser

import mjml
from jinja2 import TemplateSyntaxError
from premailer import Premailer

from mailer.compose.campaign import TemplateError
from mailer.personalize import text_env
from mailer.sourcemap import JINJA_TAG

_SPACE_RUN = re.compile(r"[ \t]{2,}|\t")
_PLACEHOLDER = re.compile(r"rjx(\d+)x")

# Greys dark enough for 4.5:1 on white and on the light tints mail backgrounds use (#4b5563 is 6.9:1 on #f4f1ea,
# #374151 for the links 9:1): these are the links people need most.
DEFAULT_FOOTER = """
<mj-section padding="16px 0">
  <mj-column>
    <mj-text align="center" font-size="13px" line-height="20px" color="#4b5563">
      {{ sender.postal_address }}<br>
      <a href="{{ unsubscribe_url }}" style="color:#374151;text-decoration:underline">Unsubscribe</a> &middot;
      <a href="{{ preferences_url }}" style="color:#374151;text-decoration:underline">Manage preferences</a> &middot;
      <a href="{{ preferences_url }}/details" style="color:#374151;text-decoration:underline">Update your details</a>
    </mj-text>
  </mj-column>
</mj-section>
"""

# Transactional mail (an order note, a personal apology) has no List-Unsubscribe header and cannot be unsubscribed
# from: its footer offers the preferences page only, so it never shows a link that would do nothing for it.
TRANSACTIONAL_FOOTER = """
<mj-section padding="16px 0">
  <mj-column>
    <mj-text align="center" font-size="12px" line-height="18px" color="#6b7280">
      {{ sender.postal_address }}<br>
      <a href="{{ preferences_url }}" style="color:#6b7280">Manage your mail preferences</a> &middot;
      <a href="{{ preferences_url }}/details" style="color:#6b7280">Update your details</a>
    </mj-text>
  </mj-column>
</mj-section>
"""


class MJMLStructure(HTMLParser):
    """Checks that mj-* tags nest and close, reporting line numbers mjml-python does not give."""

    VOID = {"mj-image", "mj-divider", "mj-spacer", "mj-breakpoint", "mj-font", "mj-all", "mj-class",
            "mj-carousel-image", "mj-social-element-void", "mj-preview-void"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[tuple[str, int]] = []
        self.error: TemplateError | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if self.error or not (tag.startswith("mj-") or tag == "mjml"):
            return
        if tag not in self.VOID:
            self.stack.append((tag, self.getpos()[0]))

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        pass  # <mj-image ... /> opens nothing

    def handle_endtag(self, tag: str) -> None:
        if self.error or not (tag.startswith("mj-") or tag == "mjml") or tag in self.VOID:
            return
        line = self.getpos()[0]
        if not self.stack:
            self.error = TemplateError(f"</{tag}> closes a tag that was never opened", line)
        elif self.stack[-1][0] != tag:
            open_tag, open_line = self.stack[-1]
            self.error = TemplateError(f"</{tag}> found, but <{open_tag}> from line {open_line} is still open", line)
        else:
            self.stack.pop()

    def check(self, source: str) -> None:
        self.feed(source)
        self.close()
        if self.error:
            raise self.error
        if self.stack:
            tag, line = self.stack[-1]
            raise TemplateError(f"<{tag}> is never closed", line)


def check_jinja(source: str, what: str, line_offset: int = 0) -> None:
    try:
        text_env().compile(source)   # compiling also finds unknown filters and tests
    except TemplateSyntaxError as exc:
        line = (exc.lineno or 1) + line_offset
        raise TemplateError(f"{what}: {exc.message}", line) from None


def _protect(source: str) -> tuple[str, list[str]]:
    """Swap Jinja code for inert placeholders so MJML and the CSS inliner can't escape or mangle it."""
    saved: list[str] = []

    def sub(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        return f"rjx{len(saved) - 1}x"

    return JINJA_TAG.sub(sub, source), saved


def _restore(html: str, saved: list[str]) -> str:
    return _PLACEHOLDER.sub(lambda m: saved[int(m.group(1))], html)


def with_footer(source: str, transactional: bool = False) -> str:
    own_footer = "preferences_url" in source if transactional else "unsubscribe_url" in source
    if not own_footer:
        idx = source.lower().rfind("</mj-body>")
        if idx < 0:
            raise TemplateError("<mj-body> is missing: an MJML document needs <mjml><mj-body>…</mj-body></mjml>")
        source = source[:idx] + (TRANSACTIONAL_FOOTER if transactional else DEFAULT_FOOTER) + source[idx:]
    return source


# Scripts written right to left; the mail's dir follows its language.
_RTL_LANGUAGES = {"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ps", "sd", "ug", "ur", "yi"}
_LANG_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
_MJML_OPEN = re.compile(r"<mjml\b[^>]*>", re.IGNORECASE)


def text_direction(lang: str) -> str:
    """ "rtl" for languages written right to left, else "ltr"."""
    return "rtl" if lang.split("-")[0].lower() in _RTL_LANGUAGES else "ltr"


def valid_language(lang: str) -> bool:
    """Whether lang looks like a BCP 47 language tag ("de", "pt-BR")."""
    return bool(_LANG_TAG.fullmatch(lang))


def with_language(source: str, lang: str) -> str:
    """Set lang and dir on <mjml> from the campaign's language unless the marketer's MJML already does."""
    if not lang or not valid_language(lang):
        return source
    match = _MJML_OPEN.search(source)
    if match is None or re.search(r"\slang\s*=", match.group(0)):
        return source
    attrs = f' lang="{lang}"'
    if not re.search(r"\sdir\s*=", match.group(0)):
        attrs += f' dir="{text_direction(lang)}"'
    end = match.start() + len("<mjml")
    return source[:end] + attrs + source[end:]


# Mailbox-safe hiding: no colour (a white-on-tint colour is what spam filters score as hidden text), zero size,
# and mso-hide for Outlook. Padding after the text keeps clients from filling the preview with the body's first words.
_PREHEADER = ('<div style="display:none;font-size:0;line-height:0;max-height:0;max-width:0;opacity:0;'
              'overflow:hidden;mso-hide:all" aria-hidden="true">{text}' + "&#847;&zwnj;&nbsp;" * 30 + "</div>")
BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def with_preheader(html: str, preheader: str) -> str:
    """Put the hidden preview text first in the body; its template code stays, static text is escaped."""
    if not preheader.strip():
        return html
    protected, saved = _protect(preheader)
    text = _restore(html_escape(protected, quote=False), saved)
    match = BODY_OPEN.search(html)
    at = match.end() if match else 0
    return html[:at] + _PREHEADER.format(text=text) + html[at:]


_EMPTY_TITLE = re.compile(r"<title>\s*</title>", re.IGNORECASE)
_HEAD_OPEN = re.compile(r"<head\b[^>]*>", re.IGNORECASE)

# The starters are designed light, with their own backgrounds and text colours: declaring "light" keeps clients that
# honour it (Apple Mail, iOS Mail, Chromium-based web views) from recolouring parts of them in dark mode, which is
# how white text ends up on a white card. Clients that force their own dark theme (Gmail apps) invert the whole mail.
_COLOR_SCHEME = ('<meta name="color-scheme" content="light"><meta name="supported-color-schemes" content="light">'
                 '<style type="text/css">:root{color-scheme:light;supported-color-schemes:light}</style>')


def with_title_and_scheme(html: str) -> str:
    """An empty <title> (no <mj-title>) gets the subject as rendered for the recipient; the colour scheme is declared.

    The title reads `_subject`, which render() sets once per message: the subject's template runs once, and its
    errors are reported as the subject's.
    """
    html = _EMPTY_TITLE.sub("<title>{{ _subject }}</title>", html, count=1)
    if 'name="color-scheme"' not in html:
        match = _HEAD_OPEN.search(html)
        if match:
            html = html[:match.end()] + _COLOR_SCHEME + html[match.end():]
    return html


_FONT_LINK = re.compile(r"<link\b[^>]*\bhref=\"([^\"]*)\"[^>]*>", re.IGNORECASE)
_FONT_IMPORT = re.compile(r"@import url\(([^)]*)\);?")
_EMPTY_STYLE = re.compile(r'<style type="text/css">\s*</style>')
_EMPTY_IF = re.compile(r"<!--\[if !mso\]><!-->\s*<!--<!\[endif\]-->")
_MJ_FONT_HREF = re.compile(r"<mj-font\b[^>]*\bhref\s*=\s*[\"']([^\"']+)", re.IGNORECASE)


def without_unasked_fonts(html: str, source: str) -> str:
    """Drop the web fonts MJML adds by itself (Google Fonts for its default Ubuntu): every open would tell a
    third party who read the mail. Fonts the marketer declares with <mj-font> stay."""
    wanted = {m.group(1).strip() for m in _MJ_FONT_HREF.finditer(source)}
    html = _FONT_LINK.sub(lambda m: m.group(0) if m.group(1) in wanted or "stylesheet" not in m.group(0) else "", html)
    html = _FONT_IMPORT.sub(lambda m: m.group(0) if m.group(1) in wanted else "", html)
    return _EMPTY_IF.sub("", _EMPTY_STYLE.sub("", html))


def mjml_to_html(source: str) -> str:
    """MJML to HTML with inlined CSS; raises TemplateError with a line number when it can."""
    # Browsers submit textarea line breaks as CRLF, which mjml-python refuses.
    protected, saved = _protect(source.replace("\r\n", "\n").replace("\r", "\n"))
    try:
        html = mjml.mjml2html(protected)
    except ValueError as exc:
        raise TemplateError(f"MJML: {exc}") from None
    # Never fetch anything (fonts, external CSS) while compiling; keep <style> for media queries.
    html = Premailer(
        html,
        allow_network=False,
        disable_validation=True,
        keep_style_tags=True,
        remove_classes=False,
        strip_important=False,
        cssutils_logging_level=logging.CRITICAL,
        allow_loading_external_files=False,
    ).transform(pretty_print=False)
    return _restore(html, saved)


def collapse_spaces(html: str) -> str:
    """Runs of spaces and tabs (MJML's indentation) to one space: the same HTML, smaller, and DKIM's relaxed
    body canonicalization then has nothing to rewrite. Left alone where whitespace is content."""
    lowered = html.lower()
    if "<pre" in lowered or "<textarea" in lowered or "white-space:pre" in lowered.replace(" ", ""):
        return html
    return _SPACE_RUN.sub(" ", html)
