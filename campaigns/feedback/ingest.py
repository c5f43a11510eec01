"""Bounces, complaints and mailto unsubscribes flow back into the contact list; suppressed addresses stay suppressed.

Sources, each in its own module: SMTP rejections at send time and the rules that apply bounces and complaints
(campaigns.feedback.bounces), inbound messages from an MTA pipe (campaigns.feedback.inbound) or a mailbox
(campaigns.feedback.mailbox), and relay webhooks (campaigns.feedback.relay_events). This module names the entry
points the send path, the webhook endpoint and the jobs use, so they import one module.
"""

from __future__ import annotations

from campaigns.feedback.bounces import (
    BounceKind,
    BouncePolicy,
    FeedbackSource,
    Outcome,
    OutcomeKind,
    apply_bounce,
    apply_complaint,
    record_smtp_rejection,
)
from campaigns.feedback.inbound import ingest_message
from campaigns.feedback.mailbox import poll_mailbox
from campaigns.feedback.relay_events import WEBHOOK_TYPES, BadEvent, RelayEventType, apply_relay_event

__all__ = ["WEBHOOK_TYPES", "BadEvent", "BounceKind", "BouncePolicy", "FeedbackSource", "Outcome", "OutcomeKind",
           "RelayEventType", "apply_bounce", "apply_complaint", "apply_relay_event", "ingest_message",
           "poll_mailbox", "record_smtp_rejection"]
