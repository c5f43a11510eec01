"""The words inbound mail is classified in: feedback kinds, the Feedback record, VERP prefixes and the parsing
budgets every reader shares.

:class:`FeedbackKind` values are stored by the application (bounce records, events), so they never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

BOUNCE_PREFIX = "bounces"
UNSUBSCRIBE_PREFIX = "unsubscribe"

# Reports put their machine-readable parts (and the original's headers) in the first few KiB; past this
# there is only attachment bulk. The stdlib parser spends microseconds per MIME object, so the cap is low
# enough that crafted input made of tiny parts still parses in a fraction of a second.
MAX_PARSE_BYTES = 256 * 1024

# Each boundary line, and each blank line inside a delivery-status part, costs the parser an object. Real
# reports have a handful of boundaries and a few dozen blank lines before the parts that matter.
MAX_STRUCTURE_LINES = 2000

# Decoded text inspected per message (all human-readable parts together) and per report part.
MAX_TEXT_BYTES = 256 * 1024
MAX_PARTS = 64
MAX_DEPTH = 8
MAX_DIAGNOSTIC = 500

# Generous next to mailer.tracking's 120-char tokens: the app validates tokens, this module only finds them.
MAX_TOKEN = 256
MAX_ADDRESS = 320
MAX_MESSAGE_ID = 998
MAX_FEEDBACK_TYPE = 64


class FeedbackKind(StrEnum):
    """What an inbound message means for the contact it concerns."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    AUTO_REPLY = "auto_reply"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Feedback:
    """One classified inbound message and everything recovered to match it to a send and a contact."""

    kind: FeedbackKind
    token: str | None
    recipient: str | None
    status: str | None
    smtp_code: int | None
    diagnostic: str | None
    message_id: str | None
    feedback_type: str | None = None
