"""RQ entry point for CSV imports: take the import id, use the process runtime, call the import service."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict

from campaigns import runtime, storage
from campaigns.contacts import imports

logger = logging.getLogger(__name__)


def import_contacts(import_id: str) -> dict:
    """Import one uploaded and mapped CSV file."""
    rt = runtime.current()
    logger.info("import %s", import_id)
    with rt.session_factory() as session:
        return asdict(imports.run_import(session, rt.redis, storage.for_settings(rt.settings), import_id))


def cleanup_import_files(days: int = 7) -> int:
    """Delete import uploads and error reports untouched for `days` (for the scheduler, e.g. daily)."""
    removed = imports.cleanup_imports(runtime.current().settings, dt.timedelta(days=days))
    logger.info("import cleanup: %d files removed", removed)
    return removed
