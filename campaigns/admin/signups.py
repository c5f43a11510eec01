"""Admin pages: signups."""

from __future__ import annotations

from campaigns.admin import bp  # noqa: F401
