"""RQ entry points for background figures and files: cached admin summaries and contact exports."""

from __future__ import annotations

import logging

from campaigns import runtime

logger = logging.getLogger(__name__)


def refresh_summary(kind: str, args: list) -> None:
    """Compute one admin summary (dashboard, topic sizes, a report, an audience forecast) and store it."""
    from campaigns.reports import summaries

    summaries.refresh(runtime.current(), kind, *args)


def export_contacts(export_id: str) -> dict:
    """Write one requested contact export to its file."""
    from campaigns.contacts import export_jobs

    return export_jobs.run(runtime.current(), export_id)


def cleanup_exports() -> int:
    """Delete export files older than Settings.export_keep_hours (a periodic task, see campaigns.scheduler)."""
    from campaigns.contacts import export_jobs

    removed = export_jobs.cleanup(runtime.current())
    logger.info("export cleanup: %d files removed", removed)
    return removed
