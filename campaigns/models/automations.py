"""Automations (date, calendar, cadence, welcome) and their keyed occurrences."""

from __future__ import annotations
