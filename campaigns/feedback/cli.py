"""The feedback loop's commands as plain functions of a Runtime: apply one message piped by an MTA, poll a bounce
mailbox, drain the tracking-hit queue. The `rapport` command (campaigns.cli) parses the arguments and calls them."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import BinaryIO

from campaigns.config import Settings
from campaigns.feedback import engagement
from campaigns.feedback.bounces import BouncePolicy, OutcomeKind
from campaigns.feedback.inbound import ingest_message
from campaigns.feedback.mailbox import poll_mailbox
from campaigns.replies import mail as reply_mail
from campaigns.runtime import Runtime, install

logger = logging.getLogger(__name__)

EX_TEMPFAIL = 75   # sysexits.h: the MTA keeps the message and retries later


def ingest_limit() -> int:
    """Read at most this much of a piped message: the classifier looks only at the first MiB anyway."""
    return 4 * 1024 * 1024


def ingest_piped(rt: Runtime, recipient: str | None, stream: BinaryIO | None = None) -> int:
    """Apply one inbound message read from stream (stdin) and print its outcome; returns the exit code.

    Any failure answers EX_TEMPFAIL, so the MTA keeps the message and pipes it again later.
    """
    raw = (stream or sys.stdin.buffer).read(ingest_limit())
    try:
        with rt.session_factory() as session:
            outcome = ingest_message(session, rt.tokens, raw, envelope_recipient=recipient,
                                     policy=BouncePolicy.from_settings(rt.settings))
            session.commit()
    except Exception:
        logger.exception("could not apply the message; asking the MTA to retry")
        return EX_TEMPFAIL
    if outcome.kind == OutcomeKind.REPLY:   # stored: forwarding it may fail now and be retried by the job
        reply_mail.send_now(rt, int(outcome.detail))
    print(outcome.kind)
    return 0


def poll_bounces(rt: Runtime, url: str) -> int:
    """Apply every message in the bounce mailbox at url (default BOUNCE_MAILBOX_URL) and print how many."""
    url = url or rt.settings.bounce_mailbox_url
    if not url:
        raise SystemExit("give a mailbox URL or set BOUNCE_MAILBOX_URL")
    print(f"{poll_mailbox(rt, url)} messages applied")
    return 0


def drain_hits(rt: Runtime) -> int:
    """Write the queued tracking hits now and print how many."""
    print(f"{engagement.drain_hits(rt)} hits recorded")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """`rapport ingest | poll-bounces | drain-hits`: one process runtime around the function for args.command."""
    rt = install(Runtime(settings))
    try:
        if args.command == "ingest":
            return ingest_piped(rt, args.recipient)
        if args.command == "poll-bounces":
            return poll_bounces(rt, args.url)
        return drain_hits(rt)
    finally:
        rt.close()
