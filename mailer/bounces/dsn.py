"""RFC 3464 delivery status notifications, read field by field from the ``message/delivery-status`` part."""

from __future__ import annotations

from email.message import Message

from mailer.bounces.classify import LEADING_CODE_RE, classify_codes, find_status
from mailer.bounces.fields import clean_address, clean_message_id, scan_token, squash, strip_address_type
from mailer.bounces.findings import Findings
from mailer.bounces.mime import parse_fields, report_text
from mailer.bounces.vocabulary import BOUNCE_PREFIX, FeedbackKind


def analyse_dsn(status_part: Message, found: Findings) -> FeedbackKind | None:
    """RFC 3464: report the first failed (else delayed) recipient; None if no block names a recipient."""
    blocks = parse_fields(report_text(status_part))
    recipients = [b for b in blocks if "final-recipient" in b or "original-recipient" in b or "action" in b]
    if not recipients:
        return None
    per_message = blocks[0] if blocks[0] is not recipients[0] else {}

    def action_of(block: dict[str, str]) -> str:
        words = block.get("action", "").lower().split()
        return words[0] if words else ""

    chosen = next(
        (b for b in recipients if action_of(b) == "failed"),
        next((b for b in recipients if action_of(b) == "delayed"), recipients[0]),
    )
    action = action_of(chosen)
    diagnostic = strip_address_type(chosen.get("diagnostic-code", ""))
    leading = LEADING_CODE_RE.match(diagnostic)
    code = int(leading.group(1)) if leading else None
    status = find_status(chosen.get("status", "")) or find_status(diagnostic)
    # Original-Recipient is the address Rapport gave in RCPT TO; Final-Recipient may be a post-alias mailbox.
    found.offer(
        recipient=(
            clean_address(chosen.get("original-recipient")) or clean_address(chosen.get("final-recipient"))
        ),
        status=status,
        smtp_code=code,
        diagnostic=squash(diagnostic) or None,
        message_id=clean_message_id(per_message.get("x-original-message-id")),
        # Postfix names the original envelope sender (our VERP address) in X-Postfix-Sender.
        token=scan_token(" ".join(per_message.values()), BOUNCE_PREFIX),
    )
    if action == "delayed":
        return FeedbackKind.SOFT_BOUNCE
    if action in ("delivered", "relayed", "expanded"):
        return FeedbackKind.UNKNOWN
    kind = classify_codes(code, status, diagnostic)
    if kind is FeedbackKind.UNKNOWN and action == "failed":
        # "failed" means the MTA gave up for good (RFC 3464 2.3.3), even when it gave no code.
        return FeedbackKind.HARD_BOUNCE
    return kind
