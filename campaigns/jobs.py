"""RQ entry points: take ids, use the process runtime, call one service. No Flask, no ORM objects in arguments."""

from __future__ import annotations

import logging
from dataclasses import asdict

from campaigns import runtime
from campaigns.services import sending

logger = logging.getLogger(__name__)


def dispatch_campaign(campaign_id: int) -> int:
    """Create the campaign's send rows and enqueue its batches."""
    logger.info("dispatch campaign_id=%s", campaign_id)
    return sending.dispatch(runtime.current(), campaign_id)


def send_batch(campaign_id: int, lo: int, hi: int) -> dict:
    """Deliver one batch of a campaign (contacts lo..hi)."""
    result = sending.send_batch(runtime.current(), campaign_id, lo, hi)
    return asdict(result)
