"""RQ entry points for campaign scheduling: take ids, use the process runtime, call one service."""

from __future__ import annotations

import logging

from campaigns import runtime
from campaigns.sending import scheduling

logger = logging.getLogger(__name__)


def start_scheduled(campaign_id: int, scheduled_for: str) -> bool:
    """Start a scheduled campaign at its time (enqueued with enqueue_at; the worker's scheduler runs it)."""
    logger.info("scheduled start campaign_id=%s for %s", campaign_id, scheduled_for)
    return scheduling.start_scheduled(runtime.current(), campaign_id, scheduled_for)


def start_due_campaigns() -> int:
    """Start scheduled campaigns whose time has passed (a safety net for a periodic scheduler)."""
    return scheduling.start_due(runtime.current())
