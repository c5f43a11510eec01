"""Compile a campaign once: MJML -> HTML -> inlined CSS -> sandboxed Jinja templates, link table and text part.

The per-recipient work is then only rendering (see CompiledCampaign.render).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape as html_escape
from html import unescape as html_unescape
from html.parser import HTMLParser
from typing import Any

import lxml.html
import mjml
from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from premailer import Premailer

from mailer import qp
from mailer.message import encode_part, qp_part
from mailer.personalize import html_env, text_env, wire_env
from mailer.sandbox import LimitExceeded, render_budget
from mailer.sourcemap import JINJA_TAG, error_line, mark_lines, source_line
from mailer.tracking import rewrite_links, trackable

logger = logging.getLogger(__name__)

COMPILER_VERSION = "3"
_LINK_HTML = qp.value_encoder(html=True, cache=False)
_LINK_TEXT = qp.value_encoder(html=False, cache=False)
_SPACE_RUN = re.compile(r"[ \t]{2,}|\t")
BASE64_THRESHOLD = 1 / 6     # non-ASCII share of static text above which base64 is shorter than QP
_PLACEHOLDER = re.compile(r"rjx(\d+)x")
_OPEN_PIXEL = (
    '<img src="{{ _open_url }}" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0;overflow:hidden">'
)

DEFAULT_FOOTER = """
<mj-section padding="16px 0">
  <mj-column>
    <mj-text align="center" font-size="12px" line-height="18px" color="#6b7280">
      {{ sender.postal_address }}<br>
      <a href="{{ unsubscribe_url }}" style="color:#6b7280">Unsubscribe</a> &middot;
      <a href="{{ preferences_url }}" style="color:#6b7280">Manage preferences</a>
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
      <a href="{{ preferences_url }}" style="color:#6b7280">Manage your mail preferences</a>
    </mj-text>
  </mj-column>
</mj-section>
"""


class TemplateError(ValueError):
    """The campaign cannot be compiled or rendered; line is 1-based in the MJML source when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class CampaignSource:
    """Everything that determines a compiled campaign; its hash is the cache key."""

    mjml: str
    subject: str
    preheader: str = ""
    text_body: str = ""          # empty: derived from the HTML
    transactional: bool = False  # the footer Rapport adds offers preferences only (no unsubscribe)
    lang: str = ""               # BCP 47 tag for <html lang>; empty: "und" (MJML's default), unless the MJML sets one

    def content_hash(self) -> str:
        """A stable digest of the source and the compiler version."""
        h = hashlib.sha256(COMPILER_VERSION.encode())
        for part in (self.mjml, self.subject, self.preheader, self.text_body, self.lang):
            h.update(b"\0")
            h.update(part.encode())
        if self.transactional:      # only then: the hashes of every other campaign stay as they were
            h.update(b"\0transactional")
        return h.hexdigest()


@dataclass(frozen=True)
class Rendered:
    """One recipient's subject, HTML and text."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class CompiledCampaign:
    """Templates and link table shared by every recipient of a campaign."""

    content_hash: str
    subject: Template
    html: Template
    text: Template
    links: tuple[str, ...]          # trackable URLs; the templates render links[i] as {{ _links[i] }}
    html_wire: Template | None = None   # renders the quoted-printable HTML part directly (None: encode per message)
    text_wire: Template | None = None
    # The marketer's MJML and each template's source, to name the editor line of an error while rendering.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    html_lines: Mapping[int, int] = field(default_factory=dict, compare=False, repr=False)   # html line -> MJML
    untracked: tuple[str, ...] = ()     # web links left as they are (the composer lists them with the tracked ones)

    def render_mime(self, context: Mapping[str, Any], click: Callable[[int], str],
                    open_url: str) -> tuple[str, bytes, bytes]:
        """Subject, encoded text/plain part and encoded text/html part (MIME headers included) for one recipient."""
        if self.html_wire is None or self.text_wire is None:
            rendered = self.render(context, click, open_url)
            return rendered.subject, encode_part(rendered.text, "plain"), encode_part(rendered.html, "html")
        links = LinkURLs(len(self.links), click)
        ctx = dict(context, _links=links, _open_url=open_url)
        with render_budget():   # the limits hold per message: subject, HTML and text together
            subject = " ".join(self._run("subject", self.subject, ctx).split())
            html = self._run("html_wire", self.html_wire, dict(ctx, _qlinks=EncodedLinks(links, _LINK_HTML)))
            text = self._run("text_wire", self.text_wire, dict(ctx, _qlinks=EncodedLinks(links, _LINK_TEXT)))
        return subject, qp_part(text, "plain"), qp_part(html, "html")

    def render(self, context: Mapping[str, Any], click: Callable[[int], str], open_url: str) -> Rendered:
        """Render for one recipient; click(i) gives the tracked URL of links[i]."""
        ctx = dict(context, _links=LinkURLs(len(self.links), click), _open_url=open_url)
        with render_budget():
            subject = " ".join(self._run("subject", self.subject, ctx).split())
            return Rendered(subject, self._run("html", self.html, ctx), self._run("text", self.text, ctx))

    def _run(self, part: str, template: Template, ctx: Mapping[str, Any]) -> str:
        """Render one template; whatever the marketer's template does wrong becomes a TemplateError naming it."""
        try:
            return template.render(ctx)
        except LimitExceeded as exc:
            message, error = str(exc), exc
        except SecurityError as exc:
            message, error = f"template tried something not allowed: {exc}", exc
        except JinjaTemplateError as exc:
            message, error = str(exc), exc
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError, RecursionError) as exc:
            message, error = f"template failed: {exc}", exc
        line = error_line(error)
        if part == "subject":
            raise TemplateError(f"subject: {message}") from None
        if part in ("text", "text_wire") and self.sources.get("text_body"):
            raise TemplateError(f"plain-text part{f' line {line}' if line else ''}: {message}") from None
        mjml_line = self.html_lines.get(line or 0) if part == "html" else None
        raise TemplateError(message, mjml_line or source_line(self.sources, part, line)) from None


class LinkURLs:
    """The tracked URL of each campaign link for one recipient, made on first use (templates index it)."""

    __slots__ = ("_cache", "_make")

    def __init__(self, count: int, make: Callable[[int], str]) -> None:
        self._cache: list[str | None] = [None] * count
        self._make = make

    def __getitem__(self, index: int) -> str:
        url = self._cache[index]
        if url is None:
            url = self._cache[index] = self._make(index)
        return url

    def __len__(self) -> int:
        return len(self._cache)


class EncodedLinks:
    """The same URLs already escaped and quoted-printable encoded, for the wire templates."""

    __slots__ = ("_cache", "_encode", "_links")

    def __init__(self, links: LinkURLs, encode: Callable[[object], str]) -> None:
        self._links = links
        self._encode = encode
        self._cache: dict[int, str] = {}

    def __getitem__(self, index: int) -> str:
        value = self._cache.get(index)
        if value is None:
            value = self._cache[index] = self._encode(self._links[index])
        return value


class _MJMLStructure(HTMLParser):
    """Checks that mj-* tags nest and close, reporting line numbers mjml-python does not give."""

    VOID = {"mj-image", "mj-divider", "mj-spacer", "mj-breakpoint", "mj-font", "mj-all", "mj-class",
            "mj-carousel-image", "mj-social-element-void", "mj-preview-void"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[tuple[str, int]] = []
        self.error: TemplateError | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:  # noqa: ARG002
        if self.error or not (tag.startswith("mj-") or tag == "mjml"):
            return
        if tag not in self.VOID:
            self.stack.append((tag, self.getpos()[0]))

    def handle_startendtag(self, tag: str, attrs: list) -> None:  # noqa: ARG002
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


def _check_jinja(source: str, what: str, line_offset: int = 0) -> None:
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


def _with_footer(source: str, transactional: bool = False) -> str:
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


def _with_language(source: str, lang: str) -> str:
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
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def _with_preheader(html: str, preheader: str) -> str:
    """Put the hidden preview text first in the body; its template code stays, static text is escaped."""
    if not preheader.strip():
        return html
    protected, saved = _protect(preheader)
    text = _restore(html_escape(protected, quote=False), saved)
    match = _BODY_OPEN.search(html)
    at = match.end() if match else 0
    return html[:at] + _PREHEADER.format(text=text) + html[at:]


_EMPTY_TITLE = re.compile(r"<title>\s*</title>", re.IGNORECASE)
_HEAD_OPEN = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
# The starters are designed light, with their own backgrounds and text colours: declaring "light" keeps clients that
# honour it (Apple Mail, iOS Mail, Chromium-based web views) from recolouring parts of them in dark mode, which is
# how white text ends up on a white card. Clients that force their own dark theme (Gmail apps) invert the whole mail.
_COLOR_SCHEME = ('<meta name="color-scheme" content="light"><meta name="supported-color-schemes" content="light">'
                 '<style type="text/css">:root{color-scheme:light;supported-color-schemes:light}</style>')


_TEMPLATE_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def static_title(subject: str) -> str:
    """The subject's fixed text ("{{ name }}, one quick question" -> "One quick question"), "Message" if none.

    The <title> carries no template code: the head is not where a per-recipient value must render."""
    text = " ".join(_TEMPLATE_CODE.sub(" ", subject).split()).strip(" ,.:;!?-–—")
    if "{" in text or "}" in text:   # braces nested inside template code: no telling where the fixed text is
        text = ""
    return (text[:1].upper() + text[1:]) if text else "Message"


def _with_title_and_scheme(html: str, subject: str) -> str:
    """An empty <title> (no <mj-title>) gets the subject's fixed text; the colour scheme is declared."""
    if _EMPTY_TITLE.search(html):
        title = html_escape(static_title(subject), quote=False)
        html = _EMPTY_TITLE.sub(lambda _m: f"<title>{title}</title>", html, count=1)
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


def _without_unasked_fonts(html: str, source: str) -> str:
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


_BLOCK = {"p", "div", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "section",
          "blockquote", "center", "article", "header", "footer"}


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML email: paragraphs, headings, list items, links as 'text (url)'."""
    try:
        root = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return ""
    for bad in root.xpath("//head|//style|//script|//title"):
        bad.drop_tree()
    parts: list[str] = []

    def walk(el) -> None:  # noqa: ANN001
        if not isinstance(el.tag, str):   # comments (Outlook conditionals) and processing instructions
            if el.tail:
                parts.append(el.tail)
            return
        tag = el.tag
        if "display:none" in (el.get("style") or "").replace(" ", ""):   # preheader and other hidden text
            if el.tail:
                parts.append(el.tail)
            return
        if tag == "br":
            parts.append("\n")
        elif tag in _BLOCK:
            parts.append("\n\n" if tag not in ("li", "tr") else "\n")
            if tag == "li":
                parts.append("- ")
        if tag == "img" and el.get("alt") and el.get("width") != "1":
            parts.append(f"[{el.get('alt')}]")
        if el.text and tag not in ("style", "script"):
            parts.append(el.text)
        for child in el:
            walk(child)
        if tag == "a":
            href = (el.get("href") or "").strip()
            label = " ".join(el.text_content().split())
            if href and not href.startswith("#") and href != label:
                parts.append(f" ({href.removeprefix('mailto:')})")
        if tag in _BLOCK:
            parts.append("\n")
        if el.tail:
            parts.append(el.tail)

    walk(root.body if root.find("body") is not None else root)
    text = "".join(parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"


def _collapse_spaces(html: str) -> str:
    """Runs of spaces and tabs (MJML's indentation) to one space: the same HTML, smaller, and DKIM's relaxed
    body canonicalization then has nothing to rewrite. Left alone where whitespace is content."""
    lowered = html.lower()
    if "<pre" in lowered or "<textarea" in lowered or "white-space:pre" in lowered.replace(" ", ""):
        return html
    return _SPACE_RUN.sub(" ", html)


def compile_campaign(src: CampaignSource) -> CompiledCampaign:
    """Compile once per campaign content; raises TemplateError for invalid MJML or template code."""
    _check_jinja(src.subject, "subject")
    _check_jinja(src.preheader, "preheader")
    _check_jinja(src.mjml, "template")
    # Structure is checked on the marketer's own source, before the footer is added, so lines match the editor.
    if "<mjml" not in src.mjml.lower():
        raise TemplateError("the document must start with <mjml>", 1)
    _MJMLStructure().check(src.mjml)
    if src.text_body:
        _check_jinja(src.text_body, "plain-text part")
    source = _with_language(_with_footer(src.mjml, src.transactional), src.lang)
    html = _with_title_and_scheme(_without_unasked_fonts(mjml_to_html(source), source), src.subject)
    html = _collapse_spaces(_with_preheader(html, src.preheader))
    links = tracked_links(html)
    untracked = _untracked_web_links(html)
    index = {url: i for i, url in enumerate(links)}
    html = rewrite_links(
        html, lambda url: f"{{{{ _links[{index[html_unescape(url.strip())]}] }}}}" if _tracked(url) else None
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


# A personalised link is tracked when its scheme and host are plain text: template code only from the path on,
# so no value can change which site the click goes to.
_FIXED_SITE = re.compile(r"\s*https?://[^/?#{}%\s]+[/?#]", re.IGNORECASE)


def is_personalised(url: str) -> bool:
    """Whether a link contains template code (rendered per recipient)."""
    return "{{" in url or "{%" in url


def personalised_link(url: str) -> bool:
    """A link with template code after a fixed http(s) site: stored as its template, rendered per click."""
    return is_personalised(url) and bool(_FIXED_SITE.match(url))


def _tracked(url: str) -> bool:
    return trackable(url) or personalised_link(url)


def tracked_links(html: str) -> list[str]:
    """The links of html that get tracked (entity-decoded, first-seen order, each once): static http(s) links and
    personalised links on a fixed site. Links made entirely by template code (unsubscribe_url, survey_url())
    are left as they are."""
    seen: dict[str, None] = {}

    def collect(url: str) -> None:
        if _tracked(url):
            seen.setdefault(html_unescape(url.strip()), None)

    rewrite_links(html, collect)
    return list(seen)


def _untracked_web_links(html: str) -> list[str]:
    """http(s) links and template-made links that are not tracked, each once (mailto:, tel: and anchors aside)."""
    seen: dict[str, None] = {}

    def collect(url: str) -> None:
        url = html_unescape(url.strip())
        if not _tracked(url) and (url.lower().startswith(("http://", "https://")) or url.startswith(("{{", "{%"))):
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


def _wire_template(source: str, *, html: bool) -> tuple[Template, str] | None:
    """A template rendering the QP-encoded part and its source, or None when per-message encoding is better."""
    if qp.non_ascii_share(source) > BASE64_THRESHOLD:
        return None          # mostly non-Latin text: base64 is shorter, chosen per message by encode_part
    try:
        wire = qp.compile_source(source)
        return wire_env(html).from_string(wire), wire
    except qp.Unsupported:
        return None
