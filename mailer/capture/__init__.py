"""Capture SMTP server and Maildir-style outbox used by the zero-config demo and the test suite.

:mod:`.outbox` stores messages on disk and lists them, :mod:`.entries` is what a listing shows of one,
:mod:`.smtp` is the SMTP session that feeds the outbox, :mod:`.server` runs it in a thread and :mod:`.cli` is
``python -m mailer.capture``.
"""

from mailer.capture.cli import main
from mailer.capture.entries import OutboxEntry, OutboxMessage
from mailer.capture.outbox import Outbox
from mailer.capture.server import CaptureServer

__all__ = ["CaptureServer", "Outbox", "OutboxEntry", "OutboxMessage", "main"]
