"""Sandboxed Jinja environments for marketers' templates: they can read the data they are given, nothing else."""

from __future__ import annotations

import logging
from functools import lru_cache

from jinja2 import StrictUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

logger = logging.getLogger(__name__)


class Missing(Undefined):
    """A missing field renders as empty text, so one incomplete contact never stops a campaign."""

    __slots__ = ()


def _blank_none(value: object) -> object:
    return "" if value is None else value


def _make_env(autoescape: bool, strict: bool, newline: str = "\n") -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=autoescape,
        newline_sequence=newline,
        undefined=StrictUndefined if strict else Missing,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
        # An empty field reads as nothing, not "None".
        finalize=_blank_none,
    )
    return env


@lru_cache(maxsize=4)
def html_env(strict: bool = False) -> ImmutableSandboxedEnvironment:
    """Environment for HTML bodies: every value is HTML-escaped."""
    return _make_env(True, strict)


@lru_cache(maxsize=4)
def text_env(strict: bool = False) -> ImmutableSandboxedEnvironment:
    """Environment for subjects and plain-text bodies: no escaping."""
    return _make_env(False, strict)


@lru_cache(maxsize=2)
def wire_env(html: bool = False) -> ImmutableSandboxedEnvironment:
    """Environment for pre-encoded (quoted-printable) bodies: CRLF line ends kept, values encoded by |qp.

    The encoder is a filter, not a context function: Jinja binds filters when compiling, so each use is a
    direct call instead of a sandboxed call() with its safety checks.
    """
    from mailer.qp import value_encoder

    env = _make_env(False, False, "\r\n")
    env.filters["qp"] = value_encoder(html)
    return env
