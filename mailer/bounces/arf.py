"""RFC 5965 ARF feedback reports from ISP feedback loops: complaints, and the report types that are not complaints."""

from __future__ import annotations

import re

from mailer.bounces.fields import clean_address, scan_token
from mailer.bounces.findings import Findings
from mailer.bounces.mime import Parts, first_address, parse_fields, report_text
from mailer.bounces.vocabulary import BOUNCE_PREFIX, FeedbackKind

# ARF types that are not a complaint by the recipient: "not-spam" is the opposite, "auth-failure" (RFC 6591)
# reports our DKIM/SPF results.
_NOT_COMPLAINT_TYPES = frozenset({"not-spam", "auth-failure"})


def analyse_arf(parts: Parts, found: Findings) -> FeedbackKind:
    """RFC 5965: a complaint, with the reporter's fields first and the embedded original as fallback."""
    report: dict[str, str] = {}
    if parts.feedback is not None:
        for block in parse_fields(report_text(parts.feedback)):
            for name, value in block.items():
                report.setdefault(name, value)
    words = report.get("feedback-type", "").lower().replace(";", " ").split()
    feedback_type = words[0] if words and re.fullmatch(r"[a-z0-9._-]{1,64}", words[0]) else None
    original = parts.original
    found.offer(
        feedback_type=feedback_type,
        token=scan_token(report.get("original-mail-from", ""), BOUNCE_PREFIX),
        recipient=(
            clean_address(report.get("original-rcpt-to")) or clean_address(report.get("removal-recipient"))
        ),
    )
    if original is not None:
        # Providers that redact Original-Rcpt-To often leave the original To alone.
        found.offer(recipient=first_address(original, ("to",)))
    if feedback_type in _NOT_COMPLAINT_TYPES:
        return FeedbackKind.UNKNOWN
    return FeedbackKind.COMPLAINT
