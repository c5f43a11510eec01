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


def _make_env(autoescape: bool, strict: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=autoescape,
        undefined=StrictUndefined if strict else Missing,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
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
