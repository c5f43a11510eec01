"""RQ entry points of the feedback loop: drain tracking hits, poll a bounce mailbox, decay engagement scores."""

from __future__ import annotations

import logging

from campaigns import runtime
from campaigns.feedback import engagement

logger = logging.getLogger(__name__)


def drain_hits() -> int:
    """Write queued opens and clicks to the database in bulk."""
    return engagement.drain_hits(runtime.current())


def poll_bounces(url: str) -> int:
    """Read and apply every message waiting in the bounce mailbox at url (imap[s]:// or pop3[s]://)."""
    from campaigns.feedback import ingest

    rt = runtime.current()
    return ingest.poll_mailbox(rt, url)


def decay_scores() -> int:
    """Rewrite every contact's engagement score as of now (run nightly)."""
    return engagement.decay_scores(runtime.current())
