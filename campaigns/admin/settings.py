"""Admin pages: settings."""

from __future__ import annotations

from campaigns.admin import bp  # noqa: F401
