"""Sandboxed Jinja environments for marketers' templates: they can read the data they are given, nothing else."""

from __future__ import annotations

import logging
from functools import lru_cache

from jinja2 import StrictUndefined, Undefined
from jinja2.exceptions import TemplateRuntimeError
from markupsafe import Markup

from mailer.sandbox import LimitedSandbox

logger = logging.getLogger(__name__)


class Missing(Undefined):
    """A missing field renders as empty text, so one incomplete contact never stops a campaign."""

    __slots__ = ()


_PLAIN = frozenset({str, Markup, int, float, bool})


def _shown(value: object) -> object:
    """What {{ value }} prints: None as nothing; functions and plain objects are an error, never their repr."""
    if value.__class__ in _PLAIN:
        return value
    if value is None:
        return ""
    if isinstance(value, str | int | float | Undefined):
        return value
    if callable(value):
        raise TemplateRuntimeError("a function cannot be shown: call it with () (for example survey_url())")
    cls = type(value)
    if cls.__str__ is object.__str__ and cls.__repr__ is object.__repr__:
        # e.g. <mailer.compose.LinkURLs object at 0x…>: means nothing to a reader and leaks internals
        raise TemplateRuntimeError(f"a {cls.__name__} value cannot be shown; use one of its fields or items")
    return value


def _make_env(autoescape: bool, strict: bool, newline: str = "\n") -> LimitedSandbox:
    env = LimitedSandbox(
        autoescape=autoescape,
        newline_sequence=newline,
        undefined=StrictUndefined if strict else Missing,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
        # An empty field reads as nothing, not "None"; an object never shows its Python repr.
        finalize=_shown,
    )
    return env


@lru_cache(maxsize=4)
def html_env(strict: bool = False) -> LimitedSandbox:
    """Environment for HTML bodies: every value is HTML-escaped."""
    return _make_env(True, strict)


@lru_cache(maxsize=4)
def text_env(strict: bool = False) -> LimitedSandbox:
    """Environment for subjects and plain-text bodies: no escaping."""
    return _make_env(False, strict)


@lru_cache(maxsize=2)
def wire_env(html: bool = False) -> LimitedSandbox:
    """Environment for pre-encoded (quoted-printable) bodies: CRLF line ends kept, values encoded by |qp.

    The encoder is a filter, not a context function: Jinja binds filters when compiling, so each use is a
    direct call instead of a sandboxed call() with its safety checks.
    """
    from mailer.qp import value_encoder

    env = _make_env(False, False, "\r\n")
    # finalize only sees the encoded text here, so the encoder applies the same check to what it is given.
    env.filters["qp"] = value_encoder(html, shown=_shown)
    return env
