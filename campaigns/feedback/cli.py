"""The feedback loop's commands: `ingest` (one message on stdin, for an MTA pipe), `poll-bounces`, `drain-hits`."""

from __future__ import annotations

import argparse
import logging
import sys

from campaigns.config import Settings
from campaigns.runtime import Runtime, install

logger = logging.getLogger(__name__)

EX_TEMPFAIL = 75   # sysexits.h: the MTA keeps the message and retries later


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one of the feedback commands; returns the process exit code."""
    from campaigns import tasks
    from campaigns.feedback import ingest

    rt = install(Runtime(settings))
    try:
        if args.command == "ingest":
            raw = sys.stdin.buffer.read(ingest_limit())
            try:
                with rt.session_factory() as session:
                    outcome = ingest.ingest_message(session, rt.tokens, raw, envelope_recipient=args.recipient,
                                                    policy=ingest.BouncePolicy.from_settings(settings))
            except Exception:
                logger.exception("could not apply the message; asking the MTA to retry")
                return EX_TEMPFAIL
            print(outcome.kind)
        elif args.command == "poll-bounces":
            args.url = args.url or settings.bounce_mailbox_url
            if not args.url:
                raise SystemExit("give a mailbox URL or set BOUNCE_MAILBOX_URL")
            print(f"{ingest.poll_mailbox(rt, args.url)} messages applied")
        else:
            print(f"{tasks.drain_hits()} hits recorded")
        return 0
    finally:
        rt.close()


def ingest_limit() -> int:
    """Read at most this much of a piped message: the classifier looks only at the first MiB anyway."""
    return 4 * 1024 * 1024
