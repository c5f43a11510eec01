"""A compiled campaign and its per-recipient rendering: the source that is hashed as the cache key, the templates
and link table shared by every recipient, and the errors a marketer's template can raise, named by editor line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError

from mailer import qp
from mailer.message import encode_part, qp_part
from mailer.sandbox import LimitExceeded, render_budget
from mailer.sourcemap import error_line, source_line

COMPILER_VERSION = "3"
_LINK_HTML = qp.value_encoder(html=True, cache=False)
_LINK_TEXT = qp.value_encoder(html=False, cache=False)


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
            ctx["_subject"] = subject
            html = self._run("html_wire", self.html_wire, dict(ctx, _qlinks=EncodedLinks(links, _LINK_HTML)))
            text = self._run("text_wire", self.text_wire, dict(ctx, _qlinks=EncodedLinks(links, _LINK_TEXT)))
        return subject, qp_part(text, "plain"), qp_part(html, "html")

    def render_subject(self, context: Mapping[str, Any]) -> str:
        """Only the subject, for one recipient (the campaign page shows it in words)."""
        with render_budget():
            return " ".join(self._run("subject", self.subject, context).split())

    def render(self, context: Mapping[str, Any], click: Callable[[int], str], open_url: str) -> Rendered:
        """Render for one recipient; click(i) gives the tracked URL of links[i]."""
        ctx = dict(context, _links=LinkURLs(len(self.links), click), _open_url=open_url)
        with render_budget():
            subject = " ".join(self._run("subject", self.subject, ctx).split())
            ctx["_subject"] = subject
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
