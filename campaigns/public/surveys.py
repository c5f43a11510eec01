"""Recipient pages: surveys."""

from __future__ import annotations

from campaigns.public import bp  # noqa: F401
