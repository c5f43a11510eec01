"""Saved segments: dynamic contact filters."""

from __future__ import annotations
