"""Classify one inbound message: decide which reader applies (ARF, DSN, MDN, mailto unsubscribe, text heuristics)
and gather the ways back to the send (VERP token, delivery headers, the returned original's X-Rapport-ID).

The order of the checks in :func:`_analyse` is the precedence between interpretations.
"""

from __future__ import annotations

import logging
import re
from email.parser import BytesParser
from email.policy import compat32

from mailer.bounces.arf import analyse_arf
from mailer.bounces.dsn import analyse_dsn
from mailer.bounces.fields import (
    MSGID_RE,
    TOKEN_PATTERN,
    before_original,
    clean_message_id,
    clean_text,
    extract_token,
    scan_token,
    squash,
    valid_token,
)
from mailer.bounces.findings import Findings
from mailer.bounces.heuristics import (
    BOUNCE_BODY_RE,
    BOUNCE_SUBJECT_RE,
    analyse_text_bounce,
    auto_submitted,
    is_daemon,
    strong_auto_reply,
)
from mailer.bounces.mime import (
    as_bytes,
    collect_parts,
    first_address,
    first_header,
    header_values,
    param,
    parse_budget,
)
from mailer.bounces.vocabulary import BOUNCE_PREFIX, MAX_TEXT_BYTES, UNSUBSCRIBE_PREFIX, Feedback, FeedbackKind

logger = logging.getLogger(__name__)
_TEXT_RAPPORT_ID_RE = re.compile(
    r"(?im)^[ \t>]{0,16}X-Rapport-ID:[ \t]{0,16}(" + TOKEN_PATTERN + r")[ \t]*$"
)
_TEXT_MESSAGE_ID_RE = re.compile(r"(?im)^[ \t>]{0,16}Message-ID:[ \t]{0,16}(<[^<>\s]{1,996}>)")

# Local-delivery stamps naming the mailbox the report reached (Envelope-To is Exim's, X-Envelope-To others').
_DELIVERY_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")


def parse_feedback(raw: bytes, envelope_recipient: str | None = None) -> Feedback:
    """Classify one inbound message. Never raises on garbage: returns kind UNKNOWN, with whatever it found."""
    found = Findings()
    try:
        found.kind = _analyse(raw, envelope_recipient, found)
    except Exception:
        # Unreachable for well-formed mail; a stdlib parser quirk or our own bug must not kill the worker, and
        # a partial classification is worse than none, so the kind falls back to UNKNOWN.
        logger.warning("feedback message could not be analysed; classified as unknown", exc_info=True)
        found.kind = FeedbackKind.UNKNOWN
    feedback = found.freeze()
    logger.debug("classified inbound message as %s (token=%s)", feedback.kind, feedback.token)
    return feedback


def _analyse(raw: object, envelope_recipient: object, found: Findings) -> FeedbackKind:
    """Fill found and return the kind; the order of the checks is the precedence between interpretations."""
    data = as_bytes(raw)
    if data is None:
        return FeedbackKind.UNKNOWN
    data = parse_budget(data)
    try:
        msg = BytesParser(policy=compat32).parsebytes(data)
    except RecursionError:
        # The stdlib parser recurses once per nesting level; a thousand nested parts is an attack or junk,
        # and the headers alone can still carry the token and classification hints.
        logger.info("inbound message nests too deeply; classifying from its headers only")
        msg = BytesParser(policy=compat32).parsebytes(data, headersonly=True)

    envelope = envelope_recipient if isinstance(envelope_recipient, str) else None
    env_bounce = extract_token(envelope, BOUNCE_PREFIX) if envelope else None
    env_unsub = extract_token(envelope, UNSUBSCRIBE_PREFIX) if envelope else None
    delivered_to = " ".join(header_values(msg, _DELIVERY_HEADERS))[:MAX_TEXT_BYTES]
    hdr_bounce = scan_token(delivered_to, BOUNCE_PREFIX)
    hdr_unsub = scan_token(delivered_to, UNSUBSCRIBE_PREFIX)
    found.offer(token=env_bounce or env_unsub or hdr_bounce or hdr_unsub)
    # The envelope is authoritative when it names one of our addresses; headers only speak when it does not.
    unsubscribe_token = env_unsub if (env_bounce or env_unsub) else hdr_unsub

    parts = collect_parts(msg)
    original = parts.original
    if original is not None:
        found.offer(
            token=valid_token(first_header(original, "x-rapport-id")),
            message_id=clean_message_id(first_header(original, "message-id")),
        )
    subject = clean_text(first_header(msg, "subject") or "")
    report_type = param(msg, "report-type")

    kind: FeedbackKind | None = None
    if parts.feedback is not None or report_type == "feedback-report":
        kind = analyse_arf(parts, found)
    elif parts.status is not None:
        kind = analyse_dsn(parts.status, found)
    if kind is None and (parts.mdn or report_type == "disposition-notification"):
        # Read receipts are generated automatically and say nothing about deliverability.
        kind = FeedbackKind.AUTO_REPLY
    if kind is None and unsubscribe_token:
        found.token = unsubscribe_token
        found.offer(recipient=first_address(msg, ("from",)))
        kind = FeedbackKind.UNSUBSCRIBE

    notice = parts.notice
    head = before_original(notice)
    if kind is None:
        sender = first_address(msg, ("from",))
        from_daemon = is_daemon(sender, first_header(msg, "from") or "")
        failed_header = first_header(msg, "x-failed-recipients")
        if not from_daemon and not failed_header and strong_auto_reply(msg, subject):
            kind = FeedbackKind.AUTO_REPLY
            found.offer(recipient=sender)
        elif (from_daemon or failed_header or BOUNCE_SUBJECT_RE.search(subject)
              or BOUNCE_BODY_RE.search(head)):
            kind = analyse_text_bounce(msg, subject, head, failed_header, original, found)
        elif auto_submitted(msg):
            # Bounces carry Auto-Submitted too, so this weak signal only counts after the bounce checks.
            kind = FeedbackKind.AUTO_REPLY
            found.offer(recipient=sender)

    if original is not None and kind in (FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE):
        # Rapport sends one recipient per message, so the returned original's To names the failed address.
        found.offer(recipient=first_address(original, ("to",)))

    # Last-resort ways back to the send, whatever the kind.
    if original is not None:
        found.offer(token=scan_token(" ".join(header_values(original, ("return-path",))), BOUNCE_PREFIX))
    text_id = _TEXT_RAPPORT_ID_RE.search(notice)
    found.offer(token=text_id.group(1) if text_id else None)
    found.offer(token=scan_token(notice, BOUNCE_PREFIX))
    text_msgid = _TEXT_MESSAGE_ID_RE.search(notice)
    found.offer(message_id=text_msgid.group(1) if text_msgid else None)
    # Replies and many NDRs point at the message they answer.
    found.offer(message_id=clean_message_id(first_header(msg, "in-reply-to")))
    references = MSGID_RE.findall(first_header(msg, "references") or "")
    found.offer(message_id=clean_message_id(f"<{references[-1]}>") if references else None)
    if subject and kind in (None, FeedbackKind.AUTO_REPLY, FeedbackKind.UNSUBSCRIBE):
        found.offer(diagnostic=squash(subject))
    return kind or FeedbackKind.UNKNOWN
