"""Classify mail that comes back to Rapport: bounces, spam complaints, mailto unsubscribes and auto-replies.

Input is whatever reaches the bounce/abuse/unsubscribe mailbox or an MTA pipe. Three shapes are understood, each
read by its own module:

* RFC 3464 delivery status notifications (``multipart/report; report-type=delivery-status``): :mod:`.dsn`;
* RFC 5965 ARF feedback reports (``report-type=feedback-report``) from ISP feedback loops: :mod:`.arf`;
* everything else by heuristics (:mod:`.heuristics`): non-standard bounces (Exim, qmail, Exchange, ...) are
  recognised by sender, subject and body phrases, their status codes are read from the text; auto-replies by
  RFC 3834 headers and subjects; mail to an ``unsubscribe+TOKEN@`` address is an unsubscribe request.

:mod:`.parse` decides between them; :mod:`.classify` holds the hard/soft rules they share and :mod:`.vocabulary`
the kinds and limits. The send is found again through its token, taken from the VERP envelope recipient, the
report's delivery headers, or the ``X-Rapport-ID`` header of the returned original. Only the head of a message is
parsed (:data:`MAX_PARSE_BYTES`) and only :data:`MAX_TEXT_BYTES` of text is inspected, so a huge attachment costs
nothing.

This module is the public API; the submodules are implementation and may change shape.
"""

from mailer.bounces.classify import classify_smtp_reply
from mailer.bounces.fields import extract_token
from mailer.bounces.parse import parse_feedback
from mailer.bounces.vocabulary import (
    BOUNCE_PREFIX,
    MAX_DIAGNOSTIC,
    MAX_PARSE_BYTES,
    MAX_TEXT_BYTES,
    UNSUBSCRIBE_PREFIX,
    Feedback,
    FeedbackKind,
)

__all__ = [
    "BOUNCE_PREFIX",
    "MAX_DIAGNOSTIC",
    "MAX_PARSE_BYTES",
    "MAX_TEXT_BYTES",
    "UNSUBSCRIBE_PREFIX",
    "Feedback",
    "FeedbackKind",
    "classify_smtp_reply",
    "extract_token",
    "parse_feedback",
]
