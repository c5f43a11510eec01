"""Inbound messages (from an MTA pipe or a bounce mailbox) classified and applied: DSNs, ARF complaints, mailto
unsubscribes, replies to our mail (a person's, or an auto-reply recorded as such: campaigns.replies.intake); the
rest is ignored.

A message is matched to its send by the sealed MESSAGE token in the VERP return path (bounces+TOKEN@domain), the
X-Rapport-ID header or the Message-ID of the returned original; a mailto unsubscribe by its UNSUBSCRIBE token; as a
last resort by the address.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy.orm import Session

from campaigns.accounts import mail_setup
from campaigns.errors import NotFound
from campaigns.feedback import preferences as feedback
from campaigns.feedback.bounces import (
    BouncePolicy,
    FeedbackSource,
    Outcome,
    OutcomeKind,
    apply_bounce,
    apply_complaint,
    match_feedback,
)
from campaigns.replies import intake as replies
from mailer.bounces import FeedbackKind, parse_feedback
from mailer.tracking import InvalidToken, Purpose, TokenCodec

logger = logging.getLogger(__name__)


def ingest_message(session: Session, tokens: TokenCodec, raw: bytes, *, envelope_recipient: str | None = None,
                   policy: BouncePolicy | None = None) -> Outcome:
    """Classify one inbound message (DSN, ARF, mailto unsubscribe, auto-reply…) and apply it; the caller commits."""
    nonce = mail_setup.probe_nonce(tokens, raw)
    if nonce:   # `rapport check-mail-setup` testing the route: leave its mark, touch nothing else
        mail_setup.record_probe(session, nonce)
        return Outcome(OutcomeKind.PROBE, detail=nonce)
    fb = parse_feedback(raw, envelope_recipient)
    raw_key = "in:" + hashlib.sha256(raw).hexdigest()[:60]
    if fb.kind == FeedbackKind.UNSUBSCRIBE:
        try:
            contact_id, campaign_id = tokens.open(Purpose.UNSUBSCRIBE, fb.token or "")
        except InvalidToken:
            logger.info("mailto unsubscribe with an invalid token ignored")
            return Outcome(OutcomeKind.IGNORED, detail="invalid unsubscribe token")
        try:
            scope = feedback.resolve_unsubscribe(session, contact_id, campaign_id)
        except NotFound:   # a test message or an erased contact
            return Outcome(OutcomeKind.IGNORED, detail="unknown contact")
        changed = feedback.unsubscribe(session, scope, everything=True, source=FeedbackSource.MAILTO)
        return Outcome(OutcomeKind.UNSUBSCRIBE if changed else OutcomeKind.DUPLICATE, contact_id)
    if fb.kind in (FeedbackKind.AUTO_REPLY, FeedbackKind.UNKNOWN):   # a reply to our mail, or nothing for us
        replied = replies.receive(session, tokens, raw, envelope_recipient=envelope_recipient,
                                  auto=fb.kind == FeedbackKind.AUTO_REPLY)
        if replied is not None:
            return replied
    if fb.kind not in (FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE, FeedbackKind.COMPLAINT):
        logger.info("inbound message ignored: %s", fb.kind)
        return Outcome(OutcomeKind.IGNORED, detail=str(fb.kind))
    match = match_feedback(session, tokens, fb.token, fb.message_id, fb.recipient)
    if match is None:
        logger.warning("inbound %s matched no send or contact (recipient %s)", fb.kind, fb.recipient)
        return Outcome(OutcomeKind.IGNORED, detail="no matching send or contact")
    key = None if match.send_id or match.tx_id else raw_key   # one message's report counts once
    if fb.kind == FeedbackKind.COMPLAINT:
        out = apply_complaint(session, match.contact, send_id=match.send_id, campaign_id=match.campaign_id,
                              tx_id=match.tx_id, source=FeedbackSource.ARF, feedback_type=fb.feedback_type,
                              dedupe_key=key)
    else:
        out = apply_bounce(session, match.contact, hard=fb.kind == FeedbackKind.HARD_BOUNCE,
                           send_id=match.send_id, campaign_id=match.campaign_id, tx_id=match.tx_id,
                           source=FeedbackSource.DSN, status=fb.status, code=fb.smtp_code,
                           diagnostic=fb.diagnostic or "", dedupe_key=key, policy=policy)
    return out
