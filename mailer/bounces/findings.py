"""The scratchpad a classification fills: the first reader to offer a field wins, in the documented priority order."""

from __future__ import annotations

from mailer.bounces.fields import TOKEN_RE, cut_to
from mailer.bounces.vocabulary import (
    MAX_ADDRESS,
    MAX_DIAGNOSTIC,
    MAX_FEEDBACK_TYPE,
    MAX_MESSAGE_ID,
    Feedback,
    FeedbackKind,
)


class Findings:
    """Mutable scratchpad: the first source to offer a field wins, matching the documented priority order."""

    def __init__(self) -> None:
        self.kind = FeedbackKind.UNKNOWN
        self.token: str | None = None
        self.recipient: str | None = None
        self.status: str | None = None
        self.smtp_code: int | None = None
        self.diagnostic: str | None = None
        self.message_id: str | None = None
        self.feedback_type: str | None = None

    def offer(self, **values: object) -> None:
        """Set each field that is still empty to its offered value, if that value is not None."""
        for name, value in values.items():
            if value is not None and getattr(self, name) is None:
                setattr(self, name, value)

    def freeze(self) -> Feedback:
        """Bound every field again so no input, however odd, yields an oversized result."""
        token = self.token if isinstance(self.token, str) and TOKEN_RE.fullmatch(self.token) else None
        code = self.smtp_code if isinstance(self.smtp_code, int) and 200 <= self.smtp_code <= 599 else None
        values = {
            "kind": self.kind,
            "token": token,
            "recipient": cut_to(self.recipient, MAX_ADDRESS),
            "status": cut_to(self.status, 11),
            "smtp_code": code,
            "diagnostic": cut_to(self.diagnostic, MAX_DIAGNOSTIC),
            "message_id": cut_to(self.message_id, MAX_MESSAGE_ID),
            "feedback_type": cut_to(self.feedback_type, MAX_FEEDBACK_TYPE),
        }
        return Feedback(**values)
